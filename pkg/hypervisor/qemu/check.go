package qemu

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// checkHost inspects the host: the QEMU binary (qemuPath, or the default),
// KVM (the same cached verdict VM starts use, probing when there is none),
// vhost-vsock and the firmware.
func checkHost(qemuPath string) hypervisor.HostReport {
	var r hypervisor.HostReport
	p, err := findQEMU(qemuPath)
	if err != nil {
		r.Error = err.Error()
	} else {
		r.Path = p
		out, err := exec.Command(p, "--version").Output()
		if err != nil {
			r.Error = err.Error()
		}
		r.Version = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
		checkUserNet(&r, p)
	}
	if _, err := os.Stat(defaultFirmware); err == nil {
		r.Firmware = defaultFirmware
	}
	r.VhostVsock = haveVhostVsock()
	r.VMMUser, r.VMMUserError = checkUser()
	if err := checkVirtioFS(&hypervisor.Config{SharedFS: []hypervisor.SharedFS{{Tag: "check", Kind: hypervisor.FSVirtioFS}}}); err != nil {
		r.VirtiofsdError = err.Error()
	} else {
		r.Virtiofsd = DefaultVirtiofsd + ": a sandbox may share its files over virtio-fs (shared_fs)"
	}
	if err := accessRW(kvmDevice); err != nil {
		r.KVMReason = kvmDevice + ": " + err.Error()
		return r
	}
	key := accelCacheKey(r.Path)
	dir := probeCacheDir()
	if dir != "" {
		if v, ok := readVerdict(filepath.Join(dir, accelCacheName), key); ok {
			r.KVM, r.KVMReason = v.KVM, v.Reason+" (cached)"
			return r
		}
	}
	v := probeVerdict()
	v.Key = key
	if dir != "" {
		writeVerdict(filepath.Join(dir, accelCacheName), v)
	}
	r.KVM, r.KVMReason = v.KVM, v.Reason
	return r
}

// checkUserNet fills in the NAT's part of r for the QEMU at qemuPath.
func checkUserNet(r *hypervisor.HostReport, qemuPath string) {
	var why []string
	if p, err := exec.LookPath(passtBinary); err != nil {
		why = append(why, "passt, the user-mode network stack, is not installed (apt-get install passt): "+err.Error())
	} else {
		r.UserNetPath = p
	}
	if !hasNetdev(qemuPath, "stream") {
		why = append(why, "qemu has no stream netdev backend (QEMU 7.2 or later has)")
	}
	r.UserNet = len(why) == 0
	r.UserNetError = strings.Join(why, "; ")
}

func accessRW(path string) error {
	return unix.Access(path, unix.R_OK|unix.W_OK)
}

// hasNetdev asks QEMU for its netdev backends and looks for name.
func hasNetdev(qemuPath, name string) bool {
	out, err := exec.Command(qemuPath, "-netdev", "help").Output()
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) == name {
			return true
		}
	}
	return false
}

// checkUser says who QEMU runs as when this process starts it
// (confine.go), or why it cannot start.
func checkUser() (string, string) {
	if os.Geteuid() != 0 {
		return fmt.Sprintf("uid %d, as its caller (not root: nothing to drop)", os.Geteuid()), ""
	}
	c, err := planConfinement(&hypervisor.Config{}, "")
	if err != nil {
		return "", err.Error()
	}
	return fmt.Sprintf("%s (uid %d): no capabilities but chown, dac_override, fowner and fsetid with 9p shares; no_new_privs; a mount namespace holding /usr and the VM's files", c.user, c.uid), ""
}
