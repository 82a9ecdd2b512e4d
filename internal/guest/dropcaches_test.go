package guest

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Removals during a drop ask for one more drop after it, not one each.
func TestCacheDropperCoalesces(t *testing.T) {
	var d cacheDropper
	started, release := make(chan struct{}, 8), make(chan struct{})
	runs := 0
	drop := func() {
		runs++
		started <- struct{}{}
		<-release
	}
	d.request(drop)
	<-started
	d.request(drop)
	d.request(drop)
	close(release)
	<-started
	deadline := time.Now().Add(5 * time.Second)
	for {
		d.mu.Lock()
		done := !d.running
		d.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dropper never finished")
		}
		time.Sleep(time.Millisecond)
	}
	if runs != 2 {
		t.Fatalf("%d drops for 3 requests, 2 of them during the first: want 2", runs)
	}
}

// Only the guest's init drops the page cache: an agent run anywhere else
// leaves the machine's alone.
func TestDropCachesOnlyAsInit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "drop_caches")
	old := dropCachesPath
	dropCachesPath = path
	t.Cleanup(func() { dropCachesPath = old })
	a := &Agent{log: slog.Default()}
	a.dropCachesSoon()
	time.Sleep(50 * time.Millisecond)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("an agent that is not init wrote %s (stat: %v)", path, err)
	}
	a.cfg.InitDaemon = true
	a.dropCachesSoon()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && string(b) == "1" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("init agent never wrote 1 to %s", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
