package main

import (
	"os"
	"path/filepath"
	"testing"
)

// What a stopped container keeps goes out to a carry directory and back
// into a sandbox directory whole, and the carry directory goes.
func TestCarryRoundTrip(t *testing.T) {
	g := &globals{stateRoot: t.TempDir()}
	old := filepath.Join(g.stateRoot, "c1")
	os.MkdirAll(filepath.Join(old, "layer", "upper", "etc"), 0o755)
	os.WriteFile(filepath.Join(old, "layer", "upper", "etc", "kept"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(old, "container.log"), []byte("log"), 0o644)
	carry, err := carryOut(g, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(old, "container.log")); !os.IsNotExist(err) {
		t.Errorf("container.log still in the old sandbox: %v", err)
	}
	next := filepath.Join(t.TempDir(), "c1")
	if err := carryIn(carry, next); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"layer/upper/etc/kept": "k", "container.log": "log"} {
		if b, err := os.ReadFile(filepath.Join(next, p)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", p, b, err, want)
		}
	}
	if _, err := os.Stat(carry); !os.IsNotExist(err) {
		t.Errorf("carry directory left: %v", err)
	}
}
