package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/oci"
)

// FuzzLoadSpec reads a fuzzed config.json from a bundle (@BUNDLE@ is the
// bundle's directory, which holds a fifo and a regular file) as create
// does: loadSpec, the namespace paths, the root file system. An accepted
// spec has a process with arguments and a root; the namespace paths are
// checked within a bound (opening a fifo must not wait for a writer),
// and a refused one names its entry.
func FuzzLoadSpec(f *testing.F) {
	b, _ := json.Marshal(oci.DefaultSpec([]string{"sh"}, nil, "/", false))
	f.Add(b)
	f.Add([]byte(`{"process":{"args":["sh"]},"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"network","path":"/proc/self/ns/net"},{"type":"pid","path":"/proc/self/ns/net"}]}}`))
	f.Add([]byte(`{"process":{"args":["sh"]},"root":{"path":"@BUNDLE@/file"},"linux":{"namespaces":[{"type":"ipc","path":"@BUNDLE@/file"}]}}`))
	f.Add([]byte(`{"process":{"args":[]},"root":{"path":""}}`))
	f.Fuzz(func(t *testing.T, config []byte) {
		bundle := t.TempDir()
		if err := unix.Mkfifo(filepath.Join(bundle, "fifo"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"file", "config.json"} {
			b := []byte("x")
			if p == "config.json" {
				b = bytes.ReplaceAll(config, []byte("@BUNDLE@"), []byte(bundle))
			}
			if err := os.WriteFile(filepath.Join(bundle, p), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755)
		spec, err := loadSpec(bundle)
		if err != nil {
			return
		}
		if spec.Process == nil || len(spec.Process.Args) == 0 || spec.Root == nil || spec.Root.Path == "" {
			t.Fatalf("%s: accepted without a process or a root: %+v", config, spec)
		}
		done := make(chan error, 1)
		go func() { done <- checkNamespacePaths(spec) }()
		select {
		case err := <-done:
			if err != nil && !strings.Contains(err.Error(), "linux.namespaces[") {
				t.Fatalf("%s: namespace paths refused naming no entry: %v", config, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: checking the namespace paths did not return", config)
		}
		if root, err := specRootfs(bundle, spec); err == nil {
			if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
				t.Fatalf("%s: root %s accepted: %v", config, root, err)
			}
		}
	})
}
