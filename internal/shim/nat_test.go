package shim

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/procnet"
	"github.com/virtcontainers/vc/internal/shim/annotations"
	"github.com/virtcontainers/vc/pkg/vc"
)

// The NAT of a container without a network namespace: disable_nat turns
// it off, the allowlisted publish annotation publishes ports, a bad
// publish value is refused naming the annotation.
// singleSandboxConfig is the sandbox a single container (no CRI
// annotations, an empty spec) with annotations ann boots under cfg.
func singleSandboxConfig(cfg Config, ann map[string]string) (vc.SandboxConfig, error) {
	o, err := annotations.ParseSandboxAnnotations(ann, cfg.EnableAnnotations)
	if err != nil {
		return vc.SandboxConfig{}, err
	}
	c := &container{id: "c1", sandboxID: "c1", typ: annotations.SingleContainer, spec: &specs.Spec{}}
	return (&Service{}).sandboxConfig(context.Background(), cfg, c, o)
}

func TestSandboxConfigNAT(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"k", "i"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o644)
	}
	base := DefaultConfig()
	base.Kernel, base.Initrd = filepath.Join(dir, "k"), filepath.Join(dir, "i")
	sc := singleSandboxConfig
	got, err := sc(base, nil)
	if err != nil || got.NAT.Disabled || len(got.NAT.Publish) != 0 {
		t.Fatalf("defaults: NAT %+v, %v; want on, nothing published", got.NAT, err)
	}
	off, err := ParseConfig([]byte("disable_nat = true"))
	if err != nil || !off.DisableNAT || DefaultConfig().DisableNAT {
		t.Fatalf("disable_nat: %+v, %v", off, err)
	}
	off.Kernel, off.Initrd = base.Kernel, base.Initrd
	if got, err = sc(off, nil); err != nil || !got.NAT.Disabled {
		t.Fatalf("disable_nat: NAT %+v, %v; want disabled", got.NAT, err)
	}
	ann := map[string]string{annotations.AnnotationPublish: "8080:80, 127.0.0.1:5353:53/udp"}
	if _, err := sc(base, ann); err == nil || !strings.Contains(err.Error(), "annotation io.virtcontainers.publish: not allowed") {
		t.Fatalf("publish without the allowlist: %v", err)
	}
	allow := base
	allow.EnableAnnotations = []string{"publish"}
	got, err = sc(allow, ann)
	want := []vc.PortMapping{{HostPort: 8080, ContainerPort: 80}, {HostIP: "127.0.0.1", HostPort: 5353, ContainerPort: 53, Protocol: "udp"}}
	if err != nil || len(got.NAT.Publish) != 2 || got.NAT.Publish[0] != want[0] || got.NAT.Publish[1] != want[1] {
		t.Fatalf("publish: %+v, %v; want %+v", got.NAT.Publish, err, want)
	}
	_, err = sc(allow, map[string]string{annotations.AnnotationPublish: "8080"})
	if err == nil || !strings.Contains(err.Error(), `annotation io.virtcontainers.publish: entry 1: "8080"`) || !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad publish: %v", err)
	}

	// host_loopback: off by default; the configuration or, where the
	// allowlist has it, the annotation turns it on.
	if got, err = sc(base, nil); err != nil || got.NAT.HostLoopback {
		t.Fatalf("defaults: NAT %+v, %v; want the host's loopback out of reach", got.NAT, err)
	}
	on, err := ParseConfig([]byte("host_loopback = true"))
	if err != nil || !on.HostLoopback {
		t.Fatalf("host_loopback: %+v, %v", on, err)
	}
	on.Kernel, on.Initrd = base.Kernel, base.Initrd
	if got, err = sc(on, nil); err != nil || !got.NAT.HostLoopback {
		t.Fatalf("host_loopback = true: NAT %+v, %v", got.NAT, err)
	}
	hl := map[string]string{annotations.AnnotationHostLoopback: "true"}
	if _, err := sc(base, hl); err == nil || !strings.Contains(err.Error(), "annotation io.virtcontainers.host_loopback: not allowed") {
		t.Fatalf("host_loopback annotation without the allowlist: %v", err)
	}
	allow.EnableAnnotations = []string{"host_loopback"}
	if got, err = sc(allow, hl); err != nil || !got.NAT.HostLoopback {
		t.Fatalf("host_loopback annotation: NAT %+v, %v", got.NAT, err)
	}
	if _, err := sc(allow, map[string]string{annotations.AnnotationHostLoopback: "yes"}); err == nil || !strings.Contains(err.Error(), "io.virtcontainers.host_loopback") {
		t.Fatalf("bad host_loopback annotation: %v", err)
	}
}

// Only a container of its own without a network namespace, with the NAT
// on, shares its loopback with the host's.
func TestSharesLoopback(t *testing.T) {
	noNet := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}}}}
	withNet := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}}}
	for _, tc := range []struct {
		name string
		c    *container
		cfg  vc.SandboxConfig
		want bool
	}{
		{"no netns", &container{typ: annotations.SingleContainer, spec: noNet}, vc.SandboxConfig{}, true},
		{"netns without a path", &container{typ: annotations.SingleContainer, spec: withNet}, vc.SandboxConfig{}, false},
		{"netns path", &container{typ: annotations.SingleContainer, spec: noNet}, vc.SandboxConfig{NetNS: "/run/netns/x"}, false},
		{"nat off", &container{typ: annotations.SingleContainer, spec: noNet}, vc.SandboxConfig{NAT: vc.NATConfig{Disabled: true}}, false},
		{"pod", &container{typ: annotations.PodSandbox, spec: noNet}, vc.SandboxConfig{}, false},
	} {
		if got := sharesLoopback(tc.c, tc.cfg); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The host's listeners served on the guest's 127.0.0.1 with host_loopback:
// TCP on 127.0.0.1 or a wildcard address, not ::1 only, not the shim's
// own ends of guest ports; UDP on 127.0.0.1 only.
func TestHostLoopbackPort(t *testing.T) {
	own := map[int]*net.TCPListener{9000: {}}
	for _, tc := range []struct {
		l    string
		want bool
	}{
		{"tcp 127.0.0.1:80", true}, {"tcp 0.0.0.0:22", true}, {"tcp :::8080", true},
		{"tcp ::1:631", false}, {"tcp 127.0.0.53:53", false}, {"tcp 192.0.2.1:80", false},
		{"tcp 127.0.0.1:9000", false},
		{"udp 127.0.0.1:5353", true}, {"udp 0.0.0.0:68", false}, {"udp :::5353", false},
	} {
		proto, ap, _ := strings.Cut(tc.l, " ")
		i := strings.LastIndexByte(ap, ':')
		port, _ := strconv.Atoi(ap[i+1:])
		l := procnet.Listener{Protocol: proto, Addr: netip.MustParseAddr(ap[:i]), Port: uint16(port)}
		if got := hostLoopbackPort(l, own); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.l, got, tc.want)
		}
	}
}
