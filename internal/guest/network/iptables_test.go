package network

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/guest/network/netnstest"
	"github.com/virtcontainers/vc/internal/guest/reaper"
)

const rules = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s %s -j DROP
COMMIT
`

// TestIPTables saves and restores rules in a namespace of its own: the
// tools run as children of a thread inside it.
func TestIPTables(t *testing.T) {
	ns := netnstest.New(t)
	ipt := IPTables{Runner: reaper.New()}
	ctx := context.Background()
	for _, c := range []struct {
		v6   bool
		addr string
	}{
		{false, "10.9.9.9/32"},
		{true, "2001:db8::9/128"},
	} {
		netnstest.Do(t, ns, func() {
			out, err := ipt.Save(ctx, c.v6)
			if err != nil {
				t.Fatalf("Save(v6=%v) in a new namespace: %v", c.v6, err)
			}
			// A new namespace has no rules: nothing, or empty tables.
			if s := string(out); s != "" && !strings.Contains(s, "*filter") {
				t.Errorf("Save(v6=%v) in a new namespace printed %q", c.v6, s)
			}
			if _, err := ipt.Restore(ctx, c.v6, []byte(strings.ReplaceAll(rules, "%s", c.addr))); err != nil {
				t.Fatalf("Restore(v6=%v): %v", c.v6, err)
			}
			out, err = ipt.Save(ctx, c.v6)
			if err != nil {
				t.Fatal(err)
			}
			if want := "-A INPUT -s " + c.addr + " -j DROP"; !strings.Contains(string(out), want) {
				t.Errorf("after Restore(v6=%v), Save printed %q, lacking %q", c.v6, out, want)
			}
			_, err = ipt.Restore(ctx, c.v6, []byte("*filter\n-A NOCHAIN -j FOO\nCOMMIT\n"))
			if !errdefs.IsInvalidArgument(err) || !strings.HasPrefix(err.Error(), "data: ") {
				t.Errorf("Restore(v6=%v) of bad rules: %v, want InvalidArgument naming data", c.v6, err)
			}
		})
	}
}

func TestIPTablesMissingTool(t *testing.T) {
	empty := t.TempDir()
	// A file of the right name that is not executable does not count.
	if err := os.WriteFile(filepath.Join(empty, "iptables-save"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ipt := IPTables{Runner: reaper.New(), Path: empty}
	ctx := context.Background()
	check := func(tool string, err error) {
		t.Helper()
		if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), tool) {
			t.Errorf("without %s: %v, want FailedPrecondition naming it", tool, err)
		}
	}
	_, err := ipt.Save(ctx, false)
	check("iptables-save", err)
	_, err = ipt.Save(ctx, true)
	check("ip6tables-save", err)
	_, err = ipt.Restore(ctx, false, nil)
	check("iptables-restore", err)
	_, err = ipt.Restore(ctx, true, nil)
	check("ip6tables-restore", err)

	// An empty Path means $PATH.
	t.Setenv("PATH", empty)
	_, err = IPTables{Runner: reaper.New()}.Save(ctx, false)
	check("iptables-save", err)
}
