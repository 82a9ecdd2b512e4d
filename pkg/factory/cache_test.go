package factory

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// fakeCache serves one answer to every request on dir's cache socket and
// returns the requests it got.
func fakeCache(t *testing.T, dir string, rep cacheReply) <-chan cacheRequest {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(dir, cacheSocketName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	reqs := make(chan cacheRequest, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var req cacheRequest
			json.NewDecoder(c).Decode(&req)
			reqs <- req
			json.NewEncoder(c).Encode(rep)
			c.Close()
		}
	}()
	return reqs
}

func TestCacheNone(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, _, err := takeCachedVM(ctx, dir, "qemu", "sb", slog.Default()); !errdefs.IsNotFound(err) {
		t.Errorf("take without a cache: %v, want not found", err)
	}
	if _, err := QueryCache(ctx, dir); !errdefs.IsNotFound(err) {
		t.Errorf("status without a cache: %v, want not found", err)
	}
	if err := StopCache(ctx, dir); err != nil {
		t.Errorf("stop without a cache: %v", err)
	}
	// A socket nobody serves (a cache killed with SIGKILL) is no cache.
	l, err := net.Listen("unix", filepath.Join(dir, cacheSocketName))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, _, err := takeCachedVM(ctx, dir, "qemu", "sb", slog.Default()); !errdefs.IsNotFound(err) {
		t.Errorf("take from a dead cache's socket: %v, want not found", err)
	}
}

func TestCacheServeRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, size := range []int{0, -1, 65} {
		if err := ServeCache(ctx, dir, size); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "cache size") {
			t.Errorf("size %d: %v", size, err)
		}
	}
	if err := ServeCache(ctx, dir, 1); !errdefs.IsNotFound(err) {
		t.Errorf("no template: %v, want not found", err)
	}
	if _, err := os.Stat(filepath.Join(dir, cacheSocketName)); err == nil {
		t.Errorf("a refused cache left its socket")
	}
}

// The sandbox takes only a directory of the factory's cache: an answer
// naming anything else is refused, naming it.
func TestCacheTakeChecksDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := t.TempDir()
	reqs := fakeCache(t, dir, cacheReply{VMDir: "/etc"})
	_, _, err := takeCachedVM(ctx, dir, "qemu", "sb-1", slog.Default())
	if err == nil || !strings.Contains(err.Error(), `"/etc"`) {
		t.Errorf("take of /etc: %v", err)
	}
	if req := <-reqs; req.Op != "take" || req.Sandbox != "sb-1" {
		t.Errorf("request %+v", req)
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Errorf("/etc touched: %v", err)
	}
}

// An error from the cache (none ready) reaches the caller, which then
// starts the VM itself.
func TestCacheTakeError(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fakeCache(t, dir, cacheReply{Error: "no vm ready"})
	if _, _, err := takeCachedVM(ctx, dir, "qemu", "sb", slog.Default()); err == nil || !strings.Contains(err.Error(), "no vm ready") {
		t.Errorf("take: %v", err)
	}
}
