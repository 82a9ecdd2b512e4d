package testutil

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

// OutsideAddr gives the host (this network namespace) an address that
// stands for "outside" in tests of the user-mode NAT, which has no
// internet here: a veth whose host end gets 198.18.X.1/30 (a benchmark
// range, never routed), its peer end up in a namespace of its own. A
// server bound to it is reached through the NAT as any outside server,
// unlike one on 127.0.0.1, which the NAT must not reach. The veth and the
// namespace are removed at cleanup.
func OutsideAddr(t testing.TB) netip.Addr {
	t.Helper()
	RequireRoot(t)
	var b [2]byte
	for range 20 {
		rand.Read(b[:])
		third := 1 + int(b[0])%254
		fourth := 4 * (int(b[1]) % 63)
		host := netip.AddrFrom4([4]byte{198, 18, byte(third), byte(fourth + 1)})
		out, err := exec.Command("ip", "-o", "addr", "show").CombinedOutput()
		if err != nil {
			t.Fatalf("ip addr show: %v: %s", err, out)
		}
		if strings.Contains(string(out), fmt.Sprintf(" 198.18.%d.%d/30 ", third, fourth+1)) {
			continue // another test binary's
		}
		tag := fmt.Sprintf("%02x%02x", b[0], b[1])
		hostLink, peerLink, ns := "vcoh"+tag, "vcop"+tag, "vc-outside-"+tag
		run := func(args ...string) {
			t.Helper()
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		run("netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run("link", "add", hostLink, "type", "veth", "peer", "name", peerLink)
		t.Cleanup(func() { exec.Command("ip", "link", "del", hostLink).Run() })
		run("link", "set", peerLink, "netns", ns)
		run("addr", "add", host.String()+"/30", "dev", hostLink)
		run("-n", ns, "addr", "add", host.Next().String()+"/30", "dev", peerLink)
		run("-n", ns, "link", "set", peerLink, "up")
		run("link", "set", hostLink, "up")
		return host
	}
	t.Fatal("no free 198.18.X.Y/30 for the outside address")
	return netip.Addr{}
}
