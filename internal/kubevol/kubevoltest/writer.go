// Package kubevoltest writes volumes as the kubelet does, for tests.
package kubevoltest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// File is one key of a payload KubeletWrite writes.
type File struct {
	Data string
	Mode os.FileMode
}

// KubeletWrite writes payload into dir as the kubelet's AtomicWriter.Write
// (k8s.io/kubernetes/pkg/volume/util, v1.37) does, step for step; gid >= 0
// is its fsGroup pass (SetVolumeOwnership: group and setgid on every
// directory, group read on every file) before the swap. It returns the new
// timestamped directory's name.
func KubeletWrite(t testing.TB, dir string, payload map[string]File, gid int) string {
	t.Helper()
	dataPath := filepath.Join(dir, "..data")
	oldTs, _ := os.Readlink(dataPath)
	// (3) The user-visible paths to remove: the old payload's top names
	// no longer in the new one.
	remove := map[string]bool{}
	if oldTs != "" {
		filepath.Walk(filepath.Join(dir, oldTs), func(p string, fi os.FileInfo, err error) error {
			rel, _ := filepath.Rel(filepath.Join(dir, oldTs), p)
			if err == nil && rel != "." {
				remove[strings.SplitN(rel, "/", 2)[0]] = true
			}
			return nil
		})
	}
	top := map[string]bool{}
	for k := range payload {
		top[strings.SplitN(k, "/", 2)[0]] = true
		delete(remove, strings.SplitN(k, "/", 2)[0])
	}
	// (5)
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	must(t, err)
	must(t, os.Chmod(ts, 0o755))
	// (6)
	for k, f := range payload {
		p := filepath.Join(ts, k)
		must(t, os.MkdirAll(filepath.Dir(p), os.ModePerm))
		must(t, os.WriteFile(p, []byte(f.Data), f.Mode))
		must(t, os.Chmod(p, f.Mode))
	}
	// (7)
	if gid >= 0 {
		must(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			if err := os.Lchown(p, -1, gid); err != nil {
				return err
			}
			switch {
			case fi.Mode()&os.ModeSymlink != 0:
				return nil
			case fi.IsDir():
				return os.Chmod(p, fi.Mode()|os.ModeSetgid|0o050)
			default:
				return os.Chmod(p, fi.Mode()|0o040)
			}
		}))
	}
	// (8), (9)
	tmp := filepath.Join(dir, "..data_tmp")
	must(t, os.Symlink(filepath.Base(ts), tmp))
	must(t, os.Rename(tmp, dataPath))
	// (10)
	for n := range top {
		p := filepath.Join(dir, n)
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			must(t, os.Symlink(filepath.Join("..data", n), p))
		}
	}
	// (11)
	for n := range remove {
		must(t, os.Remove(filepath.Join(dir, n)))
	}
	// (12)
	if oldTs != "" {
		must(t, os.RemoveAll(filepath.Join(dir, oldTs)))
	}
	return filepath.Base(ts)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
