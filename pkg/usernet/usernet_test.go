package usernet

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
)

// fakeHost is the host as a unit test has it: bridges in a set, one
// route, and processes alive while the test says so.
type fakeHost struct {
	mu      sync.Mutex
	bridges map[string]bool
	dead    map[int]bool
}

func testStore(t *testing.T) (*Store, *fakeHost) {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "networks"))
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHost{bridges: map[string]bool{}, dead: map[int]bool{}}
	s.ensureBridge = func(nsPath, name string, gw netip.Prefix) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.bridges[name] = true
		return nil
	}
	s.deleteBridge = func(nsPath, name string) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.bridges, name)
		return nil
	}
	s.hostRoutes = func() ([]netip.Prefix, error) {
		return []netip.Prefix{netip.MustParsePrefix("172.18.0.0/16")}, nil
	}
	s.alive = func(pid int, start uint64) bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return !h.dead[pid]
	}
	return s, h
}

func TestCreateValidates(t *testing.T) {
	s, _ := testStore(t)
	n, err := s.Create("front", "", "")
	if err != nil {
		t.Fatal(err)
	}
	// 172.18/16 is the host's route: the default pool skips it.
	if n.Subnet.String() != "172.19.0.0/16" || n.Gateway.String() != "172.19.0.1" || len(n.ID) != 64 || n.Bridge != "vc-"+n.ID[:12] {
		t.Fatalf("network %+v: want 172.19.0.0/16 via 172.19.0.1, a 64-hex id and bridge vc-ID", n)
	}
	for _, c := range []struct{ name, subnet, gateway, want string }{
		{"front", "10.1.0.0/24", "", "already exists"},
		{"bad/name", "", "", "network name"},
		{"none", "", "", "reserved"},
		{"x1", "10.1.0.0/33", "", "subnet"},
		{"x2", "banana", "", "subnet \"banana\""},
		{"x3", "10.1.0.5/24", "", "host bits"},
		{"x4", "fd00::/64", "", "IPv4"},
		{"x5", "172.19.5.0/24", "", "overlaps network front"},
		{"x6", "172.18.1.0/24", "", "overlaps the host's route"},
		{"x7", "10.1.0.0/24", "10.2.0.1", "gateway 10.2.0.1"},
		{"x8", "10.1.0.0/24", "10.1.0.255", "gateway"},
		{"x9", "10.0.0.0/16", "", "overlaps the NAT's"},
	} {
		_, err := s.Create(c.name, c.subnet, c.gateway)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("create %s %s %s: %v, want an error saying %q", c.name, c.subnet, c.gateway, err, c.want)
		}
	}
	nets, err := s.List()
	if err != nil || len(nets) != 1 {
		t.Fatalf("list after refused creates: %v %v, want front alone", nets, err)
	}
	ents, _ := os.ReadDir(s.root)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// Addresses come in order, none twice, also to concurrent joins; --ip is
// checked; a dead holder's address is free again; the bridge lives as
// long as leases do.
func TestIPAM(t *testing.T) {
	s, h := testStore(t)
	n, err := s.Create("back", "10.89.0.0/24", "10.89.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	addrs := make([]netip.Addr, 8)
	errs := make([]error, 8)
	for i := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, l, err := s.Join("back", JoinRequest{Container: "c" + string(rune('a'+i))})
			addrs[i], errs[i] = l.Addr, err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	for i, a := range addrs {
		if want := netip.AddrFrom4([4]byte{10, 89, 0, byte(2 + i)}); a != want {
			t.Fatalf("addresses %v: want 10.89.0.2 to .9, once each", addrs)
		}
	}
	if !h.bridges[n.Bridge] {
		t.Fatal("no bridge while containers hold addresses")
	}
	for _, c := range []struct{ ip, want string }{
		{"10.90.0.5", "not a host address"},
		{"10.89.0.1", "the gateway"},
		{"10.89.0.255", "not a host address"},
		{"10.89.0.3", "in use by container"},
		{"x", "want an IPv4 address"},
	} {
		_, _, err := s.Join("back", JoinRequest{Container: "bad", Addr: c.ip})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "ip ") {
			t.Errorf("join --ip %s: %v, want an error on ip saying %q", c.ip, err, c.want)
		}
	}
	if _, _, err := s.Join("nope", JoinRequest{Container: "x"}); !errdefs.IsNotFound(err) {
		t.Errorf("join of a missing network: %v, want not found", err)
	}
	_, l, err := s.Join("back", JoinRequest{Container: "asked", Addr: "10.89.0.200", Aliases: []string{"db"}})
	if err != nil || l.Addr.String() != "10.89.0.200" || l.MAC != "02:42:0a:59:00:c8" {
		t.Fatalf("join --ip 10.89.0.200: %+v %v", l, err)
	}
	_, ls, err := s.Get("back")
	if err != nil || len(ls) != 9 {
		t.Fatalf("leases: %d %v, want 9", len(ls), err)
	}
	// One leaves (vc rm: whoever holds it): its address is the next.
	if err := s.Leave("back", ls[3].Container, 0); err != nil {
		t.Fatal(err)
	}
	_, l, err = s.Join("back", JoinRequest{Container: "late"})
	if err != nil || l.Addr != ls[3].Addr {
		t.Fatalf("join after %s left: %v %v, want its %s again", ls[3].Container, l.Addr, err, ls[3].Addr)
	}
	err = s.Remove("back", func() (map[string][]string, error) { return nil, nil })
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "asked") {
		t.Fatalf("remove while in use: %v, want refused naming the containers", err)
	}
	// Every holder dies: stale leases do not keep the network.
	h.mu.Lock()
	h.dead[os.Getpid()] = true
	h.mu.Unlock()
	err = s.Remove("back", func() (map[string][]string, error) {
		return map[string][]string{"back": {"kept (exited)"}}, nil
	})
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "kept (exited)") || strings.Contains(err.Error(), "asked") {
		t.Fatalf("remove with a container on record: %v, want refused naming it alone", err)
	}
	if err := s.Remove("back", nil); err != nil {
		t.Fatal(err)
	}
	if len(h.bridges) != 0 {
		t.Errorf("bridges left: %v", h.bridges)
	}
	if ents, _ := os.ReadDir(s.root); len(ents) != 1 { // .lock
		t.Errorf("left in the store: %v", ents)
	}
}

// Every container's hosts file lists the network's containers, rewritten
// in place as they come and go.
func TestHostsFiles(t *testing.T) {
	s, h := testStore(t)
	if _, err := s.Create("web", "10.89.1.0/24", ""); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	join := func(name string, aliases ...string) string {
		t.Helper()
		if _, _, err := s.Join("web", JoinRequest{Container: name, CID: strings.Repeat(name[:1], 64), Aliases: aliases}); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("127.0.0.1\tlocalhost\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := s.Publish("web", name, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := join("alpha", "first")
	fi, _ := os.Stat(a)
	b := join("beta")
	want := "127.0.0.1\tlocalhost\n# vc network web\n10.89.1.2\talpha first aaaaaaaaaaaa\n10.89.1.3\tbeta bbbbbbbbbbbb\n"
	for _, p := range []string{a, b} {
		if got, _ := os.ReadFile(p); string(got) != want {
			t.Errorf("%s:\n%s\nwant:\n%s", p, got, want)
		}
	}
	if fi2, _ := os.Stat(a); !os.SameFile(fi, fi2) {
		t.Error("alpha's hosts file was replaced, not rewritten in place: its container would not see it")
	}
	if err := s.Leave("web", "beta", os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(a); strings.Contains(string(got), "beta") {
		t.Errorf("beta left, alpha's hosts still names it:\n%s", got)
	}
	if err := s.Leave("web", "alpha", 0); err != nil {
		t.Fatal(err)
	}
	if len(h.bridges) != 0 {
		t.Errorf("bridge kept with no container on the network: %v", h.bridges)
	}
}
