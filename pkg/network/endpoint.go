package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Model is how a link of the namespace is joined to the VM.
type Model string

const (
	// TCFilter pairs the link with a tap; tc ingress qdiscs with mirred
	// redirect filters move every frame between the two (Kata's default).
	TCFilter Model = "tcfilter"
	// Macvtap puts a macvtap in passthru mode on the link.
	Macvtap Model = "macvtap"
)

// ParseModel checks a model name; empty is TCFilter.
func ParseModel(s string) (Model, error) {
	switch Model(s) {
	case "", TCFilter:
		return TCFilter, nil
	case Macvtap:
		return Macvtap, nil
	}
	return "", fmt.Errorf("network model %q: want tcfilter or macvtap", s)
}

// testHook, when set, is called at each step of Setup (tests make a link
// vanish midway).
var testHook func(step string)

func hook(step string) {
	if testHook != nil {
		testHook(step)
	}
}

// Setup creates, in the namespace at path, the device that joins ep's link
// to the VM: a tap named tapName connected by tc filters, or a macvtap of
// that name. It returns the open tap (or macvtap) file for the hypervisor;
// the caller closes it once the hypervisor holds its own. The tap is not
// persistent: it ends with the last open file (the hypervisor's). ep.Model,
// ep.Tap and ep.LinkQdisc record what was made, for Teardown. On error
// nothing made is left.
func Setup(path string, ep *Endpoint, model Model, tapName string) (*os.File, error) {
	fs, err := SetupQueues(path, ep, model, tapName, 1)
	if err != nil {
		return nil, err
	}
	return fs[0], nil
}

// MaxQueues bounds the queues of a multiqueue tap (QEMU's virtio-net
// takes up to 1024 queue pairs; a guest gains nothing past one per vCPU).
const MaxQueues = 64

// SetupQueues is Setup with queues queue files: a tcfilter tap made with
// IFF_MULTI_QUEUE when queues > 1, one open file per queue, for a
// multiqueue virtio-net NIC (one queue pair per vCPU). A macvtap has one
// queue whatever is asked (multiqueue macvtap is not done yet).
func SetupQueues(path string, ep *Endpoint, model Model, tapName string, queues int) ([]*os.File, error) {
	if len(tapName) == 0 || len(tapName) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap name %q: want 1-15 bytes", tapName)
	}
	if queues < 1 || queues > MaxQueues {
		return nil, fmt.Errorf("tap %s: queues %d: want 1-%d", tapName, queues, MaxQueues)
	}
	switch model {
	case TCFilter:
		var fs []*os.File
		err := inNS(path, func() (err error) {
			fs, err = setupTCFilter(ep, tapName, queues)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("netns %q: link %s: %w", path, ep.Name, err)
		}
		ep.Model, ep.Tap, ep.LinkQdisc = TCFilter, tapName, true
		return fs, nil
	case Macvtap:
		f, err := setupMacvtap(path, ep, tapName)
		if err != nil {
			return nil, fmt.Errorf("netns %q: link %s: %w", path, ep.Name, err)
		}
		ep.Model, ep.Tap, ep.LinkQdisc = Macvtap, tapName, false
		return []*os.File{f}, nil
	}
	return nil, fmt.Errorf("network model %q: want tcfilter or macvtap", model)
}

func linkByName(name, what string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%s %q vanished: %w", what, name, err)
		}
		return nil, fmt.Errorf("%s %q: %w", what, name, err)
	}
	return l, nil
}

func setupTCFilter(ep *Endpoint, tapName string, queues int) (_ []*os.File, err error) {
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	hook("lookup")
	link, err := linkByName(ep.Name, "link")
	if err != nil {
		return nil, err
	}
	hook("tap")
	var fs []*os.File
	undo = append(undo, func() {
		for _, f := range fs {
			f.Close()
		}
		// Not persistent, the tap goes with its file; make sure.
		if l, err := netlink.LinkByName(tapName); err == nil && l.Type() == "tuntap" {
			netlink.LinkDel(l)
		}
	})
	for range queues {
		f, err := openTun(tapName, queues > 1)
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
	}
	tap, err := linkByName(tapName, "tap")
	if err != nil {
		return nil, err
	}
	if ep.MTU > 0 {
		if err := netlink.LinkSetMTU(tap, ep.MTU); err != nil {
			return nil, fmt.Errorf("tap %s: set mtu %d: %w", tapName, ep.MTU, err)
		}
	}
	if err := netlink.LinkSetUp(tap); err != nil {
		return nil, fmt.Errorf("tap %s: set up: %w", tapName, err)
	}
	hook("link-qdisc")
	if err := netlink.QdiscAdd(ingress(link.Attrs().Index)); err != nil {
		return nil, vanished(ep.Name, fmt.Errorf("add ingress qdisc on %s (is one there already?): %w", ep.Name, err))
	}
	undo = append(undo, func() { netlink.QdiscDel(ingress(link.Attrs().Index)) })
	hook("link-filter")
	if err := netlink.FilterAdd(redirect(link.Attrs().Index, tap.Attrs().Index)); err != nil {
		return nil, vanished(ep.Name, fmt.Errorf("add redirect filter %s -> %s: %w", ep.Name, tapName, err))
	}
	hook("tap-qdisc")
	if err := netlink.QdiscAdd(ingress(tap.Attrs().Index)); err != nil {
		return nil, vanished(ep.Name, fmt.Errorf("add ingress qdisc on %s: %w", tapName, err))
	}
	if err := netlink.FilterAdd(redirect(tap.Attrs().Index, link.Attrs().Index)); err != nil {
		return nil, vanished(ep.Name, fmt.Errorf("add redirect filter %s -> %s: %w", tapName, ep.Name, err))
	}
	hook("done")
	// The link may have gone while the filters were added.
	if _, err := linkByName(ep.Name, "link"); err != nil {
		return nil, err
	}
	return fs, nil
}

// vanished tells a step's failure caused by the link going away.
func vanished(name string, err error) error {
	if _, lerr := linkByName(name, "link"); lerr != nil {
		return fmt.Errorf("%w (%w)", lerr, err)
	}
	return err
}

func ingress(index int) *netlink.Ingress {
	return &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: index,
		Parent:    netlink.HANDLE_INGRESS,
		Handle:    netlink.MakeHandle(0xffff, 0),
	}}
}

// redirect is a u32 match-all filter on from's ingress that redirects
// every frame out of to.
func redirect(from, to int) *netlink.U32 {
	return &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from,
			Parent:    netlink.MakeHandle(0xffff, 0),
			Priority:  1,
			Protocol:  unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR,
			Ifindex:      to,
		}},
	}
}

// openTun creates (or opens) tap name in the calling thread's namespace;
// multi makes (or attaches another queue to) a multiqueue tap, each open
// file one queue.
func openTun(name string, multi bool) (*os.File, error) {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	var req [unix.IFNAMSIZ + 64]byte
	copy(req[:], name)
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = flags
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); errno != 0 {
		f.Close()
		return nil, fmt.Errorf("create tap %s (TUNSETIFF): %w", name, errno)
	}
	return f, nil
}

func setupMacvtap(path string, ep *Endpoint, name string) (_ *os.File, err error) {
	var index int
	err = inNS(path, func() error {
		hook("lookup")
		link, err := linkByName(ep.Name, "link")
		if err != nil {
			return err
		}
		mv := &netlink.Macvtap{Macvlan: netlink.Macvlan{
			LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: link.Attrs().Index, MTU: ep.MTU, TxQLen: -1},
			Mode:      netlink.MACVLAN_MODE_PASSTHRU,
		}}
		if err := netlink.LinkAdd(mv); err != nil {
			return fmt.Errorf("add macvtap %s: %w", name, err)
		}
		l, err := linkByName(name, "macvtap")
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			netlink.LinkDel(mv)
			return fmt.Errorf("macvtap %s: set up: %w", name, err)
		}
		index = l.Attrs().Index
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			inNS(path, func() error { return delLink(name, "macvtap") })
		}
	}()
	dev, err := macvtapDev(path, name, index)
	if err != nil {
		return nil, err
	}
	return openDevNode(dev, index)
}

// macvtapDev reads the macvtap's character device number from a sysfs
// mounted in the namespace (the macvtap class is per namespace), on a
// thread with its own mount namespace that is thrown away after.
func macvtapDev(path, name string, index int) (uint64, error) {
	ns, err := openNS(path)
	if err != nil {
		return 0, err
	}
	defer ns.Close()
	dir, err := os.MkdirTemp("", "vc-sysfs-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(dir)
	type result struct {
		dev uint64
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is discarded
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			c <- result{err: fmt.Errorf("unshare mount namespace: %w", err)}
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			c <- result{err: fmt.Errorf("make mounts private: %w", err)}
			return
		}
		if err := netns.Set(ns); err != nil {
			c <- result{err: fmt.Errorf("enter netns: %w", err)}
			return
		}
		if err := unix.Mount("sysfs", dir, "sysfs", 0, ""); err != nil {
			c <- result{err: fmt.Errorf("mount sysfs: %w", err)}
			return
		}
		defer unix.Unmount(dir, unix.MNT_DETACH)
		b, err := os.ReadFile(filepath.Join(dir, "class/net", name, "macvtap", fmt.Sprintf("tap%d", index), "dev"))
		if err != nil {
			c <- result{err: fmt.Errorf("macvtap %s device number: %w", name, err)}
			return
		}
		var maj, min uint32
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &maj, &min); err != nil {
			c <- result{err: fmt.Errorf("macvtap %s device number %q: %w", name, b, err)}
			return
		}
		c <- result{dev: unix.Mkdev(maj, min)}
	}()
	r := <-c
	return r.dev, r.err
}

// openDevNode opens a character device by number through a private node.
func openDevNode(dev uint64, index int) (*os.File, error) {
	dir, err := os.MkdirTemp("", "vc-macvtap-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	node := filepath.Join(dir, fmt.Sprintf("tap%d", index))
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(dev)); err != nil {
		return nil, fmt.Errorf("mknod %s: %w", node, err)
	}
	f, err := os.OpenFile(node, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open macvtap device: %w", err)
	}
	return f, nil
}

func delLink(name, kind string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("%s %s: %w", kind, name, err)
	}
	if t := l.Type(); t != "tuntap" && t != "macvtap" {
		return fmt.Errorf("%s %s is a %s, not ours: left alone", kind, name, t)
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s %s: %w", kind, name, err)
	}
	return nil
}

// Teardown removes what Setup made for ep: the tap (or macvtap) and the
// ingress qdisc (with its filter) on the link, leaving the namespace as it
// was. A namespace or link that is gone took them with it: no error. For
// a Bridge endpoint it removes the tap SetupBridgeTap made in ep.NetNS
// (path unused).
func Teardown(path string, ep Endpoint) error {
	if ep.Tap == "" {
		return nil
	}
	if ep.Model == Bridge {
		// In the bridge's namespace; the bridge stays (its network's).
		if path = ep.NetNS; !isNetNS(path) {
			return nil // gone with its namespace
		}
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	err := inNS(path, func() error {
		var errs []error
		if ep.LinkQdisc {
			if l, err := netlink.LinkByName(ep.Name); err == nil {
				if err := netlink.QdiscDel(ingress(l.Attrs().Index)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
					errs = append(errs, fmt.Errorf("delete ingress qdisc on %s: %w", ep.Name, err))
				}
			}
		}
		errs = append(errs, delLink(ep.Tap, string(ep.Model)))
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("netns %q: teardown %s: %w", path, ep.Name, err)
	}
	return nil
}
