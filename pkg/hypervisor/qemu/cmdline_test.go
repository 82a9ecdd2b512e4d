package qemu

import (
	"encoding/json"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

func TestDeviceParams(t *testing.T) {
	cases := []struct {
		dev  device
		want []string
	}{
		{rootPort{ID: "rp0", Chassis: 1, Slot: 1},
			[]string{"-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=1,slot=1,io-reserve=0"}},
		{consoleSerial{ID: "console", Path: "/run/vc/a,b/console.log"},
			[]string{"-chardev", "file,id=console,path=/run/vc/a,,b/console.log", "-serial", "chardev:console"}},
		{socketChardev{ID: "agent", Path: "/run/vc/x/agent.sock"},
			[]string{"-chardev", "socket,id=agent,path=/run/vc/x/agent.sock,server=on,wait=off"}},
		{virtioSerial{ID: "serial0"}, []string{"-device", "virtio-serial-pci,id=serial0"}},
		{virtioSerialPort{ID: "agent0", Bus: "serial0.0", Chardev: "agent", Name: "agent.channel.0"},
			[]string{"-device", "virtserialport,id=agent0,bus=serial0.0,chardev=agent,name=agent.channel.0"}},
		{vhostVsockPCI{ID: "vsock0", CID: 7, VhostFD: -1},
			[]string{"-device", "vhost-vsock-pci,id=vsock0,guest-cid=7"}},
		{vhostVsockPCI{ID: "vsock0", CID: 3, VhostFD: 4},
			[]string{"-device", "vhost-vsock-pci,id=vsock0,guest-cid=3,vhostfd=4"}},
		{virtioRNG{ID: "rng0"}, []string{"-device", "virtio-rng-pci,id=rng0"}},
		{virtioBalloon{ID: "balloon0", FreePageReporting: true},
			[]string{"-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on"}},
		{virtioBalloon{ID: "balloon0"},
			[]string{"-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=off"}},
		{virtio9P{ID: "fs-share", Path: "/srv/share", Tag: "share"},
			[]string{"-fsdev", "local,id=fs-share-fs,path=/srv/share,security_model=none",
				"-device", "virtio-9p-pci,id=fs-share,fsdev=fs-share-fs,mount_tag=share"}},
		{virtio9P{ID: "fs-ro", Path: "/srv/ro", Tag: "ro", ReadOnly: true},
			[]string{"-fsdev", "local,id=fs-ro-fs,path=/srv/ro,security_model=none,readonly=on",
				"-device", "virtio-9p-pci,id=fs-ro,fsdev=fs-ro-fs,mount_tag=ro"}},
		{vhostUserFS{ID: "fs-share", Sock: "/run/vc/x/vfs-share.sock", Tag: "share"},
			[]string{"-chardev", "socket,id=fs-share-chr,path=/run/vc/x/vfs-share.sock",
				"-device", "vhost-user-fs-pci,id=fs-share,chardev=fs-share-chr,tag=share,queue-size=1024"}},
		{ramBackend{ID: "mem-dimm0", SizeMiB: 128, Shared: true},
			[]string{"-object", "memory-backend-memfd,id=mem-dimm0,size=134217728,share=on"}},
		{blockNode{NodeName: "drive-d1", Path: "/img/d1.raw", Format: "raw"},
			[]string{"-blockdev", "driver=raw,node-name=drive-d1,read-only=off,file.driver=file,file.filename=/img/d1.raw,file.read-only=off"}},
		{blockNode{NodeName: "drive-d2", Path: "/dev/sdb", Format: "qcow2", ReadOnly: true, Direct: true, Device: true},
			[]string{"-blockdev", "driver=qcow2,node-name=drive-d2,read-only=on,file.driver=host_device,file.filename=/dev/sdb,file.read-only=on,file.cache.direct=on,file.aio=native"}},
		{virtioBlk{ID: "blk-d1", Drive: "drive-d1", Bus: "rp0", Serial: "d1"},
			[]string{"-device", "virtio-blk-pci,id=blk-d1,drive=drive-d1,bus=rp0,serial=d1"}},
		{virtioBlk{ID: "blk-d1", Drive: "drive-d1"},
			[]string{"-device", "virtio-blk-pci,id=blk-d1,drive=drive-d1"}},
		{tapNetdev{ID: "netdev-eth0", IfName: "tap0"},
			[]string{"-netdev", "tap,id=netdev-eth0,ifname=tap0,script=no,downscript=no,vhost=off"}},
		{tapNetdev{ID: "netdev-eth0", FDs: []string{"5"}, Vhost: true},
			[]string{"-netdev", "tap,id=netdev-eth0,fd=5,vhost=on"}},
		{tapNetdev{ID: "netdev-eth0", FDs: []string{"5", "6"}},
			[]string{"-netdev", "tap,id=netdev-eth0,fds=5:6,vhost=off"}},
		{virtioNet{ID: "net-eth0", Netdev: "netdev-eth0", MAC: "02:00:00:00:00:01", Bus: "rp1", MTU: 1400},
			[]string{"-device", "virtio-net-pci,id=net-eth0,netdev=netdev-eth0,mac=02:00:00:00:00:01,bus=rp1,host_mtu=1400"}},
		{virtioNet{ID: "net-eth0", Netdev: "netdev-eth0", MAC: "02:00:00:00:00:01", Queues: 2},
			[]string{"-device", "virtio-net-pci,id=net-eth0,netdev=netdev-eth0,mac=02:00:00:00:00:01,mq=on,vectors=6"}},
	}
	for _, tc := range cases {
		if got := tc.dev.QemuParams(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%T:\n got  %q\n want %q", tc.dev, got, tc.want)
		}
	}
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHotplugArgs(t *testing.T) {
	node := blockNode{NodeName: "drive-d1", Path: "/img/d1.qcow2", Format: "qcow2", ReadOnly: true, Direct: true}
	want := `{"driver":"qcow2","file":{"aio":"native","cache":{"direct":true},"driver":"file","filename":"/img/d1.qcow2","read-only":true},"node-name":"drive-d1","read-only":true}`
	if got := asJSON(t, node.BlockdevAddArgs()); got != want {
		t.Errorf("blockdev-add:\n got  %s\n want %s", got, want)
	}
	blk := virtioBlk{ID: "blk-d1", Drive: "drive-d1", Bus: "rp2", Serial: "d1"}
	want = `{"bus":"rp2","drive":"drive-d1","driver":"virtio-blk-pci","id":"blk-d1","serial":"d1"}`
	if got := asJSON(t, blk.DeviceAddArgs()); got != want {
		t.Errorf("device_add blk:\n got  %s\n want %s", got, want)
	}
	tap := tapNetdev{ID: "netdev-eth0", FDs: []string{"fd-eth0-0"}}
	want = `{"fd":"fd-eth0-0","id":"netdev-eth0","type":"tap","vhost":false}`
	if got := asJSON(t, tap.NetdevAddArgs()); got != want {
		t.Errorf("netdev_add:\n got  %s\n want %s", got, want)
	}
	balloon := virtioBalloon{ID: "balloon0", FreePageReporting: true}
	want = `{"driver":"virtio-balloon-pci","free-page-reporting":true,"id":"balloon0"}`
	if got := asJSON(t, balloon.DeviceAddArgs()); got != want {
		t.Errorf("device_add balloon:\n got  %s\n want %s", got, want)
	}
	nic := virtioNet{ID: "net-eth0", Netdev: "netdev-eth0", MAC: "02:00:00:00:00:01", Bus: "rp0", MTU: 1500}
	want = `{"bus":"rp0","driver":"virtio-net-pci","host_mtu":1500,"id":"net-eth0","mac":"02:00:00:00:00:01","netdev":"netdev-eth0"}`
	if got := asJSON(t, nic.DeviceAddArgs()); got != want {
		t.Errorf("device_add nic:\n got  %s\n want %s", got, want)
	}
}

func testPlan() *launchPlan {
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	cfg := hypervisor.Config{
		ID:           "sb1",
		StateDir:     "/run/vc/sb1",
		Kernel:       "/k/vmlinuz",
		Initrd:       "/k/initrd",
		KernelParams: "vc.log=debug",
		CPUs:         2,
		MaxCPUs:      4,
		MemoryMiB:    512,
		// One vCPU and two memory steps plugged as devices, removable.
		FixedCPUs:      1,
		FixedMemoryMiB: 256,
		MaxMemoryMiB:   1024,
		SharedFS:       []hypervisor.SharedFS{{Tag: "rootfs", HostPath: "/srv/rootfs", ReadOnly: true}},
		Disks:          []hypervisor.Disk{{ID: "vol1", Path: "/img/vol1.raw"}},
		NICs:           []hypervisor.NIC{{ID: "eth0", TapName: "tap0", MAC: mac}},
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return &launchPlan{
		cfg:       cfg,
		paths:     pathsFor(cfg.StateDir),
		accel:     hypervisor.AccelTCG,
		transport: hypervisor.TransportVirtioSerial,
		vhostFD:   -1,
		tapFDs:    map[string][]int{},
		slots:     []string{diskSlotKey("vol1"), nicSlotKey("eth0"), "", ""},
	}
}

func TestCommandLine(t *testing.T) {
	p := testPlan()
	got := strings.Join(p.commandLine(), " ")
	want := strings.Join([]string{
		"-name sb1,debug-threads=on",
		"-nodefaults -no-user-config -display none -no-reboot",
		"-machine q35,sata=off,smbus=off,vmport=off,usb=off,graphics=off",
		"-sandbox on,obsolete=deny,elevateprivileges=deny,resourcecontrol=deny,spawn=deny",
		"-accel tcg,thread=multi -cpu max",
		"-smp 1,maxcpus=4,sockets=1,cores=4,threads=1 -m 256M,slots=6,maxmem=1024M",
		"-kernel /k/vmlinuz -initrd /k/initrd",
		"-append " + defaultKernelParams + " vc.log=debug",
		"-pidfile /run/vc/sb1/qemu.pid",
		"-qmp unix:/run/vc/sb1/qmp.sock,server=on,wait=off",
		"-qmp unix:/run/vc/sb1/qmp-attach.sock,server=on,wait=off",
		"-chardev file,id=console,path=/run/vc/sb1/console.log -serial chardev:console",
		"-device virtio-rng-pci,id=rng0",
		"-device virtio-balloon-pci,id=balloon0,free-page-reporting=on",
		"-chardev socket,id=agent,path=/run/vc/sb1/agent.sock,server=on,wait=off",
		"-device virtio-serial-pci,id=serial0",
		"-device virtserialport,id=agent0,bus=serial0.0,chardev=agent,name=agent.channel.0",
		"-chardev socket,id=data,path=/run/vc/sb1/data.sock,server=on,wait=off",
		"-device virtserialport,id=data0,bus=serial0.0,chardev=data,name=vc.data.0",
		"-fsdev local,id=fs-rootfs-fs,path=/srv/rootfs,security_model=none,readonly=on",
		"-device virtio-9p-pci,id=fs-rootfs,fsdev=fs-rootfs-fs,mount_tag=rootfs",
		"-device pcie-root-port,id=rp0,bus=pcie.0,chassis=1,slot=1,io-reserve=0",
		"-device pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=2,io-reserve=0",
		"-device pcie-root-port,id=rp2,bus=pcie.0,chassis=1,slot=3,io-reserve=0",
		"-device pcie-root-port,id=rp3,bus=pcie.0,chassis=1,slot=4,io-reserve=0",
		"-blockdev driver=raw,node-name=drive-vol1,read-only=off,file.driver=file,file.filename=/img/vol1.raw,file.read-only=off",
		"-device virtio-blk-pci,id=blk-vol1,drive=drive-vol1,bus=rp0,serial=vol1",
		"-netdev tap,id=netdev-eth0,ifname=tap0,script=no,downscript=no,vhost=off",
		"-device virtio-net-pci,id=net-eth0,netdev=netdev-eth0,mac=02:00:00:00:00:01,bus=rp1",
		"-device max-x86_64-cpu,id=cpu-0-1-0,core-id=1,socket-id=0,thread-id=0",
		"-object memory-backend-ram,id=mem-dimm0,size=134217728 -device pc-dimm,id=dimm0,memdev=mem-dimm0",
		"-object memory-backend-ram,id=mem-dimm1,size=134217728 -device pc-dimm,id=dimm1,memdev=mem-dimm1",
	}, " ")
	if got != want {
		t.Errorf("command line:\n got  %s\n want %s", got, want)
	}
	// A virtio-fs share: the guest's RAM and its DIMMs are shared memfd
	// memory (virtiofsd maps it), the share a vhost-user device on
	// virtiofsd's socket.
	vp := testPlan()
	vp.cfg.SharedFS[0] = hypervisor.SharedFS{Tag: "rootfs", HostPath: "/srv/rootfs", Kind: hypervisor.FSVirtioFS}
	vfs := strings.Join(vp.commandLine(), " ")
	for old, new := range map[string]string{
		"-machine q35,sata=off,smbus=off,vmport=off,usb=off,graphics=off": "-machine q35,sata=off,smbus=off,vmport=off,usb=off,graphics=off,memory-backend=pc.ram",
		"-m 256M,slots=6,maxmem=1024M":                                    "-m 256M,slots=6,maxmem=1024M -object memory-backend-memfd,id=pc.ram,size=256M,share=on",
		"-fsdev local,id=fs-rootfs-fs,path=/srv/rootfs,security_model=none,readonly=on -device virtio-9p-pci,id=fs-rootfs,fsdev=fs-rootfs-fs,mount_tag=rootfs": "-chardev socket,id=fs-rootfs-chr,path=/run/vc/sb1/vfs-rootfs.sock -device vhost-user-fs-pci,id=fs-rootfs,chardev=fs-rootfs-chr,tag=rootfs,queue-size=1024",
		"memory-backend-ram,id=mem-dimm0,size=134217728": "memory-backend-memfd,id=mem-dimm0,size=134217728,share=on",
		"memory-backend-ram,id=mem-dimm1,size=134217728": "memory-backend-memfd,id=mem-dimm1,size=134217728,share=on",
	} {
		if !strings.Contains(vfs, new) {
			t.Errorf("virtio-fs command line lacks %q (in place of %q):\n%s", new, old, vfs)
		}
	}
	for _, gone := range []string{"-fsdev", "memory-backend-ram"} {
		if strings.Contains(vfs, gone) {
			t.Errorf("virtio-fs command line has %s:\n%s", gone, vfs)
		}
	}

	// Confined, QEMU is PID 1 of its namespace: the driver writes the
	// pid file; nothing else changes.
	p.conf = &confinement{user: DefaultUser, uid: 999, gid: 999}
	if got := strings.Join(p.commandLine(), " "); got != strings.Replace(want, "-pidfile /run/vc/sb1/qemu.pid ", "", 1) {
		t.Errorf("confined command line:\n got  %s\n want it without -pidfile", got)
	}
}

func TestCommandLineKVMVsockFirmware(t *testing.T) {
	p := testPlan()
	p.accel = hypervisor.AccelKVM
	p.transport = hypervisor.TransportVsock
	p.cid, p.vhostFD = 5, 3
	p.vhostNet = true
	p.cfg.Firmware = "/usr/share/qemu/qboot.rom"
	p.cfg.NICs[0].TapName = ""
	p.tapFDs["eth0"] = []int{4}
	args := p.commandLine()
	got := " " + strings.Join(args, " ") + " "
	for _, want := range []string{
		" -accel kvm -cpu host ",
		" -smp 1,maxcpus=4,sockets=1,cores=4,threads=1 ",
		" -device host-x86_64-cpu,id=cpu-0-1-0,core-id=1,socket-id=0,thread-id=0 ",
		" -bios /usr/share/qemu/qboot.rom ",
		" -device vhost-vsock-pci,id=vsock0,guest-cid=5,vhostfd=3 ",
		" -netdev tap,id=netdev-eth0,fd=4,vhost=on ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("command line lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"virtio-serial", "agent.sock", "tcg", "ifname="} {
		if strings.Contains(got, unwanted) {
			t.Errorf("command line has %q:\n%s", unwanted, got)
		}
	}
	if a := agentAddress(p); a != "vsock://5:1024" {
		t.Errorf("agent address %s", a)
	}
	p.transport = hypervisor.TransportVirtioSerial
	if a := agentAddress(p); a != "unix:///run/vc/sb1/agent.sock" {
		t.Errorf("agent address %s", a)
	}
}

// The balloon is on by default, off on request, and never with a memory
// file: QEMU 7.2 would punch the blocks a VM restored from a template
// reports free out of the file its siblings map (balloonOn).
func TestCommandLineBalloon(t *testing.T) {
	const dev = "virtio-balloon-pci,id=balloon0,free-page-reporting=on"
	for _, tc := range []struct {
		name string
		set  func(*hypervisor.Config)
		want bool
	}{
		{"default", func(*hypervisor.Config) {}, true},
		{"NoBalloon", func(c *hypervisor.Config) { c.NoBalloon = true }, false},
		{"template", func(c *hypervisor.Config) { c.MemoryFile, c.MemoryShared = "/f/memory", true }, false},
		{"restored", func(c *hypervisor.Config) { c.MemoryFile, c.RestoreState = "/f/memory", "/f/state" }, false},
	} {
		p := testPlan()
		tc.set(&p.cfg)
		if got := slices.Contains(p.commandLine(), dev); got != tc.want {
			t.Errorf("%s: balloon on the command line %v, want %v:\n%s", tc.name, got, tc.want, strings.Join(p.commandLine(), " "))
		}
	}
}

func TestKernelCmdline(t *testing.T) {
	if got := kernelCmdline("  "); got != defaultKernelParams {
		t.Errorf("got %q", got)
	}
	if got := kernelCmdline("loglevel=7"); got != defaultKernelParams+" loglevel=7" {
		t.Errorf("got %q", got)
	}
}

func TestPropsPanicsOnUnknownType(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for a float option")
		}
	}()
	props{}.add("x", 1.5).cli("dev")
}
