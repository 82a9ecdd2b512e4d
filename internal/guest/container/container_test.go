package container

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestEOFIsOutOfRange(t *testing.T) {
	err := errgrpc.ToGRPC(ErrEOF)
	if status.Code(err) != codes.OutOfRange {
		t.Errorf("ErrEOF becomes %v, want OutOfRange", err)
	}
	if !errors.Is(ErrEOF, io.EOF) || !errors.Is(ErrEOF, errdefs.ErrOutOfRange) {
		t.Error("ErrEOF does not match io.EOF and ErrOutOfRange")
	}
}

// TestStream: output written before the writer closed is all read, then
// EOF; a full buffer stops the copying.
func TestStream(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s := newStream()
	go s.fill(r)
	// 19 bytes a period: a chunk out of place shows.
	data := strings.Repeat("0123456789abcdefghi", 3*streamLimit/19)
	go func() {
		w.WriteString(data)
		w.Close()
	}()
	// Nobody reads: the buffer stops at about streamLimit.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.buf)
		s.mu.Unlock()
		if n >= streamLimit {
			if n > streamLimit {
				t.Fatalf("buffered %d bytes, limit %d", n, streamLimit)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d bytes buffered", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var got strings.Builder
	ctx := context.Background()
	for i := 0; ; i++ {
		// Parts and wholes of what is buffered.
		b, err := s.read(ctx, []int{7000, streamLimit}[i%2])
		if errors.Is(err, ErrEOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got.Write(b)
	}
	if got.String() != data {
		t.Errorf("read %d bytes, want %d", got.Len(), len(data))
	}
	if !s.isDrained() {
		t.Error("not drained after EOF")
	}
	// A read on an empty, open stream waits for the context.
	s2 := newStream()
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s2.read(cctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("read of an empty stream: %v", err)
	}
	// A reader whose context is done takes nothing, though there is output:
	// its caller may be gone.
	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	go s2.fill(r2)
	w2.WriteString("kept")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		s2.mu.Lock()
		n := len(s2.buf)
		s2.mu.Unlock()
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes of 4 buffered", n)
		}
	}
	if b, err := s2.read(cctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("read with a done context: %q, %v", b, err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	if b, err := s2.read(rctx, 10); string(b) != "kept" || err != nil {
		t.Errorf("read after a done reader: %q, %v; want what it left", b, err)
	}
	s2.close()
	if _, err := s2.read(ctx, 10); !errors.Is(err, ErrEOF) {
		t.Errorf("read of a closed stream: %v", err)
	}
}

func TestPrepareSpec(t *testing.T) {
	mk := func(ns ...specs.LinuxNamespace) *specs.Spec {
		return &specs.Spec{
			Process: &specs.Process{Args: []string{"sh"}},
			Root:    &specs.Root{Path: "/r"},
			Linux: &specs.Linux{Namespaces: ns, Sysctl: map[string]string{
				"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1",
			}},
		}
	}
	p, err := prepareSpec("c1", mk(specs.LinuxNamespace{Type: "network"}, specs.LinuxNamespace{Type: "pid"}), "", false)
	if err != nil {
		t.Fatal(err)
	}
	if p.privateNetns || !p.privatePidns || len(p.spec.Linux.Namespaces) != 1 {
		t.Errorf("namespaces %+v", p.spec.Linux.Namespaces)
	}
	if p.spec.Linux.CgroupsPath != "/vc/c1" || p.spec.Process.Cwd != "/" {
		t.Errorf("defaults: %q %q", p.spec.Linux.CgroupsPath, p.spec.Process.Cwd)
	}
	if p.netSysctls["net.ipv4.ip_unprivileged_port_start"] != "0" || len(p.spec.Linux.Sysctl) != 1 {
		t.Errorf("net sysctls %v, left %v", p.netSysctls, p.spec.Linux.Sysctl)
	}
	p, err = prepareSpec("c2", mk(specs.LinuxNamespace{Type: "network", Path: "/var/run/netns/x"}), "/proc/9/ns/pid", false)
	if err != nil {
		t.Fatal(err)
	}
	if !p.privateNetns || p.privatePidns || p.netSysctls != nil {
		t.Errorf("prepared %+v", p)
	}
	if ns := p.spec.Linux.Namespaces; len(ns) != 2 || ns[1].Type != "pid" || ns[1].Path != "/proc/9/ns/pid" {
		t.Errorf("sandbox pidns not joined: %+v", ns)
	}
	for _, bad := range []*specs.Spec{
		{Root: &specs.Root{Path: "/r"}},
		{Process: &specs.Process{}, Root: &specs.Root{Path: "/r"}},
		{Process: &specs.Process{Args: []string{"x"}}},
		{Process: &specs.Process{Args: []string{"x"}}, Root: &specs.Root{Path: "r"}},
		{Process: &specs.Process{Args: []string{"x"}, Cwd: "tmp"}, Root: &specs.Root{Path: "/r"}},
	} {
		if _, err := prepareSpec("x", bad, "", false); !errdefs.IsInvalidArgument(err) {
			t.Errorf("prepareSpec(%+v): %v, want InvalidArgument", bad, err)
		}
	}
}

func TestResolvConf(t *testing.T) {
	got, err := resolvConf([]string{"nameserver 1.1.1.1", " 8.8.8.8 ", "", "search a b", "fd00::1"})
	if err != nil {
		t.Fatal(err)
	}
	want := "nameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch a b\nnameserver fd00::1\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := resolvConf([]string{"nameserver 1.1.1.1\nnameserver 2.2.2.2"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("multi-line entry: %v", err)
	}
}

func TestParseNetDev(t *testing.T) {
	const dev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0
`
	got := parseNetDev(bufio.NewScanner(strings.NewReader(dev)))
	if len(got) != 1 {
		t.Fatalf("got %v", got)
	}
	n := got[0]
	if n.Name != "eth0" || n.RxBytes != 1000 || n.RxPackets != 10 || n.RxErrors != 1 || n.RxDropped != 2 ||
		n.TxBytes != 2000 || n.TxPackets != 20 || n.TxErrors != 3 || n.TxDropped != 4 {
		t.Errorf("got %+v", n)
	}
}

// On cgroup v2 a container gets a cgroup namespace of its own when the
// spec has none; one the spec names is kept as it is; on v1 nothing is
// added.
func TestPrepareSpecCgroupNamespace(t *testing.T) {
	mk := func(ns ...specs.LinuxNamespace) *specs.Spec {
		return &specs.Spec{Process: &specs.Process{Args: []string{"sh"}}, Root: &specs.Root{Path: "/r"}, Linux: &specs.Linux{Namespaces: ns}}
	}
	count := func(p *prepared) (n int, path string) {
		for _, ns := range p.spec.Linux.Namespaces {
			if ns.Type == specs.CgroupNamespace {
				n++
				path = ns.Path
			}
		}
		return n, path
	}
	for _, tc := range []struct {
		name    string
		ns      []specs.LinuxNamespace
		cgroup2 bool
		want    int
		path    string
	}{
		{"v2, none in the spec", []specs.LinuxNamespace{{Type: "pid"}}, true, 1, ""},
		{"v2, the spec's", []specs.LinuxNamespace{{Type: "cgroup"}, {Type: "pid"}}, true, 1, ""},
		{"v2, the spec's by path", []specs.LinuxNamespace{{Type: "cgroup", Path: "/proc/7/ns/cgroup"}}, true, 1, "/proc/7/ns/cgroup"},
		{"v1, none in the spec", []specs.LinuxNamespace{{Type: "pid"}}, false, 0, ""},
		{"v1, the spec's", []specs.LinuxNamespace{{Type: "cgroup"}}, false, 1, ""},
	} {
		p, err := prepareSpec("c", mk(tc.ns...), "", tc.cgroup2)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n, path := count(p); n != tc.want || path != tc.path {
			t.Errorf("%s: %d cgroup namespaces (path %q) in %+v, want %d (path %q)", tc.name, n, path, p.spec.Linux.Namespaces, tc.want, tc.path)
		}
	}
}

// A container with a user namespace in the VM's network namespace gets
// the guest's /sys bound (read-only all through when asked) instead of a
// sysfs mount, which the kernel would refuse; with a network namespace of
// its own it keeps its sysfs.
func TestPrepareSpecSysForUserns(t *testing.T) {
	mk := func(ns ...specs.LinuxNamespace) *specs.Spec {
		return &specs.Spec{
			Process: &specs.Process{Args: []string{"sh"}}, Root: &specs.Root{Path: "/r"},
			Mounts: []specs.Mount{{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "ro"}}},
			Linux:  &specs.Linux{Namespaces: ns},
		}
	}
	p, err := prepareSpec("c", mk(specs.LinuxNamespace{Type: "user"}, specs.LinuxNamespace{Type: "network"}), "", true)
	if err != nil {
		t.Fatal(err)
	}
	want := specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "rro"}}
	if m := p.spec.Mounts[0]; m.Destination != want.Destination || m.Type != want.Type || m.Source != want.Source || strings.Join(m.Options, ",") != strings.Join(want.Options, ",") {
		t.Errorf("sysfs of a user namespace in the VM's network: %+v, want %+v", m, want)
	}
	p, err = prepareSpec("c", mk(specs.LinuxNamespace{Type: "user"}, specs.LinuxNamespace{Type: "network", Path: "/var/run/netns/x"}), "", true)
	if err != nil {
		t.Fatal(err)
	}
	if p.spec.Mounts[0].Type != "sysfs" {
		t.Errorf("sysfs of a user namespace with its own network: %+v", p.spec.Mounts[0])
	}
	p, err = prepareSpec("c", mk(specs.LinuxNamespace{Type: "network"}), "", true)
	if err != nil {
		t.Fatal(err)
	}
	if p.spec.Mounts[0].Type != "sysfs" {
		t.Errorf("sysfs without a user namespace: %+v", p.spec.Mounts[0])
	}
}
