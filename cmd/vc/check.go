package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/virtcontainers/vc/internal/guestconfig"
	"github.com/virtcontainers/vc/pkg/guestimage"
	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("check", command{usage: "[--json]", short: "report what this host can do: qemu, KVM, vsock, tun, guest image", run: checkCmd})
}

// natDetail tells what vc check says of the NAT (--network nat, -p).
func natDetail(r hypervisor.HostReport) string {
	if r.UserNet {
		return "passt (" + r.UserNetPath + "), a user-mode network stack per VM: --network nat and -p work"
	}
	why := r.UserNetError
	if why == "" {
		why = "no qemu"
	}
	return why + ": --network nat and -p do not work; use --network none or a network namespace"
}

// hostCheck is the report `vc check` prints.
type hostCheck struct {
	hypervisor.HostReport
	Tun        bool   `json:"tun"`
	Agent      string `json:"agent,omitempty"`
	AgentError string `json:"agent_error,omitempty"`
	Image      string `json:"image,omitempty"`
	ImageError string `json:"image_error,omitempty"`
	// PolicyImage is the policy image (vc-agent-policy's) for --policy.
	PolicyImage      string `json:"policy_image,omitempty"`
	PolicyImageError string `json:"policy_image_error,omitempty"`
}

func checkCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("check", commands["check"].usage)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	report, err := hypervisor.CheckHost(vc.DefaultBackend, "")
	if err != nil {
		return err
	}
	r := hostCheck{HostReport: report}
	_, err = os.Stat("/dev/net/tun")
	r.Tun = err == nil
	if a, err := guestconfig.FindAgent(); err == nil {
		r.Agent = a
	} else {
		r.AgentError = err.Error()
	}
	if img, err := guestimage.Load(filepath.Join(imageRoot(g), "current")); err == nil {
		r.Image = fmt.Sprintf("%s (kernel %s, initrd %s)", img.Dir, img.KernelVersion, human(uint64(img.InitrdSize)))
		if err := guestconfig.BuiltFromAgent(img); err != nil {
			r.ImageError = "not current: " + err.Error() + " (the next vc run, or vc image build, builds one)"
		}
	} else {
		r.ImageError = "no current guest image (vc image build makes one): " + err.Error()
	}
	if img, err := guestconfig.CurrentPolicy(g.dataRoot); err == nil {
		r.PolicyImage = fmt.Sprintf("%s (initrd %s): vc run --policy boots it", img.Dir, human(uint64(img.InitrdSize)))
	} else {
		r.PolicyImageError = "no current policy image (vc run --policy, or vc image build with vc-agent-policy installed, builds it): " + err.Error()
	}
	if *asJSON {
		e := json.NewEncoder(os.Stdout)
		e.SetIndent("", "  ")
		return e.Encode(r)
	}
	line := func(ok bool, what, detail string) {
		mark := "ok  "
		if !ok {
			mark = "NO  "
		}
		fmt.Printf("%s %-12s %s\n", mark, what, detail)
	}
	line(r.Error == "", "qemu", r.Path+" "+r.Version+r.Error)
	kvm := "VMs run under KVM: " + r.KVMReason
	if !r.KVM {
		kvm = "VMs run under TCG (software emulation, slower): " + r.KVMReason
	}
	line(r.KVM, "kvm", kvm)
	vs := "/dev/vhost-vsock: the agent talks over vsock"
	if !r.VhostVsock {
		vs = "no /dev/vhost-vsock: the agent talks over virtio-serial (works fully)"
	}
	line(r.VhostVsock, "vhost-vsock", vs)
	line(r.Tun, "tun", "/dev/net/tun (networking)")
	line(r.UserNet, "nat", natDetail(r.HostReport))
	line(r.VMMUserError == "", "qemu user", r.VMMUser+r.VMMUserError)
	line(r.VirtiofsdError == "", "virtio-fs", r.Virtiofsd+r.VirtiofsdError)
	fw := r.Firmware
	if fw == "" {
		fw = "SeaBIOS (qboot not installed)"
	}
	line(true, "firmware", fw)
	line(r.AgentError == "", "agent", r.Agent+r.AgentError)
	img := r.Image + r.ImageError
	if r.Image != "" && r.ImageError != "" {
		img = r.Image + "; " + r.ImageError
	}
	line(r.ImageError == "", "guest image", img)
	line(r.PolicyImageError == "", "policy image", r.PolicyImage+r.PolicyImageError)
	return nil
}
