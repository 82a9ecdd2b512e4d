package guestimage

import (
	"fmt"
	"io"
	"path"
	"strings"
)

// cpioWriter writes the "newc" (SVR4, no checksum) cpio format the kernel
// unpacks into its initramfs. Entries are deterministic: no timestamps,
// owner root, inode numbers in write order. Parent directories are created
// as needed, before their children, as the kernel requires.
type cpioWriter struct {
	w    io.Writer
	n    int64
	ino  uint32
	dirs map[string]bool
	err  error
}

// Mode type bits of the cpio header (the st_mode S_IF* values).
const (
	cpioDir     = 0o040000
	cpioRegular = 0o100000
	cpioSymlink = 0o120000
	cpioChar    = 0o020000
	cpioBlock   = 0o060000
)

func newCpioWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1, dirs: map[string]bool{".": true, "": true}}
}

// clean makes name relative ("init", "dev/console"), as the kernel's own
// gen_init_cpio does.
func cleanName(name string) (string, error) {
	c := strings.TrimPrefix(path.Clean("/"+name), "/")
	if c == "" {
		return "", fmt.Errorf("cpio: empty entry name %q", name)
	}
	return c, nil
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) header(name string, mode uint32, nlink uint32, size int64, rdevMajor, rdevMinor uint32) {
	if size > 0xffffffff {
		c.err = fmt.Errorf("cpio: %s: %d bytes is too large for newc", name, size)
		return
	}
	ino := c.ino
	c.ino++
	if name == "TRAILER!!!" {
		ino = 0
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, uint32(size), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(name))
	c.write([]byte{0})
	c.pad()
}

// parents writes the directories leading to name that are not yet there.
func (c *cpioWriter) parents(name string) {
	dir := path.Dir(name)
	if c.dirs[dir] {
		return
	}
	c.parents(dir)
	c.header(dir, cpioDir|0o755, 2, 0, 0, 0)
	c.dirs[dir] = true
}

// Dir adds a directory with the given permission bits (0o1777 etc.).
func (c *cpioWriter) Dir(name string, perm uint32) error {
	name, err := cleanName(name)
	if err != nil {
		return err
	}
	if c.dirs[name] {
		return fmt.Errorf("cpio: directory %s written twice", name)
	}
	c.parents(name)
	c.header(name, cpioDir|perm&0o7777, 2, 0, 0, 0)
	c.dirs[name] = true
	return c.err
}

// File adds a regular file of size bytes read from r.
func (c *cpioWriter) File(name string, perm uint32, size int64, r io.Reader) error {
	name, err := cleanName(name)
	if err != nil {
		return err
	}
	c.parents(name)
	c.header(name, cpioRegular|perm&0o7777, 1, size, 0, 0)
	if c.err != nil {
		return c.err
	}
	n, err := io.Copy(c.w, io.LimitReader(r, size))
	c.n += n
	if err != nil {
		c.err = fmt.Errorf("cpio: %s: %w", name, err)
		return c.err
	}
	if n != size {
		c.err = fmt.Errorf("cpio: %s: got %d bytes, want %d", name, n, size)
		return c.err
	}
	c.pad()
	return c.err
}

// Symlink adds a symbolic link name pointing at target.
func (c *cpioWriter) Symlink(name, target string) error {
	name, err := cleanName(name)
	if err != nil {
		return err
	}
	c.parents(name)
	c.header(name, cpioSymlink|0o777, 1, int64(len(target)), 0, 0)
	c.write([]byte(target))
	c.pad()
	return c.err
}

// CharDevice adds a character device node.
func (c *cpioWriter) CharDevice(name string, perm, major, minor uint32) error {
	name, err := cleanName(name)
	if err != nil {
		return err
	}
	c.parents(name)
	c.header(name, cpioChar|perm&0o7777, 1, 0, major, minor)
	return c.err
}

// Close writes the trailer. It does not close the underlying writer.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 1, 0, 0, 0)
	return c.err
}
