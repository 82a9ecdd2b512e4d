package imagestore

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Whiteouts as the OCI image spec writes them in a layer's tar, and as
// overlayfs reads them in a lower directory.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// decompress returns the uncompressed stream of a layer blob, whatever its
// compression (gzip, zstd or none), told by its first bytes.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return z, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		z, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return z.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// unpackLayer writes the layer blob at blob into the empty directory dir
// as overlayfs wants a lower directory: a whiteout (.wh.NAME) becomes a
// 0/0 character device NAME, an opaque marker (.wh..wh..opq) the
// trusted.overlay.opaque xattr of its directory. It checks the
// uncompressed stream against diffID ("sha256:HEX"). No entry reaches
// outside dir, whatever its name or the symbolic links before it.
func unpackLayer(blob, dir, diffID string) error {
	return readLayer(blob, diffID, func(r io.Reader) error { return untar(r, dir) })
}

// checkDiffID checks that the layer blob at blob uncompresses to diffID,
// unpacking nothing.
func checkDiffID(blob, diffID string) error {
	return readLayer(blob, diffID, func(io.Reader) error { return nil })
}

// readLayer gives use the uncompressed stream of the layer blob at blob
// and then checks all of it (whatever use left unread: the tar's end
// padding counts in the digest) against diffID.
func readLayer(blob, diffID string, use func(io.Reader) error) error {
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	z, err := decompress(f)
	if err != nil {
		return err
	}
	defer z.Close()
	h := sha256.New()
	r := io.TeeReader(z, h)
	if err := use(r); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("uncompressing: %w", err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		return fmt.Errorf("uncompressed content is %s, want diff_id %s: %w", got, diffID, ErrDigestMismatch)
	}
	return nil
}

// dirTime is a directory an entry made: its name in the tar, where that
// resolved to, and its time.
type dirTime struct {
	name, path string
	mtime      time.Time
}

func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	var dirs []dirTime
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		name := filepath.Clean("/" + hdr.Name)
		if name == "/" {
			if hdr.Typeflag == tar.TypeDir {
				// The root's own mode and owner.
				if err := attrs(dir, hdr); err != nil {
					return err
				}
			}
			continue
		}
		parentRel, base := filepath.Split(name)
		parent, err := securejoin.SecureJoin(dir, parentRel)
		if err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		path := filepath.Join(parent, base)
		switch {
		case base == whiteoutOpaque:
			if err := unix.Setxattr(parent, opaqueXattr, []byte("y"), 0); err != nil {
				return fmt.Errorf("tar entry %q: opaque directory: %w", hdr.Name, err)
			}
			continue
		case strings.HasPrefix(base, whiteoutPrefix):
			gone := strings.TrimPrefix(base, whiteoutPrefix)
			if gone == "" || gone == "." || gone == ".." {
				// Joined, it would name the directory or its parent.
				return fmt.Errorf("tar entry %q: whiteout of %q: not a file name", hdr.Name, gone)
			}
			target := filepath.Join(parent, gone)
			if err := os.RemoveAll(target); err != nil {
				return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
			if err := unix.Mknod(target, unix.S_IFCHR, 0); err != nil {
				return fmt.Errorf("tar entry %q: whiteout: %w", hdr.Name, err)
			}
			continue
		}
		// An entry replaces what an earlier one of the same name left,
		// but a directory keeps its contents.
		if fi, err := os.Lstat(path); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(path); err != nil {
				return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(path, 0o755); err != nil && !os.IsExist(err) {
				return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
			dirs = append(dirs, dirTime{name, path, hdr.ModTime})
		case tar.TypeReg, tar.TypeRegA:
			out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, path); err != nil {
				return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
		case tar.TypeLink:
			// The link's own directory resolved, not its last name: a
			// hard link to a symbolic link links the symbolic link.
			ldir, lbase := filepath.Split(filepath.Clean("/" + hdr.Linkname))
			target, err := securejoin.SecureJoin(dir, ldir)
			target = filepath.Join(target, lbase)
			if err != nil {
				return fmt.Errorf("tar entry %q: link to %q: %w", hdr.Name, hdr.Linkname, err)
			}
			if err := os.Link(target, path); err != nil {
				return fmt.Errorf("tar entry %q: link to %q: %w", hdr.Name, hdr.Linkname, err)
			}
			continue // the target's attributes are the link's
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			mode := uint32(unix.S_IFIFO)
			switch hdr.Typeflag {
			case tar.TypeChar:
				mode = unix.S_IFCHR
			case tar.TypeBlock:
				mode = unix.S_IFBLK
			}
			if err := unix.Mknod(path, mode|0o600, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
				return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
		case tar.TypeXGlobalHeader:
			continue
		default:
			return fmt.Errorf("tar entry %q: unsupported type %q", hdr.Name, hdr.Typeflag)
		}
		if err := attrs(path, hdr); err != nil {
			return err
		}
	}
	// Directories last: writing into one changed its time. A later entry
	// may have replaced one of its parents with a symbolic link: its
	// name is resolved again, and a directory no longer where it was is
	// left alone (its path would lead elsewhere, outside dir even).
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if p, err := securejoin.SecureJoin(dir, d.name); err != nil || p != d.path {
			continue
		}
		ts := []unix.Timespec{unix.NsecToTimespec(d.mtime.UnixNano()), unix.NsecToTimespec(d.mtime.UnixNano())}
		unix.UtimesNanoAt(unix.AT_FDCWD, d.path, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// attrs gives path the entry's owner, mode, extended attributes and time.
func attrs(path string, hdr *tar.Header) error {
	if err := os.Lchown(path, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("tar entry %q: chown: %w", hdr.Name, err)
	}
	for k, v := range hdr.PAXRecords {
		if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if err := unix.Lsetxattr(path, x, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
				return fmt.Errorf("tar entry %q: xattr %s: %w", hdr.Name, x, err)
			}
		}
	}
	if hdr.Typeflag == tar.TypeSymlink {
		ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
		unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
		return nil
	}
	// After chown, which clears set-uid bits.
	mode := uint32(hdr.Mode & 0o7777)
	if err := unix.Fchmodat(unix.AT_FDCWD, path, mode, 0); err != nil {
		return fmt.Errorf("tar entry %q: chmod: %w", hdr.Name, err)
	}
	if hdr.Typeflag != tar.TypeDir {
		ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
		unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}
