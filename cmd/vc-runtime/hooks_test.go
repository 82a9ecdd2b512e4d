package main

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestHookSelection: prestart and createRuntime hooks run at create, in
// that order; a new network namespace is one without a path.
func TestHookSelection(t *testing.T) {
	spec := &specs.Spec{Hooks: &specs.Hooks{
		CreateRuntime:  []specs.Hook{{Path: "/b"}},
		Prestart:       []specs.Hook{{Path: "/a"}},
		Poststop:       []specs.Hook{{Path: "/c"}},
		StartContainer: []specs.Hook{{Path: "/d"}},
	}}
	if h := createHooks(spec); len(h) != 2 || h[0].Path != "/a" || h[1].Path != "/b" {
		t.Errorf("createHooks: %+v", h)
	}
	if n := ignoredHooks(spec); n != 1 {
		t.Errorf("ignoredHooks: %d", n)
	}
	for _, c := range []struct {
		ns   []specs.LinuxNamespace
		want bool
	}{
		{nil, false},
		{[]specs.LinuxNamespace{{Type: specs.PIDNamespace}}, false},
		{[]specs.LinuxNamespace{{Type: specs.NetworkNamespace}}, true},
		{[]specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"}}, false},
	} {
		if got := newNetNS(&specs.Spec{Linux: &specs.Linux{Namespaces: c.ns}}); got != c.want {
			t.Errorf("newNetNS(%+v) = %v", c.ns, got)
		}
	}
}
