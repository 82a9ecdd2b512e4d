// Package netnstest gives tests network namespaces of their own, so that
// they never touch the host's interfaces, routes or firewall rules.
//
// A network namespace belongs to a thread, not to a process: New and Do
// switch the calling goroutine's thread into a namespace and back while
// the goroutine is locked to it. Goroutines started meanwhile run on
// other threads, in the test process' namespace; processes started in Do
// inherit the namespace.
package netnstest

import (
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/virtcontainers/vc/internal/testenv"
)

// New creates a network namespace that lives until the end of the test
// (or until the last process in it exits, whichever is later). The
// calling thread is left in its own namespace. It skips the test, saying
// so, when not run as root.
func New(t testing.TB) netns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to create a network namespace")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current network namespace: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("create network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		// The thread stays locked and dies with this goroutine rather
		// than run other goroutines in the wrong namespace.
		ns.Close()
		t.Fatalf("return to the original network namespace: %v", err)
	}
	runtime.UnlockOSThread()
	if ns.Equal(orig) {
		ns.Close()
		t.Fatal("the new network namespace is the original one")
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// Do runs f on the calling goroutine with its thread in ns, then puts the
// thread back. f may call t.Fatal.
func Do(t testing.TB, ns netns.NsHandle, f func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current network namespace: %v", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("enter network namespace %s: %v", ns, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it is destroyed when the
			// goroutine ends.
			t.Errorf("return to the original network namespace: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	f()
}

// AddTap creates a tap link named name with MAC address mac in ns. The
// test holds its queue open, so that the link has carrier once up (the
// test machines have neither dummy nor veth links); the link goes at the
// end of the test.
func AddTap(t testing.TB, ns netns.NsHandle, name, mac string) netlink.Link {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	tap := &netlink.Tuntap{
		LinkAttrs:  netlink.LinkAttrs{Name: name},
		Mode:       netlink.TUNTAP_MODE_TAP,
		Queues:     1,
		NonPersist: true,
	}
	var link netlink.Link
	Do(t, ns, func() {
		if err := netlink.LinkAdd(tap); err != nil {
			t.Fatalf("create tap %s: %v", name, err)
		}
		t.Cleanup(func() {
			for _, f := range tap.Fds {
				f.Close()
			}
		})
		if err := netlink.LinkSetHardwareAddr(tap, hw); err != nil {
			t.Fatalf("set MAC of %s: %v", name, err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			t.Fatalf("find tap %s: %v", name, err)
		}
	})
	return link
}
