package shim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/shim/annotations"
	"github.com/virtcontainers/vc/pkg/vc"
)

// The NAT of a container without a network namespace: disable_nat turns
// it off, the allowlisted publish annotation publishes ports, a bad
// publish value is refused naming the annotation.
func TestSandboxConfigNAT(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"k", "i"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o644)
	}
	base := DefaultConfig()
	base.Kernel, base.Initrd = filepath.Join(dir, "k"), filepath.Join(dir, "i")
	s := &Service{}
	c := &container{id: "c1", sandboxID: "c1", typ: annotations.SingleContainer, spec: &specs.Spec{}}
	sc := func(cfg Config, ann map[string]string) (vc.SandboxConfig, error) {
		t.Helper()
		o, err := annotations.ParseSandboxAnnotations(ann, cfg.EnableAnnotations)
		if err != nil {
			return vc.SandboxConfig{}, err
		}
		return s.sandboxConfig(context.Background(), cfg, c, o)
	}
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
}
