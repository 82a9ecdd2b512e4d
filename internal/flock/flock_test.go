package flock

import (
	"path/filepath"
	"testing"
)

// An exclusive lock keeps TryLock out until it is released, across open
// files (flock's locks belong to open files, not to the process).
func TestTryLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	release, err := Lock(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := TryLock(p); ok || err != nil {
		t.Fatalf("TryLock while locked: ok %v err %v, want false, nil", ok, err)
	}
	release()
	r2, ok, err := TryLock(p)
	if !ok || err != nil {
		t.Fatalf("TryLock after release: ok %v err %v", ok, err)
	}
	r2()
	// Shared locks stand together.
	a, err := Lock(p, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Lock(p, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := TryLock(p); ok {
		t.Error("TryLock (exclusive) got the lock while two shared were held")
	}
	a()
	b()
}

func TestLockMissingDir(t *testing.T) {
	if _, err := Lock(filepath.Join(t.TempDir(), "no", "lock"), true); err == nil {
		t.Error("Lock in a missing directory succeeded")
	}
}
