// Package tarcopy copies file trees as tar streams, as docker cp does:
// links are copied as links, never followed, and what is unpacked stays
// under its root (an os.Root) whatever the stream holds.
package tarcopy

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Pack writes host path src as a tar stream whose top entry is name.
func Pack(w io.Writer, src, name string, keepOwners bool) error {
	src = filepath.Clean(src)
	root, err := os.OpenRoot(filepath.Dir(src))
	if err != nil {
		return err
	}
	defer root.Close()
	return PackRoot(w, root, filepath.Base(src), name, keepOwners)
}

// PackRoot writes src, a name in root, as a tar stream whose top entry is
// name. Links are copied as links, never followed (src's own too, as
// docker cp copies it).
func PackRoot(w io.Writer, root *os.Root, src, name string, keepOwners bool) error {
	tw := tar.NewWriter(w)
	add := func(p string) (isDir bool, err error) {
		fi, err := root.Lstat(p)
		if err != nil {
			return false, err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = root.Readlink(p); err != nil {
				return false, err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return false, fmt.Errorf("%s: %w", p, err)
		}
		rel := p
		if src != "." {
			rel = strings.TrimPrefix(strings.TrimPrefix(p, src), "/")
		}
		h.Name = path.Join(name, rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		if !keepOwners {
			h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		}
		if err := tw.WriteHeader(h); err != nil {
			return false, err
		}
		if !fi.Mode().IsRegular() {
			return fi.IsDir(), nil
		}
		f, err := root.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return false, err
		}
		defer f.Close()
		_, err = io.CopyN(tw, f, h.Size)
		return false, err
	}
	isDir, err := add(src)
	if err == nil && isDir {
		err = fs.WalkDir(root.FS(), src, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == src {
				return err
			}
			_, err = add(p)
			return err
		})
	}
	if err != nil {
		return err
	}
	return tw.Close()
}

// Unpack unpacks a tar stream into root; with rename, the stream's top
// entry takes that name; with chown, what it makes gets the stream's
// owners (into a container; on the host, they are the caller's). Every
// path stays in root: os.Root refuses one that climbs out, by .. or by a
// link the stream made.
func Unpack(r io.Reader, root *os.Root, rename string, chown bool) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if rename != "" {
			_, rest, _ := strings.Cut(name, "/")
			name = path.Join(rename, rest)
		}
		if name == "" || name == "." {
			continue
		}
		mode := fs.FileMode(h.Mode).Perm()
		if d := path.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, mode); err != nil {
				return err
			}
			root.Chmod(name, mode)
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			root.Chmod(name, mode)
		case tar.TypeSymlink:
			root.Remove(name)
			if err := root.Symlink(h.Linkname, name); err != nil {
				return err
			}
		case tar.TypeLink:
			link := strings.TrimPrefix(path.Clean("/"+h.Linkname), "/")
			if rename != "" {
				_, rest, _ := strings.Cut(link, "/")
				link = path.Join(rename, rest)
			}
			root.Remove(name)
			if err := root.Link(link, name); err != nil {
				return err
			}
		default:
			// Devices and FIFOs are not copied out, as docker cp skips
			// what it cannot recreate unprivileged.
		}
		if chown {
			if err := root.Lchown(name, h.Uid, h.Gid); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		if !h.ModTime.IsZero() && h.Typeflag != tar.TypeSymlink {
			root.Chtimes(name, h.AccessTime, h.ModTime)
		}
	}
}
