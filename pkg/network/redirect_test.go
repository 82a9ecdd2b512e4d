package network

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/pkg/network/nstest"
)

// nftRuleset is the namespace's nftables ruleset.
func nftRuleset(t *testing.T, ns nstest.NS) string {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+ns.Path, "--", "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset in %s: %v: %s", ns.Name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestLoopbackRedirect: connections made in the namespace to 127.0.0.1
// and ::1 on any port reach the redirect's listeners, which learn the
// port; Close leaves the namespace's ruleset as it was (empty) and the
// ports refuse again; a redirect left by a dead process is removed by
// RemoveLoopbackRedirect.
func TestLoopbackRedirect(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		testenv.Skip(t, "needs nft (nftables, hack/install-deps.sh)")
	}
	ns := nstest.New(t, "redir")
	if got := nftRuleset(t, ns); got != "" {
		t.Fatalf("a new namespace has rules: %s", got)
	}
	r, err := RedirectLoopback(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.Listeners) != 2 {
		t.Fatalf("%d listeners, want 127.0.0.1 and ::1", len(r.Listeners))
	}
	accepted := make(chan netip.AddrPort, 4)
	for _, l := range r.Listeners {
		go func() {
			for {
				c, err := l.AcceptTCP()
				if err != nil {
					return
				}
				dst, err := OriginalDestination(c)
				if err != nil {
					t.Errorf("original destination: %v", err)
				}
				c.Write([]byte("hi"))
				c.Close()
				accepted <- dst
			}
		}()
	}
	dial := func(addr string) error {
		return ns.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			b := make([]byte, 2)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(b)
			return err
		})
	}
	for _, addr := range []string{"127.0.0.1:5555", "[::1]:6666"} {
		if err := dial(addr); err != nil {
			t.Fatalf("dial %s in the namespace: %v", addr, err)
		}
		select {
		case dst := <-accepted:
			if dst.String() != addr {
				t.Errorf("original destination %s, want %s", dst, addr)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the connection to %s reached no listener", addr)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got := nftRuleset(t, ns); got != "" {
		t.Errorf("rules left after Close: %s", got)
	}
	if err := dial("127.0.0.1:5555"); err == nil {
		t.Error("127.0.0.1:5555 still answers after Close")
	}

	// Left behind by a process that died: removed by path, twice.
	r2, err := RedirectLoopback(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	r2.closeListeners()
	if !strings.Contains(nftRuleset(t, ns), RedirectTable) {
		t.Fatalf("no %s table after RedirectLoopback", RedirectTable)
	}
	for i := 0; i < 2; i++ {
		if err := RemoveLoopbackRedirect(ns.Path); err != nil {
			t.Fatal(err)
		}
	}
	if got := nftRuleset(t, ns); got != "" {
		t.Errorf("rules left after RemoveLoopbackRedirect: %s", got)
	}
	if err := RemoveLoopbackRedirect("/var/run/netns/vc-no-such-ns"); err != nil {
		t.Errorf("a namespace that is gone: %v", err)
	}
}

// TestLoopbackRedirectDown: a namespace whose loopback is down cannot be
// redirected; the error says so and nothing is left.
func TestLoopbackRedirectDown(t *testing.T) {
	needRoot(t)
	ns := nstest.New(t, "redirdown")
	if out, err := exec.Command("ip", "-n", ns.Name, "link", "set", "lo", "down").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := RedirectLoopback(ns.Path); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("loopback down: %v, want an error naming the loopback", err)
	}
	if _, err := exec.LookPath("nft"); err == nil {
		if got := nftRuleset(t, ns); got != "" {
			t.Errorf("rules left: %s", got)
		}
	}
}

// TestLoopbackRedirectNoIPv6: in a namespace whose loopback has no ::1,
// 127.0.0.1 alone is redirected.
func TestLoopbackRedirectNoIPv6(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		testenv.Skip(t, "needs nft (nftables, hack/install-deps.sh)")
	}
	ns := nstest.New(t, "redirv4")
	if out, err := exec.Command("ip", "netns", "exec", ns.Name, "sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=1").CombinedOutput(); err != nil {
		t.Fatalf("disable IPv6 on lo: %v: %s", err, out)
	}
	r, err := RedirectLoopback(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.Listeners) != 1 || r.Listeners[0].Addr().(*net.TCPAddr).IP.String() != "127.0.0.1" {
		t.Errorf("listeners %v, want 127.0.0.1 alone", r.Listeners)
	}
	if rules := nftRuleset(t, ns); !strings.Contains(rules, "ip daddr 127.0.0.1") || strings.Contains(rules, "ip6") {
		t.Errorf("rules:\n%s\nwant 127.0.0.1's alone", rules)
	}
}

// TestLoopbackRedirectNoNft: without the nft tool the error says what to
// install, and the listeners are closed.
func TestLoopbackRedirectNoNft(t *testing.T) {
	needRoot(t)
	ns := nstest.New(t, "redirnonft")
	t.Setenv("PATH", t.TempDir())
	_, err := RedirectLoopback(ns.Path)
	if err == nil || !strings.Contains(err.Error(), "nftables") {
		t.Errorf("no nft: %v, want an error naming nftables", err)
	}
	var tcp []byte
	if err := ns.Do(func() (err error) {
		tcp, err = os.ReadFile("/proc/thread-self/net/tcp")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(tcp), "\n")[1:] {
		if f := strings.Fields(l); len(f) > 3 && f[3] == "0A" {
			t.Errorf("a listener is left in the namespace: %s", l)
		}
	}
}
