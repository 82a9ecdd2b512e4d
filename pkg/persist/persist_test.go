package persist

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

type state struct {
	N int `json:"n"`
}

func TestSaveLoadListRemove(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create("sb1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Create("sb1"); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second create: %v, want AlreadyExists", err)
	}
	if err := s.Save("sb1", "sandbox", state{N: 7}); err != nil {
		t.Fatal(err)
	}
	var got state
	if err := s.Load("sb1", "sandbox", &got); err != nil || got.N != 7 {
		t.Fatalf("load: %v %+v", err, got)
	}
	fi, err := os.Stat(filepath.Join(s.Dir("sb1"), "sandbox.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode: %v %v", fi.Mode(), err)
	}
	if err := s.Load("sb1", "nothing", &got); !errdefs.IsNotFound(err) {
		t.Fatalf("missing state: %v, want NotFound", err)
	}
	s.Save("sb1", "container-a", state{})
	s.Save("sb1", "container-b", state{})
	names, _ := s.Names("sb1", "container-")
	if len(names) != 2 || names[0] != "container-a" {
		t.Fatalf("names: %v", names)
	}
	ids, _ := s.List()
	if len(ids) != 1 || ids[0] != "sb1" {
		t.Fatalf("list: %v", ids)
	}
	if err := s.Remove("sb1"); err != nil {
		t.Fatal(err)
	}
	if s.Exists("sb1") {
		t.Fatal("sandbox still exists after Remove")
	}
	if _, err := s.Lock(context.Background(), "sb1"); !errdefs.IsNotFound(err) {
		t.Fatalf("lock of removed sandbox: %v, want NotFound", err)
	}
}

func TestBadIDs(t *testing.T) {
	s, _ := New(t.TempDir())
	for _, id := range []string{"", "../x", "a/b", ".hidden", string(make([]byte, 200))} {
		if err := s.Create(id); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Create(%q) = %v, want InvalidArgument", id, err)
		}
	}
}

// Concurrent read-modify-write under the lock loses no update.
func TestLockSerializes(t *testing.T) {
	s, _ := New(t.TempDir())
	s.Create("sb")
	s.Save("sb", "c", state{})
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			unlock, err := s.Lock(ctx, "sb")
			if err != nil {
				t.Error(err)
				return
			}
			defer unlock()
			var st state
			s.Load("sb", "c", &st)
			st.N++
			s.Save("sb", "c", st)
		}()
	}
	wg.Wait()
	var st state
	s.Load("sb", "c", &st)
	if st.N != 20 {
		t.Fatalf("N = %d after 20 locked increments", st.N)
	}
}

func TestLockTimeout(t *testing.T) {
	s, _ := New(t.TempDir())
	s.Create("sb")
	unlock, err := s.Lock(context.Background(), "sb")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(ctx, "sb"); err == nil {
		t.Fatal("second lock acquired while held")
	}
}

// A process that waits for the lock of a sandbox being removed must not
// leave a lock file behind: the state directory would then never go.
func TestLockDuringRemove(t *testing.T) {
	s, _ := New(t.TempDir())
	if err := s.Create("sb"); err != nil {
		t.Fatal(err)
	}
	s.Save("sb", "sandbox", state{N: 1})
	unlock, err := s.Lock(context.Background(), "sb")
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error)
	go func() {
		u, err := s.Lock(context.Background(), "sb")
		if err == nil {
			u()
		}
		waited <- err
	}()
	time.Sleep(20 * time.Millisecond) // the waiter has the lock file open
	if err := s.Remove("sb"); err != nil {
		t.Fatalf("Remove under the lock: %v", err)
	}
	unlock()
	if err := <-waited; !errdefs.IsNotFound(err) {
		t.Errorf("waiter's Lock after Remove: %v, want not found", err)
	}

	// Removal caught between the lock file and the directory: Lock finds
	// no sandbox and creates nothing.
	if err := os.Mkdir(s.Dir("sb"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(context.Background(), "sb"); !errdefs.IsNotFound(err) {
		t.Errorf("Lock of a directory without a lock file: %v, want not found", err)
	}
	if err := os.Remove(s.Dir("sb")); err != nil {
		t.Errorf("the directory is no longer empty after Lock: %v", err)
	}
}
