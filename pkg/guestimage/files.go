package guestimage

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// FileSHA256 returns the hex sha256 of the file at p, as a manifest
// records it (Manifest.AgentSHA256): whether an image was built from an
// agent is told by this digest, never by times.
func FileSHA256(p string) (string, error) { return fileSHA256(p) }

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// linkOrCopy hard-links src to dst, copying when they are on different
// filesystems. Cached files are never modified in place, so sharing the
// inode is safe.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

var elfMachine = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"386":     elf.EM_386,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
	"riscv64": elf.EM_RISCV,
}

// checkStaticExecutable makes sure p is an executable for this machine
// that the kernel can run as /init with nothing else in the initrd: an
// ELF program with no interpreter (statically linked).
func checkStaticExecutable(what, p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("%s binary: %w", what, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s binary %s is not a regular file", what, p)
	}
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%s binary %s is not an ELF executable: %w", what, p, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%s binary %s is an ELF %s, not an executable", what, p, f.Type)
	}
	if m, ok := elfMachine[runtime.GOARCH]; ok && f.Machine != m {
		return fmt.Errorf("%s binary %s is for %s, this machine is %s", what, p, f.Machine, runtime.GOARCH)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			interp, _ := io.ReadAll(prog.Open())
			return fmt.Errorf("%s binary %s is dynamically linked (interpreter %s): the initrd holds no libraries, build it static", what, p, strings.TrimRight(string(interp), "\x00"))
		}
	}
	return nil
}

// kernelVersionOf reads the version string of an x86 bzImage (the
// kernel_version field of its setup header). It returns "" for other
// images.
func kernelVersionOf(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	if _, err := io.ReadFull(f, hdr); err != nil || string(hdr[0x202:0x206]) != "HdrS" {
		return ""
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	buf := make([]byte, 256)
	n, err := f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	s, _, _ := bytes.Cut(buf[:n], []byte{0})
	if f := strings.Fields(string(s)); len(f) > 0 {
		return f[0]
	}
	return ""
}

func sleepCh() <-chan time.Time { return time.After(100 * time.Millisecond) }
