package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// virtiofsds lists the pids of the virtiofsd processes serving a socket
// below dir.
func virtiofsds(t *testing.T, dir string) []string {
	t.Helper()
	out, _ := exec.Command("pgrep", "-f", "virtiofsd --socket-path="+dir).Output()
	return strings.Fields(string(out))
}

// TestVirtioFS: a sandbox whose shared directory goes over virtio-fs
// (HypervisorConfig.SharedFS): containers' roots and volumes work through
// it (owners, modes, the host's edits seen in the guest, a container
// created later), QEMU keeps no capability (virtiofsd serves the files),
// and the daemon ends with the VM.
func TestVirtioFS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "host"), []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := createSandbox(ctx, t, vc.SandboxConfig{
		ID: "e2e-virtiofs", StateRoot: stateRoot,
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", MemoryMiB: 256, SharedFS: vc.SharedFSVirtioFS},
	})
	vmDir := filepath.Join(s.Dir(), "vm")
	// (virtiofsd forks into its sandbox's PID namespace: two processes.)
	if d := virtiofsds(t, vmDir); len(d) == 0 {
		t.Fatalf("no virtiofsd serves %s", vmDir)
	}
	st := procStatus(t, s.Status().VMPid)
	for _, f := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
		if st[f] != "0000000000000000" {
			t.Errorf("qemu with only a virtio-fs share: %s %s, want none", f, st[f])
		}
	}

	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	spec := oci.DefaultSpec([]string{"sleep", "1000"}, nil, "/", false)
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "c", Rootfs: root, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	c := s.Container("c")
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	run := func(script string) string {
		t.Helper()
		n++
		id := "x" + string(rune('a'+n))
		var out bytes.Buffer
		if err := c.Exec(ctx, id, &specs.Process{Args: []string{"sh", "-c", script}, Cwd: "/", Env: []string{"PATH=/bin"}}); err != nil {
			t.Fatalf("exec %q: %v", script, err)
		}
		streams := c.IOStream(ctx, id, vc.IO{Stdout: &out, Stderr: &out})
		code, err := c.WaitProcess(ctx, id)
		<-streams
		if err != nil || code != 0 {
			t.Fatalf("exec %q: code %d, %v: %s", script, code, err, out.String())
		}
		return out.String()
	}
	if out := run("awk '$2 == \"/\" || $2 == \"/vol\" {print $2, $3}' /proc/mounts"); out != "/ virtiofs\n/vol virtiofs\n" {
		t.Errorf("the container's root and volume mounts:\n%s\nwant both virtiofs", out)
	}
	// The guest's root owns what it makes, with the modes it sets.
	if out := run("echo secret > /vol/s && chown 4321:4321 /vol/s && chmod 600 /vol/s && stat -c '%u:%g %a' /vol/s && cat /vol/s && cat /vol/host"); out != "4321:4321 600\nsecret\nv1" {
		t.Errorf("files over virtio-fs: %q", out)
	}
	var hs unix.Stat_t
	if err := unix.Stat(filepath.Join(vol, "s"), &hs); err != nil || hs.Uid != 4321 || hs.Mode&0o777 != 0o600 {
		t.Errorf("the guest's file on the host: uid %d mode %o (%v), want 4321 600", hs.Uid, hs.Mode&0o777, err)
	}
	// The host's edits: contents at once (no guest page cache), new names
	// within the attribute timeout (a second).
	if err := os.WriteFile(filepath.Join(vol, "host"), []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := run("for i in 1 2 3 4 5 6 7 8 9 10; do [ \"$(cat /vol/host)\" = v2 ] && break; sleep 0.5; done; cat /vol/host"); out != "v2" {
		t.Errorf("the host's edit read in the guest: %q, want v2", out)
	}
	if err := os.WriteFile(filepath.Join(vol, "new"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := run("for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /vol/new ] && break; sleep 0.5; done; cat /vol/new"); out != "new" {
		t.Errorf("a file the host made, in the guest: %q", out)
	}
	// A container created now: its root is bound below the share after
	// virtiofsd started, and reaches it.
	if out, code := runIn(ctx, t, s, "later", "sh", "-c", "cat /etc/passwd | head -1"); code != 0 || !strings.HasPrefix(out, "root:") {
		t.Errorf("a container created later: code %d, %q", code, out)
	}

	if err := s.Stop(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := virtiofsds(t, vmDir); len(d) != 0 {
		t.Errorf("virtiofsd still runs after the VM stopped: %v", d)
	}
}

// TestVirtioFSDaemonFails: a virtiofsd that does not come up fails the
// VM's start naming it, and leaves no QEMU, socket or shared mount.
func TestVirtioFSDaemonFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir, share := t.TempDir(), t.TempDir()
	vm, err := hypervisor.New("qemu", hypervisor.Config{ID: "e2e-vfs-fail", StateDir: dir, Kernel: kernel, Initrd: initrd, Accel: "tcg",
		VirtiofsdPath: "/bin/false",
		SharedFS:      []hypervisor.SharedFS{{Tag: "share", HostPath: share, Kind: hypervisor.FSVirtioFS}}})
	if err != nil {
		t.Fatal(err)
	}
	err = vm.Start(ctx)
	if err == nil {
		vm.Stop(context.Background(), 0)
		t.Fatal("started with a virtiofsd that exits at once")
	}
	if !strings.Contains(err.Error(), "shared fs share: virtiofsd exited") {
		t.Errorf("error %q does not name the daemon", err)
	}
	if out, _ := exec.Command("pgrep", "-f", "qemu-system.*e2e-vfs-fail").Output(); len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("qemu left running: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "vfs-share.sock")); !os.IsNotExist(err) {
		t.Errorf("the socket stays: %v", err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), " "+share+" ") {
		t.Errorf("%s stays a mount point", share)
	}
}

// TestVirtioFSCLI: vc run --shared-fs virtio-fs runs its container with
// its files over virtio-fs (booting: the factory's VMs share over 9p); a
// bad value names the flag.
func TestVirtioFSCLI(t *testing.T) {
	out, errOut, code := vcRun(t, nil, "run", "--rm", "--shared-fs", "virtio-fs", "busybox", "--", "awk", `$2 == "/" {print $3}`, "/proc/mounts")
	if code != 0 || strings.TrimSpace(out) != "virtiofs" {
		t.Errorf("vc run --shared-fs virtio-fs: code %d, root's type %q, stderr %s", code, out, errOut)
	}
	_, errOut, code = vcRun(t, nil, "run", "--rm", "--shared-fs", "nfs", "busybox", "--", "true")
	if code != 125 || !strings.Contains(errOut, `--shared-fs "nfs": want 9p or virtio-fs`) {
		t.Errorf("vc run --shared-fs nfs: code %d, stderr %s", code, errOut)
	}
}
