// Package copyfile writes the files the host copies into the guest with
// CopyFile: in chunks, into a temporary file beside the destination that
// is renamed over it once the whole file has arrived.
//
// Paths are confined to a root directory (/run in the guest): a path must
// be absolute, canonical and strictly below the root, and no component of
// it may be a symbolic link. Directories are walked one component at a
// time with O_NOFOLLOW from a descriptor of the root, so a link planted
// between two requests cannot redirect a write.
package copyfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
)

// MaxFileSize is the largest file CopyFile takes.
const MaxFileSize = 1 << 30

// Defaults for modes left at 0 in a request.
const (
	DefaultFileMode = 0o644
	DefaultDirMode  = 0o755
)

// staleAfter is how long a transfer may wait for its next chunk before
// its temporary file is removed.
const staleAfter = 10 * time.Minute

// Copier carries out CopyFile requests below one root.
type Copier struct {
	root string

	mu      sync.Mutex
	pending map[string]*transfer
	now     func() time.Time
}

// transfer is a regular file being received.
type transfer struct {
	tmp     string // name of the temporary file in the destination's directory
	size    int64
	next    int64 // bytes [0, next) have been written
	touched time.Time
}

// New returns a Copier confined to root, an absolute clean path.
func New(root string) (*Copier, error) {
	if !filepath.IsAbs(root) || filepath.Clean(root) != root {
		return nil, fmt.Errorf("copy root %q must be an absolute clean path: %w", root, errdefs.ErrInvalidArgument)
	}
	return &Copier{root: root, pending: map[string]*transfer{}, now: time.Now}, nil
}

// Root is the directory the Copier writes below.
func (c *Copier) Root() string { return c.root }

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// CheckPath checks p lexically: absolute, canonical, strictly below the
// root. It returns p's components below the root.
func (c *Copier) CheckPath(p string) ([]string, error) {
	switch {
	case p == "":
		return nil, invalid("path", "empty")
	case strings.ContainsRune(p, 0):
		return nil, invalid("path", "contains a NUL byte")
	case !filepath.IsAbs(p):
		return nil, invalid("path", "%q is not absolute", p)
	case filepath.Clean(p) != p:
		return nil, invalid("path", "%q is not canonical", p)
	}
	prefix := c.root + "/"
	if c.root == "/" {
		prefix = "/"
	}
	rel, ok := strings.CutPrefix(p, prefix)
	if !ok || rel == "" {
		return nil, invalid("path", "%q is not below %s", p, c.root)
	}
	comps := strings.Split(rel, "/")
	for _, comp := range comps {
		if comp == "" || comp == "." || comp == ".." {
			return nil, invalid("path", "%q has a bad component %q", p, comp)
		}
	}
	return comps, nil
}

// checkSizes checks the sizes and offsets of a chunk.
func checkSizes(req *pb.CopyFileRequest) error {
	size, off, n := req.FileSize, req.Offset, int64(len(req.Data))
	switch {
	case size < 0:
		return invalid("file_size", "%d is negative", size)
	case size > MaxFileSize:
		return invalid("file_size", "%d is more than the %d bytes allowed", size, MaxFileSize)
	case off < 0:
		return invalid("offset", "%d is negative", off)
	case off > size:
		return invalid("offset", "%d is beyond file_size %d", off, size)
	case n > size-off:
		return invalid("data", "%d bytes at offset %d go past file_size %d", n, off, size)
	}
	return nil
}

// Copy carries out one CopyFile request. By file_mode's type bits it
// writes a chunk of a regular file (no type bits or S_IFREG), makes a
// directory (S_IFDIR), or makes a symbolic link whose target is data
// (S_IFLNK), as Kata Containers' agent does.
func (c *Copier) Copy(req *pb.CopyFileRequest) error {
	comps, err := c.CheckPath(req.Path)
	if err != nil {
		return err
	}
	if err := checkSizes(req); err != nil {
		return err
	}
	typ := req.FileMode & unix.S_IFMT
	switch typ {
	case 0, unix.S_IFREG, unix.S_IFDIR, unix.S_IFLNK:
	default:
		return invalid("file_mode", "file type %#o is not a regular file, directory or symbolic link", typ)
	}
	perm := req.FileMode & 0o7777
	if req.FileMode == 0 {
		perm = DefaultFileMode
	}
	dirMode := req.DirMode & 0o7777
	if req.DirMode == 0 {
		dirMode = DefaultDirMode
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropStale()

	dirfd, err := c.openDir(comps[:len(comps)-1], dirMode, true)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	name := comps[len(comps)-1]
	var st unix.Stat_t
	exists := true
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		exists = false
	} else if err != nil {
		return fmt.Errorf("path: stat %s: %w", req.Path, err)
	}
	isLink := exists && st.Mode&unix.S_IFMT == unix.S_IFLNK
	switch typ {
	case unix.S_IFDIR:
		if isLink {
			return invalid("path", "%s is a symbolic link", req.Path)
		}
		return c.makeDir(dirfd, name, req, perm)
	case unix.S_IFLNK:
		return c.makeLink(dirfd, name, req, comps)
	}
	if isLink {
		return invalid("path", "%s is a symbolic link", req.Path)
	}
	if exists && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("path: %s is a directory: %w", req.Path, errdefs.ErrFailedPrecondition)
	}
	return c.writeChunk(dirfd, name, req, perm)
}

// dirFlags open a directory without following a symbolic link. The
// descriptors are real (not O_PATH) so fchmod and fchown work on them.
const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openDir opens the directory root/comps..., each component without
// following symbolic links, making the missing ones with mode when create
// is set.
func (c *Copier) openDir(comps []string, mode uint32, create bool) (int, error) {
	fd, err := unix.Open(c.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("path: open copy root %s: %w: %w", c.root, err, errdefs.ErrFailedPrecondition)
	}
	for i, comp := range comps {
		p := filepath.Join(append([]string{c.root}, comps[:i+1]...)...)
		created := false
		next, err := unix.Openat(fd, comp, dirFlags, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err := unix.Mkdirat(fd, comp, mode); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(fd)
				return -1, fmt.Errorf("path: mkdir %s: %w", p, err)
			} else if err == nil {
				created = true
			}
			next, err = unix.Openat(fd, comp, dirFlags, 0)
		}
		if err != nil {
			err = dirError(fd, comp, p, err)
			unix.Close(fd)
			return -1, err
		}
		unix.Close(fd)
		fd = next
		if created {
			// mkdir applied the umask.
			if err := unix.Fchmod(fd, mode); err != nil {
				unix.Close(fd)
				return -1, fmt.Errorf("path: chmod %s: %w", p, err)
			}
		}
	}
	return fd, nil
}

// dirError explains why comp (at p) in the directory dirfd did not open
// as a directory.
func dirError(dirfd int, comp, p string, err error) error {
	var st unix.Stat_t
	serr := unix.Fstatat(dirfd, comp, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case serr == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return invalid("path", "component %s is a symbolic link", p)
	case serr == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return invalid("path", "component %s is not a directory", p)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("path: %s: %w", p, errdefs.ErrNotFound)
	}
	return fmt.Errorf("path: open %s: %w", p, err)
}

func (c *Copier) makeDir(dirfd int, name string, req *pb.CopyFileRequest, perm uint32) error {
	if err := unix.Mkdirat(dirfd, name, perm); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("path: mkdir %s: %w", req.Path, err)
	}
	fd, err := unix.Openat(dirfd, name, dirFlags, 0)
	if err != nil {
		err = dirError(dirfd, name, req.Path, err)
		if errors.Is(err, errdefs.ErrInvalidArgument) {
			return fmt.Errorf("path: %s exists and is not a directory: %w", req.Path, errdefs.ErrAlreadyExists)
		}
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, int(req.Uid), int(req.Gid)); err != nil {
		return fmt.Errorf("path: chown %s: %w", req.Path, err)
	}
	if err := unix.Fchmod(fd, perm); err != nil {
		return fmt.Errorf("path: chmod %s: %w", req.Path, err)
	}
	return nil
}

// makeLink makes a symbolic link at name pointing at req.Data, replacing
// what is there atomically. The target must be relative and stay below
// the root: the guest reads these links, and must not be led out of it.
func (c *Copier) makeLink(dirfd int, name string, req *pb.CopyFileRequest, comps []string) error {
	target := string(req.Data)
	switch {
	case target == "":
		return invalid("data", "empty symbolic link target")
	case len(target) >= unix.PathMax:
		return invalid("data", "symbolic link target longer than %d bytes", unix.PathMax)
	case strings.ContainsRune(target, 0):
		return invalid("data", "symbolic link target contains a NUL byte")
	case filepath.IsAbs(target):
		return invalid("data", "symbolic link target %q is absolute", target)
	}
	dir := filepath.Join(append([]string{c.root}, comps[:len(comps)-1]...)...)
	resolved := filepath.Join(dir, target)
	if resolved != c.root && !strings.HasPrefix(resolved, strings.TrimSuffix(c.root, "/")+"/") {
		return invalid("data", "symbolic link target %q leads out of %s", target, c.root)
	}
	tmp, err := tempName(name)
	if err != nil {
		return err
	}
	if err := unix.Symlinkat(target, dirfd, tmp); err != nil {
		return fmt.Errorf("path: symlink %s: %w", req.Path, err)
	}
	if err := unix.Fchownat(dirfd, tmp, int(req.Uid), int(req.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return fmt.Errorf("path: chown %s: %w", req.Path, err)
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return renameError(req.Path, err)
	}
	return nil
}

func renameError(path string, err error) error {
	if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("path: %s is a directory: %w: %w", path, err, errdefs.ErrFailedPrecondition)
	}
	return fmt.Errorf("path: rename into %s: %w", path, err)
}

// tempName is a fresh name for a temporary file beside name.
func tempName(name string) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	base := name
	if len(base) > 200 {
		base = base[:200]
	}
	return "." + base + ".vc-copy-" + hex.EncodeToString(b[:]), nil
}

// writeChunk writes one chunk of a regular file. The first chunk (offset
// 0) starts a transfer, replacing an unfinished one of the same path;
// later chunks may overlap what was written but leave no gap. When the
// bytes [0, file_size) have all been written, the file gets its mode and
// owner and is renamed over the destination.
func (c *Copier) writeChunk(dirfd int, name string, req *pb.CopyFileRequest, perm uint32) error {
	t := c.pending[req.Path]
	if req.Offset == 0 {
		if t != nil {
			unix.Unlinkat(dirfd, t.tmp, 0)
			delete(c.pending, req.Path)
		}
		tmp, err := tempName(name)
		if err != nil {
			return err
		}
		fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("path: create temporary file beside %s: %w", req.Path, err)
		}
		unix.Close(fd)
		t = &transfer{tmp: tmp, size: req.FileSize}
		c.pending[req.Path] = t
	} else {
		switch {
		case t == nil:
			return fmt.Errorf("offset: no copy of %s in progress, the first chunk has offset 0: %w", req.Path, errdefs.ErrFailedPrecondition)
		case t.size != req.FileSize:
			return invalid("file_size", "%d differs from the %d of the copy in progress", req.FileSize, t.size)
		case req.Offset > t.next:
			return invalid("offset", "%d leaves a gap after the %d bytes written", req.Offset, t.next)
		}
	}
	t.touched = c.now()
	fd, err := unix.Openat(dirfd, t.tmp, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		delete(c.pending, req.Path)
		return fmt.Errorf("path: reopen temporary file of %s: %w: %w", req.Path, err, errdefs.ErrFailedPrecondition)
	}
	f := os.NewFile(uintptr(fd), t.tmp)
	defer f.Close()
	fail := func(err error) error {
		unix.Unlinkat(dirfd, t.tmp, 0)
		delete(c.pending, req.Path)
		return err
	}
	if len(req.Data) > 0 {
		if _, err := f.WriteAt(req.Data, req.Offset); err != nil {
			return fail(fmt.Errorf("path: write %s: %w", req.Path, err))
		}
	}
	t.next = max(t.next, req.Offset+int64(len(req.Data)))
	if t.next < t.size {
		return nil
	}
	if err := f.Chown(int(req.Uid), int(req.Gid)); err != nil {
		return fail(fmt.Errorf("path: chown %s: %w", req.Path, err))
	}
	// After chown, which clears set-user/group-ID bits.
	if err := unix.Fchmod(fd, perm); err != nil {
		return fail(fmt.Errorf("path: chmod %s: %w", req.Path, err))
	}
	if err := unix.Renameat(dirfd, t.tmp, dirfd, name); err != nil {
		return fail(renameError(req.Path, err))
	}
	delete(c.pending, req.Path)
	slog.Debug("file copied", "path", req.Path, "size", t.size)
	return nil
}

// dropStale removes the temporary files of transfers that stopped.
func (c *Copier) dropStale() {
	now := c.now()
	for p, t := range c.pending {
		if now.Sub(t.touched) < staleAfter {
			continue
		}
		delete(c.pending, p)
		comps, err := c.CheckPath(p)
		if err != nil {
			continue
		}
		dirfd, err := c.openDir(comps[:len(comps)-1], 0, false)
		if err != nil {
			continue
		}
		unix.Unlinkat(dirfd, t.tmp, 0)
		unix.Close(dirfd)
		slog.Warn("unfinished file copy abandoned", "path", p, "written", t.next, "size", t.size)
	}
}

// Pending is the number of unfinished transfers.
func (c *Copier) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}
