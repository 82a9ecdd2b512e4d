package shimtest

import (
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	erofs "github.com/erofs/go-erofs"
)

// bigFileSize is the size of /data/bigfile, which LargeFileRead and
// BindMountRead read.
const bigFileSize = 64 << 20

// tile is the byte stream of burstexit and of the big file: 0x00..0xff
// over and over.
type tile struct{ off int64 }

func (r *tile) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte((r.off + int64(i)) % 256)
	}
	r.off += int64(len(p))
	return len(p), nil
}

// tiledCRC is the crc32c, hex, of the first n bytes of the tile stream.
func tiledCRC(n int64) string {
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	io.Copy(h, io.LimitReader(&tile{}, n))
	return fmt.Sprintf("%08x", h.Sum32())
}

// writeTiled writes n bytes of the tile stream to path and returns their crc32c.
func writeTiled(path string, n int64) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(f, io.LimitReader(&tile{}, n)); err != nil {
		return "", err
	}
	return tiledCRC(n), f.Close()
}

// erofsFromDir writes the directory tree at dir (directories, regular
// files, symlinks) as an erofs image at img.
func erofsFromDir(img, dir string) error {
	out, err := os.Create(img)
	if err != nil {
		return err
	}
	defer out.Close()
	w := erofs.Create(out, erofs.WithTempDir(filepath.Dir(img)))
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return w.Mkdir(rel, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return w.Symlink(target, rel)
		case d.Type().IsRegular():
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			f, err := w.Create(rel)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, src); err != nil {
				return err
			}
			if err := f.Chmod(info.Mode().Perm()); err != nil {
				return err
			}
			return f.Close()
		}
		return fmt.Errorf("%s: file type %v not supported", p, d.Type())
	})
	if err != nil {
		return fmt.Errorf("erofs image of %s: %w", dir, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("erofs image of %s: %w", dir, err)
	}
	return out.Close()
}

// overlayWhiteout is the mode of an overlayfs whiteout: a character device
// 0:0.
const overlayWhiteout = 0o20000

// layerImages writes n erofs layers (top first) stacked over the rootfs:
// the bottom one has /base/base_0..base_{n-2} and /added/file_1; layer K
// (2..n) adds /added/file_K and whites out /base/base_{K-2}. The merged
// view has /added/file_1..file_n and an empty /base.
func layerImages(dir string, n int) ([]string, error) {
	paths := make([]string, n)
	for k := 1; k <= n; k++ {
		img := filepath.Join(dir, fmt.Sprintf("layer-%03d.erofs", k))
		out, err := os.Create(img)
		if err != nil {
			return nil, err
		}
		w := erofs.Create(out, erofs.WithTempDir(dir))
		err = func() error {
			for _, d := range []string{"base", "added"} {
				if err := w.Mkdir(d, 0o755); err != nil {
					return err
				}
			}
			files := map[string]string{fmt.Sprintf("added/file_%d", k): fmt.Sprintf("layer %d\n", k)}
			if k == 1 {
				for j := 0; j < n-1; j++ {
					files[fmt.Sprintf("base/base_%d", j)] = fmt.Sprintf("base %d\n", j)
				}
			} else if err := w.Mknod(fmt.Sprintf("base/base_%d", k-2), overlayWhiteout, 0); err != nil {
				return err
			}
			for name, content := range files {
				f, err := w.Create(name)
				if err != nil {
					return err
				}
				if _, err := f.Write([]byte(content)); err != nil {
					return err
				}
				if err := f.Chmod(0o644); err != nil {
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
			}
			return w.Close()
		}()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", k, err)
		}
		paths[n-k] = img
	}
	return paths, nil
}
