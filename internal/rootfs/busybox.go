// Package rootfs makes the container root filesystems virtcontainers ships
// with: "busybox", from Debian's busybox-static.
package rootfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BusyboxBinary is Debian's static busybox.
const BusyboxBinary = "/bin/busybox"

// Busybox returns the busybox root filesystem under dir, building it once:
// a static busybox with a link per applet, /etc/passwd and /etc/group.
// A half-built tree never shows: it is built aside and renamed.
func Busybox(dir string) (string, error) {
	root := filepath.Join(dir, "busybox")
	if _, err := os.Stat(filepath.Join(root, "bin", "busybox")); err == nil {
		return root, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, ".busybox-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := BuildBusybox(tmp); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, root); err != nil && !os.IsExist(err) {
		// Another process may have won the race.
		if _, serr := os.Stat(filepath.Join(root, "bin", "busybox")); serr != nil {
			return "", err
		}
	}
	return root, nil
}

// BuildBusybox writes a busybox root filesystem at root.
func BuildBusybox(root string) error {
	out, err := exec.Command(BusyboxBinary, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list (is busybox-static installed?): %w", BusyboxBinary, err)
	}
	for _, d := range []string{"bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o777|os.ModeSticky); err != nil {
		return err
	}
	b, err := os.ReadFile(BusyboxBinary)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
		return err
	}
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":    "root:x:0:\nnogroup:x:65534:\n",
		"etc/hostname": "busybox\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}
