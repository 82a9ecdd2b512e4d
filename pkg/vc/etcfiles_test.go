package vc

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/network"
	"github.com/virtcontainers/vc/pkg/persist"
)

// etcSandbox is a sandbox record of cfg with no VM, in a temporary store.
func etcSandbox(t *testing.T, cfg SandboxConfig, eps ...network.Endpoint) *Sandbox {
	t.Helper()
	store, err := persist.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &Sandbox{id: cfg.ID, store: store, status: SandboxStatus{ID: cfg.ID, Config: cfg, Endpoints: eps}}
}

// bound maps the destinations of ccfg's mounts to their files' contents.
func bound(t *testing.T, ccfg ContainerConfig) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range ccfg.Spec.Mounts {
		if !strings.HasPrefix(m.Destination, "/etc/") {
			continue
		}
		if m.Type != "bind" || !strings.Contains(strings.Join(m.Options, ","), "ro") {
			t.Errorf("%s: %+v, want a read-only bind", m.Destination, m)
		}
		b, err := os.ReadFile(m.Source)
		if err != nil {
			t.Fatalf("%s: %v", m.Destination, err)
		}
		out[m.Destination] = string(b)
	}
	return out
}

// Behind the NAT a container gets docker's /etc/hosts (localhost, its
// hostname at the NAT's guest address), /etc/hostname and the NAT's
// resolver; a file the spec mounts itself is left alone.
func TestBindEtcFilesNAT(t *testing.T) {
	s := etcSandbox(t, SandboxConfig{ID: "0123456789abcdef"})
	ccfg := ContainerConfig{ID: "0123456789abcdef", Spec: &specs.Spec{}}
	if err := s.BindEtcFiles(&ccfg); err != nil {
		t.Fatal(err)
	}
	got := bound(t, ccfg)
	if len(ccfg.Spec.Mounts) != 3 || len(got) != 3 {
		t.Fatalf("mounts %+v, want hosts, hostname and resolv.conf", ccfg.Spec.Mounts)
	}
	hosts := got["/etc/hosts"]
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n", "10.0.2.15\t0123456789ab\n"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("/etc/hosts lacks %q:\n%s", want, hosts)
		}
	}
	if got["/etc/hostname"] != "0123456789ab\n" || got["/etc/resolv.conf"] != "nameserver 10.0.2.3\n" {
		t.Errorf("hostname %q, resolv.conf %q", got["/etc/hostname"], got["/etc/resolv.conf"])
	}

	// The user's (or engine's) files win; the spec's hostname names the
	// container.
	ccfg = ContainerConfig{ID: "c2", Spec: &specs.Spec{Hostname: "web", Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.UTSNamespace}}}, Mounts: []specs.Mount{
		{Destination: "/etc/resolv.conf/", Type: "bind", Source: "/mine"},
		{Destination: "/etc/hostname", Type: "bind", Source: "/mine2"},
	}}}
	if err := s.BindEtcFiles(&ccfg); err != nil {
		t.Fatal(err)
	}
	if len(ccfg.Spec.Mounts) != 3 || ccfg.Spec.Mounts[2].Destination != "/etc/hosts" {
		t.Fatalf("mounts %+v, want the spec's two and /etc/hosts", ccfg.Spec.Mounts)
	}
	if h := bound(t, ContainerConfig{Spec: &specs.Spec{Mounts: ccfg.Spec.Mounts[2:]}})["/etc/hosts"]; !strings.Contains(h, "10.0.2.15\tweb\n") {
		t.Errorf("/etc/hosts of web:\n%s", h)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "etc", "c2", "resolv.conf")); err == nil {
		t.Error("resolv.conf written although the spec mounts one")
	}

	// A container joining another's UTS namespace (a pod's member) has
	// the sandbox's hostname, whatever its spec says.
	ccfg = ContainerConfig{ID: "c3", Spec: &specs.Spec{Hostname: "member", Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.UTSNamespace, Path: "/proc/1/ns/uts"}}}}}
	if err := s.BindEtcFiles(&ccfg); err != nil {
		t.Fatal(err)
	}
	if h := bound(t, ccfg)["/etc/hostname"]; h != "0123456789ab\n" {
		t.Errorf("/etc/hostname of a member joining a UTS namespace: %q, want the sandbox's hostname", h)
	}

	if err := s.BindEtcFiles(&ContainerConfig{ID: "../x", Spec: &specs.Spec{}}); err == nil {
		t.Error("a bad container id is accepted")
	}
}

// Without the NAT there is no resolv.conf (the namespace's resolver is the
// user's business) and the hostname maps to the guest's first address, or
// to 127.0.1.1 with none.
func TestBindEtcFilesNoNAT(t *testing.T) {
	eps := []network.Endpoint{{Name: "eth0", Addrs: []netip.Prefix{netip.MustParsePrefix("fd00::5/64"), netip.MustParsePrefix("192.0.2.5/24")}}}
	for _, tc := range []struct {
		name string
		s    *Sandbox
		want string
	}{
		{"netns", etcSandbox(t, SandboxConfig{ID: "sb", Hostname: "box", NetNS: "/run/netns/x"}, eps...), "192.0.2.5\tbox\n"},
		{"none", etcSandbox(t, SandboxConfig{ID: "sb", Hostname: "box", NAT: NATConfig{Disabled: true}}), "127.0.1.1\tbox\n"},
	} {
		ccfg := ContainerConfig{ID: "c", Spec: &specs.Spec{}}
		if err := tc.s.BindEtcFiles(&ccfg); err != nil {
			t.Fatal(err)
		}
		got := bound(t, ccfg)
		if _, ok := got["/etc/resolv.conf"]; ok || len(got) != 2 {
			t.Errorf("%s: files %v, want hosts and hostname", tc.name, got)
		}
		if !strings.Contains(got["/etc/hosts"], tc.want) || got["/etc/hostname"] != "box\n" {
			t.Errorf("%s: hosts %q (want %q), hostname %q", tc.name, got["/etc/hosts"], tc.want, got["/etc/hostname"])
		}
	}
}

// A container with a user namespace of its own gets only the files its
// root filesystem has: their mountpoints would be made by its mapped root,
// which need not own the root filesystem (create failed with permission
// denied on /etc/hosts). Without a user namespace, every file is bound.
func TestBindEtcFilesUserNS(t *testing.T) {
	s := etcSandbox(t, SandboxConfig{ID: "sb", Hostname: "box", NAT: NATConfig{Disabled: true}})
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "hostname"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	userns := &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.UserNamespace}}}
	ccfg := ContainerConfig{ID: "c", Rootfs: rootfs, Spec: &specs.Spec{Linux: userns}}
	if err := s.BindEtcFiles(&ccfg); err != nil {
		t.Fatal(err)
	}
	if got := bound(t, ccfg); len(got) != 1 || got["/etc/hostname"] != "box\n" {
		t.Errorf("user namespace: files %v, want /etc/hostname only (the root filesystem has no /etc/hosts)", got)
	}
	ccfg = ContainerConfig{ID: "c2", Rootfs: rootfs, Spec: &specs.Spec{Linux: &specs.Linux{}}}
	if err := s.BindEtcFiles(&ccfg); err != nil {
		t.Fatal(err)
	}
	if got := bound(t, ccfg); len(got) != 2 {
		t.Errorf("no user namespace: files %v, want hosts and hostname", got)
	}
}
