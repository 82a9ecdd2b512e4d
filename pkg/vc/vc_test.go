package vc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/mount"
	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/persist"
)

func TestSandboxConfigValidate(t *testing.T) {
	dir := t.TempDir()
	k, i := filepath.Join(dir, "k"), filepath.Join(dir, "i")
	os.WriteFile(k, nil, 0o644)
	os.WriteFile(i, nil, 0o644)
	good := SandboxConfig{ID: "sb", Hypervisor: HypervisorConfig{Kernel: k, Initrd: i}}
	if err := good.validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	if good.Hypervisor.CPUs != 1 || good.Hypervisor.MemoryMiB != 256 {
		t.Errorf("defaults not filled in: %+v", good.Hypervisor)
	}
	for name, mut := range map[string]func(*SandboxConfig){
		"id":     func(c *SandboxConfig) { c.ID = "../x" },
		"memory": func(c *SandboxConfig) { c.Hypervisor.MemoryMiB = 64 },
		"cpus":   func(c *SandboxConfig) { c.Hypervisor.CPUs = 1000 },
		// Within the hypervisor's bound, beyond the host's CPUs.
		"host cpus": func(c *SandboxConfig) { c.Hypervisor.CPUs = uint32(runtime.NumCPU() + 1) },
		"accel":     func(c *SandboxConfig) { c.Hypervisor.Accel = "xen" },
		"kernel":    func(c *SandboxConfig) { c.Hypervisor.Kernel = "/nonexistent" },
		"initrd":    func(c *SandboxConfig) { c.Hypervisor.Initrd = "" },
		"cgroup mode": func(c *SandboxConfig) {
			c.Cgroup = CgroupConfig{Path: "/kubepods/pod1/sb", Mode: "cpu"}
		},
		"cgroup path": func(c *SandboxConfig) { c.Cgroup = CgroupConfig{Path: "bad--x.slice:p:n"} },
	} {
		c := good
		mut(&c)
		if err := c.validate(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	c := good
	c.Cgroup = CgroupConfig{Path: "/kubepods/pod1/sb", Mode: "cpu"}
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), `cgroup.mode "cpu"`) {
		t.Errorf("bad cgroup mode: %v, want one naming cgroup.mode", err)
	}
	c.Cgroup = CgroupConfig{Path: "/kubepods/pod1/sb"}
	if err := c.validate(); err != nil || c.Cgroup.Mode != "account" {
		t.Errorf("cgroup without a mode: %v, mode %q; want account", err, c.Cgroup.Mode)
	}
	c = good
	c.Hypervisor.CPUs = uint32(runtime.NumCPU() + 1)
	want := fmt.Sprintf("hypervisor.cpus %d: more than the host's %d CPUs", runtime.NumCPU()+1, runtime.NumCPU())
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("more vCPUs than the host has: %v, want %q", err, want)
	}
	c.Hypervisor.CPUs = uint32(runtime.NumCPU())
	if err := c.validate(); err != nil {
		t.Errorf("the host's CPU count: %v", err)
	}
}

func TestContainerConfigValidate(t *testing.T) {
	root := t.TempDir()
	spec := oci.DefaultSpec([]string{"true"}, nil, "", false)
	good := ContainerConfig{ID: "c", Rootfs: root, Spec: spec}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	noArgs := oci.DefaultSpec(nil, nil, "", false)
	for name, c := range map[string]ContainerConfig{
		"id":      {ID: "a/b", Rootfs: root, Spec: spec},
		"spec":    {ID: "c", Rootfs: root},
		"args":    {ID: "c", Rootfs: root, Spec: noArgs},
		"rootfs":  {ID: "c", Spec: spec},
		"missing": {ID: "c", Rootfs: filepath.Join(root, "nope"), Spec: spec},
	} {
		if err := c.Validate(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
}

// guestSpec drops what only makes sense on the host and leaves the
// caller's spec alone.
func TestGuestSpec(t *testing.T) {
	in := oci.DefaultSpec([]string{"sh"}, nil, "", false)
	in.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "/usr/bin/cni"}}}
	var nss []specs.LinuxNamespace
	for _, ns := range in.Linux.Namespaces {
		if ns.Type == specs.IPCNamespace {
			ns.Path = "/proc/1/ns/ipc" // a pod's container names the pause's
		}
		nss = append(nss, ns)
	}
	in.Linux.Namespaces = append(nss, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"})
	in.Linux.CgroupsPath = "/kubepods/besteffort/pod1/c"
	in.Process.Cwd = ""
	out, err := guestSpec("c1", in, false)
	if err != nil {
		t.Fatal(err)
	}
	if out.Hooks != nil {
		t.Error("host hooks kept")
	}
	paths := map[specs.LinuxNamespaceType]string{}
	for _, ns := range out.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			t.Errorf("namespace %+v kept for the guest", ns)
		}
		paths[ns.Type] = ns.Path
	}
	// The IPC namespace named by path is the sandbox's; the others new.
	want := map[specs.LinuxNamespaceType]string{specs.PIDNamespace: "", specs.IPCNamespace: pb.SandboxNamespace, specs.UTSNamespace: "", specs.MountNamespace: "", specs.CgroupNamespace: ""}
	if !maps.Equal(paths, want) {
		t.Errorf("guest namespaces %v, want %v", paths, want)
	}
	// A pod's infrastructure container makes the shared ones.
	infra, err := guestSpec("pause", oci.DefaultSpec([]string{"pause"}, nil, "", false), true)
	if err != nil {
		t.Fatal(err)
	}
	clear(paths)
	for _, ns := range infra.Linux.Namespaces {
		paths[ns.Type] = ns.Path
	}
	want[specs.UTSNamespace] = pb.SandboxNamespace
	if !maps.Equal(paths, want) {
		t.Errorf("infra container's guest namespaces %v, want %v", paths, want)
	}
	if out.Linux.CgroupsPath != "/vc/c1" || out.Process.Cwd != "/" {
		t.Errorf("cgroups path %q, cwd %q", out.Linux.CgroupsPath, out.Process.Cwd)
	}
	if in.Hooks == nil || in.Linux.CgroupsPath != "/kubepods/besteffort/pod1/c" || in.Process.Cwd != "" || len(in.Linux.Namespaces) != 6 || in.Linux.Namespaces[1].Path != "/proc/1/ns/ipc" {
		t.Error("the caller's spec was changed")
	}
}

// A bind mount whose source is missing is refused on one line naming it
// (errors.Join printed "invalid argument" on a line of its own), and
// nothing of the container stays shared.
func TestShareContainerMissingSource(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: bind mounts")
	}
	shared, rootfs := t.TempDir(), t.TempDir()
	spec := oci.DefaultSpec([]string{"true"}, nil, "", false)
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "/nonexistent/src", Options: []string{"rbind"}})
	err := shareContainer(shared, "c1", rootfs, spec)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), `source "/nonexistent/src" (destination /x)`) || !errdefs.IsInvalidArgument(err) {
		t.Fatalf("missing source: %q; want one line naming it, InvalidArgument", err)
	}
	if _, err := os.Stat(filepath.Join(shared, "c1")); !os.IsNotExist(err) {
		t.Errorf("shared dir of c1 left: %v", err)
	}
}

// shareContainer binds the rootfs and bind volumes under the shared
// directory (a read-only volume read-only), rewrites the spec to guest
// paths, and unshareContainer leaves nothing mounted and the sources whole.
func TestShareContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: bind mounts")
	}
	shared, rootfs, vol := t.TempDir(), t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(rootfs, "hello"), []byte("rootfs"), 0o644)
	os.WriteFile(filepath.Join(vol, "data"), []byte("volume"), 0o644)
	spec := oci.DefaultSpec([]string{"true"}, nil, "", false)
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: vol, Options: []string{"rbind", "ro"}})
	if err := shareContainer(shared, "c1", rootfs, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unshareContainer(shared, "c1") })
	if spec.Root.Path != guestSharedDir+"/c1/rootfs" {
		t.Errorf("root path %q", spec.Root.Path)
	}
	last := spec.Mounts[len(spec.Mounts)-1]
	if last.Source != guestSharedDir+"/c1/mounts/"+strconv.Itoa(len(spec.Mounts)-1) {
		t.Errorf("volume source %q", last.Source)
	}
	if b, _ := os.ReadFile(filepath.Join(shared, "c1", "rootfs", "hello")); string(b) != "rootfs" {
		t.Errorf("rootfs not shared: %q", b)
	}
	volShared := filepath.Join(shared, "c1", "mounts", strconv.Itoa(len(spec.Mounts)-1))
	if err := os.WriteFile(filepath.Join(volShared, "new"), nil, 0o644); err == nil {
		t.Error("wrote through a read-only volume")
	}
	if err := unshareContainer(shared, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(shared, "c1")); !os.IsNotExist(err) {
		t.Errorf("shared dir of c1 still there: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(rootfs, "hello")); string(b) != "rootfs" {
		t.Error("rootfs lost its file")
	}
	if b, _ := os.ReadFile(filepath.Join(vol, "data")); string(b) != "volume" {
		t.Error("volume lost its file")
	}
}

// A sandbox whose creator died halfway (state recorded, no VM yet) is
// found stopped at the next look and can be deleted; one whose creator
// still works on it is reported as created.
func TestCreatorDiedHalfway(t *testing.T) {
	root := t.TempDir()
	store, err := persist.New(root)
	if err != nil {
		t.Fatal(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	for id, owner := range map[string]int{"orphan": dead.Process.Pid, "busy": os.Getpid()} {
		if err := store.Create(id); err != nil {
			t.Fatal(err)
		}
		os.Mkdir(filepath.Join(store.Dir(id), "shared"), 0o700)
		st := SandboxStatus{ID: id, State: StateCreated, OwnerPid: owner, OwnerStart: mustStart(owner)}
		if owner != os.Getpid() {
			st.OwnerStart = 1 // the dead process's start time, whatever it was
		}
		if err := store.Save(id, sandboxKey, st); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if st, err := StatusSandbox(ctx, root, "busy"); err != nil || st.State != StateCreated {
		t.Errorf("sandbox being created: %v %v, want created", st.State, err)
	}
	st, err := StatusSandbox(ctx, root, "orphan")
	if err != nil || st.State != StateStopped || st.StopReason != "owner process gone" {
		t.Fatalf("orphaned sandbox: %+v %v, want stopped", st, err)
	}
	if err := DeleteSandbox(ctx, root, "orphan"); err != nil {
		t.Fatal(err)
	}
	if store.Exists("orphan") {
		t.Error("orphaned sandbox's state still there")
	}
}

// A volume's submounts follow OCI's options: "ro" makes only the volume's
// own mount read-only, so its writable submounts stay writable (in the
// guest too: they are binds of their own on top), "rro" makes all of it
// read-only, and a plain "bind" does not carry submounts at all. Each
// submount is bound on its own beside the volume, never onto the source's
// directories: the source's owner can unmount its submount and remove the
// directory while the container runs (critest does; a recursive bind
// made that rmdir fail with EBUSY).
func TestShareSubmounts(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: bind and tmpfs mounts")
	}
	shared, rootfs, vol := t.TempDir(), t.TempDir(), t.TempDir()
	sub := filepath.Join(vol, "sub")
	os.Mkdir(sub, 0o755)
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
	os.WriteFile(filepath.Join(sub, "inside"), []byte("x"), 0o644)

	spec := oci.DefaultSpec([]string{"true"}, nil, "", false)
	n := len(spec.Mounts)
	spec.Mounts = append(spec.Mounts,
		specs.Mount{Destination: "/ro", Type: "bind", Source: vol, Options: []string{"rbind", "ro"}},
		specs.Mount{Destination: "/rro", Type: "bind", Source: vol, Options: []string{"rbind", "rro"}},
		specs.Mount{Destination: "/flat", Type: "bind", Source: vol, Options: []string{"bind", "ro"}})
	if err := shareContainer(shared, "c1", rootfs, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unshareContainer(shared, "c1") })
	host := func(name, rel string) string {
		return filepath.Join(shared, "c1", "mounts", name, rel)
	}
	writable := func(p string) bool {
		err := os.WriteFile(filepath.Join(p, "probe"), nil, 0o644)
		os.Remove(filepath.Join(p, "probe"))
		return err == nil
	}
	ro, rro, flat := strconv.Itoa(n), strconv.Itoa(n+1), strconv.Itoa(n+2)
	if writable(host(ro, "")) || !writable(host(ro+".1", "")) {
		t.Errorf("ro: top writable %v (want false), submount writable %v (want true)", writable(host(ro, "")), writable(host(ro+".1", "")))
	}
	if b, _ := os.ReadFile(host(ro+".1", "inside")); string(b) != "x" {
		t.Errorf("ro: the submount's bind does not show the tmpfs: %q", b)
	}
	if writable(host(rro+".1", "")) || writable(host(rro, "")) {
		t.Error("rro: the volume or its submount is writable")
	}
	if _, err := os.Stat(host(flat, "sub/inside")); err == nil {
		t.Error("bind (not rbind) carried the submount")
	}
	if _, err := os.Stat(host(flat+".1", "")); err == nil {
		t.Error("bind (not rbind) shared the submount")
	}
	// The guest gets the ro volume, then its submount writable on top;
	// the rro volume with its submount read-only; the flat volume alone.
	var got []string
	for _, m := range spec.Mounts[n:] {
		got = append(got, m.Destination+" "+m.Source+" "+strings.Join(m.Options, ","))
	}
	g := guestSharedDir + "/c1/mounts/"
	want := []string{
		"/ro " + g + ro + " rbind,ro",
		"/ro/sub " + g + ro + ".1 bind,rw",
		"/rro " + g + rro + " rbind,rro",
		"/rro/sub " + g + rro + ".1 bind,ro",
		"/flat " + g + flat + " bind,ro",
	}
	if !slices.Equal(got, want) {
		t.Errorf("guest mounts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// critest's clean-up while the container runs.
	if err := unix.Unmount(sub, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sub); err != nil {
		t.Errorf("removing the source's unmounted submount directory while shared: %v", err)
	}
	if err := unshareContainer(shared, "c1"); err != nil {
		t.Fatal(err)
	}
	if m, _ := mount.Under(shared); len(m) > 0 {
		t.Errorf("mounts left after unshare: %q", m)
	}
}

// A unix socket cannot be carried by 9p: share leaves its mount's source
// a host path (Sandbox.proxySockets gives it a socket proxy) and mounts
// nothing for it, while the other mounts are shared as usual.
func TestShareUnixSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: bind mounts")
	}
	shared, rootfs, dir := t.TempDir(), t.TempDir(), t.TempDir()
	sock := filepath.Join(dir, "app.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	spec := oci.DefaultSpec([]string{"true"}, nil, "", false)
	n := len(spec.Mounts)
	spec.Mounts = append(spec.Mounts,
		specs.Mount{Destination: "/run/app.sock", Type: "bind", Source: sock, Options: []string{"rbind"}},
		specs.Mount{Destination: "/data", Type: "bind", Source: dir, Options: []string{"rbind"}})
	if err := shareContainer(shared, "c1", rootfs, spec); err != nil {
		t.Fatal(err)
	}
	defer unshareContainer(shared, "c1")
	if got := spec.Mounts[n].Source; got != sock {
		t.Errorf("socket mount's source %q, want the host's %q (for the proxy)", got, sock)
	}
	if got, want := spec.Mounts[n+1].Source, guestSharedDir+"/c1/mounts/"+strconv.Itoa(n+1); got != want {
		t.Errorf("directory mount's source %q, want %q", got, want)
	}
	if _, err := os.Lstat(filepath.Join(shared, "c1", "mounts", strconv.Itoa(n))); !os.IsNotExist(err) {
		t.Errorf("socket shared through 9p: %v", err)
	}
}

// A confined QEMU (pkg/hypervisor/qemu/confine.go) sees the sandbox's
// shared directory through a slave copy of it in its own mount
// namespace: a container's root and volumes bound there later reach it,
// a read-only volume read-only, and their unmount follows.
func TestShareReachesSlaveNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: bind mounts and a mount namespace")
	}
	shared, rootfs, vol := t.TempDir(), t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(rootfs, "hello"), []byte("rootfs"), 0o644)
	if err := unix.Mount(shared, shared, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(shared, unix.MNT_DETACH) })
	if err := unix.Mount("", shared, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	// The other namespace: a thread of its own, as QEMU's forking one.
	do := make(chan func())
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with its namespace
		defer close(done)
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			t.Error(err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
			t.Error(err)
			return
		}
		for f := range do {
			f()
		}
	}()
	inNS := func(f func()) {
		ch := make(chan struct{})
		do <- func() { f(); close(ch) }
		<-ch
	}
	defer func() { close(do); <-done }()

	spec := oci.DefaultSpec([]string{"true"}, nil, "", false)
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: vol, Options: []string{"rbind", "ro"}})
	if err := shareContainer(shared, "c1", rootfs, spec); err != nil {
		t.Fatal(err)
	}
	volShared := filepath.Join(shared, "c1", "mounts", strconv.Itoa(len(spec.Mounts)-1))
	inNS(func() {
		if b, err := os.ReadFile(filepath.Join(shared, "c1", "rootfs", "hello")); string(b) != "rootfs" {
			t.Errorf("the rootfs did not reach the other namespace: %q, %v", b, err)
		}
		if err := os.WriteFile(filepath.Join(volShared, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
			t.Errorf("a read-only volume in the other namespace: write: %v, want EROFS", err)
		}
	})
	if err := unshareContainer(shared, "c1"); err != nil {
		t.Fatal(err)
	}
	inNS(func() {
		if _, err := os.Stat(filepath.Join(shared, "c1", "rootfs", "hello")); !os.IsNotExist(err) {
			t.Errorf("the rootfs stayed in the other namespace: %v", err)
		}
	})
}
