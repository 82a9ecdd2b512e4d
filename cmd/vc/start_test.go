package main

import (
	"os"
	"path/filepath"
	"testing"
)

// What a stopped container keeps goes out to a carry directory and back
// into a sandbox directory whole; the carry directory stays (with the
// record's copy) until the run it is for has succeeded.
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
	if _, err := os.Stat(filepath.Join(carry, carryState)); err != nil {
		t.Errorf("the record's copy went with carryIn: %v", err)
	}
}

// A run again that failed (its owner gave back what it carried in, and
// removed its sandbox): restoreStopped puts the stopped sandbox back as it
// was, its record, lock, writable layer and log, and the carry directory
// goes.
func TestRestoreStopped(t *testing.T) {
	g := &globals{stateRoot: t.TempDir()}
	old := filepath.Join(g.stateRoot, "c1")
	files := map[string]string{
		"sandbox.json": `{"state":"stopped"}`, "container-c1.json": `{"exit":3}`, optionsFile: `{"id":"c1"}`,
		"owner.log": "o", "container.log": "log", "layer/upper/etc/kept": "k",
	}
	for p, b := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(old, p)), 0o755)
		os.WriteFile(filepath.Join(old, p), []byte(b), 0o600)
	}
	os.WriteFile(filepath.Join(old, "lock"), nil, 0o600)
	carry, err := carryOut(g, "c1")
	if err != nil {
		t.Fatal(err)
	}
	// The sandbox removed, a new one made and given back.
	if err := os.RemoveAll(old); err != nil {
		t.Fatal(err)
	}
	next := filepath.Join(t.TempDir(), "c1")
	if err := carryIn(carry, next); err != nil {
		t.Fatal(err)
	}
	if err := moveCarried(next, carry); err != nil {
		t.Fatal(err)
	}
	if err := restoreStopped(g, "c1", carry); err != nil {
		t.Fatal(err)
	}
	for p, want := range files {
		if b, err := os.ReadFile(filepath.Join(old, p)); err != nil || string(b) != want {
			t.Errorf("%s after the restore: %q %v, want %q", p, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(old, "lock")); err != nil {
		t.Errorf("lock after the restore: %v", err)
	}
	if _, err := os.Stat(carry); !os.IsNotExist(err) {
		t.Errorf("carry directory left: %v", err)
	}
	// Not over a sandbox that is there.
	carry, err = carryOut(g, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := restoreStopped(g, "c1", carry); err == nil {
		t.Error("restore over an existing sandbox succeeded")
	}
	if _, err := os.Stat(filepath.Join(carry, "layer", "upper", "etc", "kept")); err != nil {
		t.Errorf("a refused restore lost what was carried: %v", err)
	}
}
