package testenv

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// NoImports fails t if the package in the current directory (its
// non-test imports, direct or not) reaches a package for which bad
// says so.
func NoImports(t *testing.T, bad func(pkg string) bool) {
	t.Helper()
	goBin := LookPath(t, "go", "the Go toolchain")
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed %d packages: %q", len(deps), deps)
	}
	for _, d := range deps {
		if bad(d) {
			t.Errorf("the package imports %s", d)
		}
	}
}

// LoopDevice attaches a file of size bytes, pattern at its offset 0, to
// a loop device and returns the device's path. The test's cleanup
// detaches it and fails the test if the file is still attached.
func LoopDevice(t *testing.T, size int, pattern string) string {
	t.Helper()
	RequireRoot(t, "a loop device")
	losetup := LookPath(t, "losetup", "util-linux")
	img := filepath.Join(t.TempDir(), "disk.img")
	data := make([]byte, size)
	copy(data, pattern)
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(losetup, "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(losetup, "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
		if out, _ := exec.Command(losetup, "-j", img).Output(); len(bytes.TrimSpace(out)) != 0 {
			t.Errorf("loop device left attached: %s", out)
		}
	})
	return dev
}

// UnixEchoServer serves a unix socket at sock until the test ends: each
// connection gets its bytes back and, after the peer's half-close, its
// own. counts tells the connections accepted and those still open.
func UnixEchoServer(t *testing.T, sock string) (counts func() (accepted, open int)) {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	accepted, open := 0, 0
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted++
			open++
			mu.Unlock()
			go func() {
				io.Copy(c, c)
				c.(*net.UnixConn).CloseWrite()
				io.Copy(io.Discard, c)
				c.Close()
				mu.Lock()
				open--
				mu.Unlock()
			}()
		}
	}()
	return func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return accepted, open
	}
}
