package guestimage

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// VmlinuxFile is the uncompressed kernel's name in an image directory.
const VmlinuxFile = "vmlinux"

// ExtractVmlinux unpacks the ELF kernel inside a bzImage whose payload is
// xz or zstd compressed (Debian's are xz) into out, atomically. QEMU boots
// the ELF through its PVH entry point, skipping the decompression that
// takes the guest seconds under TCG.
func ExtractVmlinux(bz, out string) error {
	b, err := os.ReadFile(bz)
	if err != nil {
		return err
	}
	var tool []string
	off := bytes.Index(b, []byte("\xfd7zXZ\x00"))
	if off >= 0 {
		tool = []string{"xz", "-dc", "--single-stream"}
	} else if off = bytes.Index(b, []byte{0x28, 0xb5, 0x2f, 0xfd}); off >= 0 {
		tool = []string{"zstd", "-dcq"}
	} else {
		return fmt.Errorf("%s: no xz or zstd payload to unpack", bz)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+"-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	cmd := exec.Command(tool[0], tool[1:]...)
	cmd.Stdin = bytes.NewReader(b[off:])
	cmd.Stdout = f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	head := make([]byte, 4)
	if g, oerr := os.Open(tmp); oerr == nil {
		g.Read(head)
		g.Close()
	}
	// The decompressors may complain about the data after the stream; the
	// result is what counts.
	if string(head) != "\x7fELF" {
		if err == nil {
			err = fmt.Errorf("the payload is not an ELF kernel")
		}
		return fmt.Errorf("unpack %s with %s: %v: %s", bz, strings.Join(tool, " "), err, stderr.String())
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
