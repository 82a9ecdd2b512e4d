package main

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseDevice(t *testing.T) {
	d, rule, err := parseDevice("/dev/null:/dev/mynull:r")
	if err != nil {
		t.Fatal(err)
	}
	if d.Path != "/dev/mynull" || d.Type != "c" || d.Major != 1 || d.Minor != 3 || rule.Access != "r" || *rule.Major != 1 || *rule.Minor != 3 || !rule.Allow {
		t.Fatalf("/dev/null:/dev/mynull:r: %+v %+v", d, rule)
	}
	if d, rule, err = parseDevice("/dev/null"); err != nil || d.Path != "/dev/null" || rule.Access != "rwm" {
		t.Fatalf("/dev/null: %+v %+v %v", d, rule, err)
	}
	for _, bad := range []string{"", "/dev/null:/x:rx", "/dev/null:x", "/etc/passwd", "/nonexistent", "/dev/null:/a:r:extra"} {
		if _, _, err := parseDevice(bad); err == nil {
			t.Errorf("%q: no error", bad)
		} else if bad != "/nonexistent" && !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: %v, want InvalidArgument", bad, err)
		}
	}
}
