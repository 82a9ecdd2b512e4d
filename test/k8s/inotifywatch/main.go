// Command inotifywatch prints a line per inotify event in the directories
// it is given (create, modify, close after write, delete, move):
// "event DIR NAME MASK". The
// test image's busybox has no inotifyd; test/k8s builds this static and
// runs it in a pod to see which changes of a hostPath directory reach
// the container.
package main

import (
	"bytes"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: inotifywatch DIR...")
		os.Exit(2)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		fmt.Fprintln(os.Stderr, "inotify_init1:", err)
		os.Exit(1)
	}
	mask := uint32(unix.IN_CREATE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_DELETE | unix.IN_MOVED_TO)
	dirs := map[int32]string{}
	for _, dir := range os.Args[1:] {
		wd, err := unix.InotifyAddWatch(fd, dir, mask)
		if err != nil {
			fmt.Fprintf(os.Stderr, "inotify_add_watch %s: %v\n", dir, err)
			os.Exit(1)
		}
		dirs[int32(wd)] = dir
		fmt.Println("watching", dir)
	}
	buf := make([]byte, 64*1024)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "read:", err)
			os.Exit(1)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			fmt.Printf("event %s %s %#x\n", dirs[ev.Wd], bytes.TrimRight(name, "\x00"), ev.Mask)
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}
