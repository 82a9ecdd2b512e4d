package kubevol

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watcher watches volume directories with one inotify instance and one
// goroutine, and calls its function with a directory's path when the
// kubelet swaps its ..data (an update's commit point: the new content is
// whole by then). Events of the other names (the timestamped
// directories, the top-level links) are not needed: every update renames
// ..data.
type Watcher struct {
	f        *os.File
	onChange func(dir string)
	done     chan struct{}

	mu   sync.Mutex
	wds  map[int32]string // guarded by mu
	dirs map[string]int32 // guarded by mu
}

// NewWatcher starts a watcher calling onChange, on the watcher's own
// goroutine, for each ..data swap in a directory it watches.
func NewWatcher(onChange func(dir string)) (*Watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	// Non-blocking, so the runtime's poller serves it and Close ends a
	// pending Read.
	w := &Watcher{
		f:        os.NewFile(uintptr(fd), "inotify"),
		onChange: onChange,
		done:     make(chan struct{}),
		wds:      map[int32]string{},
		dirs:     map[string]int32{},
	}
	go w.loop()
	return w, nil
}

// Add watches dir.
func (w *Watcher) Add(dir string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.dirs[dir]; ok {
		return nil
	}
	var wd int
	err := w.raw(func(fd int) error {
		var err error
		wd, err = unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CREATE|unix.IN_ONLYDIR)
		return err
	})
	if err != nil {
		return fmt.Errorf("inotify_add_watch %s: %w", dir, err)
	}
	w.wds[int32(wd)] = dir
	w.dirs[dir] = int32(wd)
	return nil
}

// Remove stops watching dir (gone already, when the kubelet removed it).
func (w *Watcher) Remove(dir string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, ok := w.dirs[dir]
	if !ok {
		return
	}
	delete(w.dirs, dir)
	delete(w.wds, wd)
	w.raw(func(fd int) error {
		_, err := unix.InotifyRmWatch(fd, uint32(wd))
		return err
	})
}

// Len is the number of directories watched.
func (w *Watcher) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.dirs)
}

// Close stops the watcher and waits for its goroutine: once it returns,
// onChange is not running and will not be called.
func (w *Watcher) Close() {
	w.f.Close()
	<-w.done
}

func (w *Watcher) raw(fn func(fd int) error) error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func (w *Watcher) loop() {
	defer close(w.done)
	buf := make([]byte, 64*1024)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				// Nothing else ends a read of inotify; stop rather
				// than spin.
				slog.Error("kubevol: read inotify: the volumes' watch ends", "err", err)
			}
			return
		}
		var changed []string
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				// Events were lost: every directory may have
				// changed (a sync of an unchanged one does nothing).
				w.mu.Lock()
				for dir := range w.dirs {
					changed = append(changed, dir)
				}
				w.mu.Unlock()
				continue
			}
			w.mu.Lock()
			dir, ok := w.wds[ev.Wd]
			if ev.Mask&unix.IN_IGNORED != 0 && ok {
				// The directory is gone (the pod's volumes torn
				// down): the kernel dropped the watch.
				delete(w.wds, ev.Wd)
				delete(w.dirs, dir)
			}
			w.mu.Unlock()
			if !ok || cstring(name) != dataLink {
				continue
			}
			if len(changed) == 0 || changed[len(changed)-1] != dir {
				changed = append(changed, dir)
			}
		}
		for _, dir := range changed {
			w.onChange(dir)
		}
	}
}

func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
