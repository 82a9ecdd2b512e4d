package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/cleanup"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// ioMiB is the size of the file each figure reads or writes: at about
// 1.5 GiB/s its read takes a third of a second, thirty of `time -p`'s steps.
const ioMiB = 512

func init() {
	register("files", files)
}

// files measures, in one sandbox, the paths a container's files take
// against the best device path in the same guest (a raw virtio-blk disk):
//   - the image read path: a file of ioMiB MiB in an image layer, read
//     through the container's root (the host's overlay of the layers,
//     shared over 9p), against the same bytes read from a raw disk with
//     O_DIRECT (the guest's fastest way off a disk; a buffered read of the
//     disk is printed beside it);
//   - the block-device alternative: the same file in an ext4 image of the
//     layer on a disk, read through the guest's page cache from a fresh
//     mount (what an image layer as a read-only block device would give);
//   - metadata: `ls -lnR` of a tree of small files in the layer, against
//     the same tree in the ext4 image;
//   - volumes: ioMiB MiB written with fsync to a 9p volume, against the
//     same on an ext4 disk.
//
// The image read, the tree and the volume are measured a second time in
// a sandbox sharing its files over virtio-fs.
//
// The disks are host loop devices passed as the container's devices (the
// library hotplugs them as virtio-blk); the container is privileged in
// the guest to mount them and drop the guest's caches. Each figure is the
// median of three, timed by `time -p` in the guest; the host's page cache
// holds every file, so no path waits on the host's disk.
func files() ([]row, error) {
	for _, tool := range []string{"mkfs.ext4", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("the files bench needs %s (e2fsprogs, util-linux): %w", tool, err)
		}
	}
	e, err := newVMEnv()
	if err != nil {
		return nil, err
	}
	defer e.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	work, err := os.MkdirTemp("", "vc-bench-files-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	cu := cleanup.Make(func() {})
	defer cu.Clean()

	// The image: busybox's layer, then a layer holding /big, as the image
	// store stacks them under an overlay with the container's upper.
	dir := func(name string) string { return filepath.Join(work, name) }
	for _, d := range []string{"base", "layer", "upper", "work", "root", "vol"} {
		if err := os.Mkdir(dir(d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := rootfs.BuildBusybox(dir("base")); err != nil {
		return nil, err
	}
	if err := randomFile(filepath.Join(dir("layer"), "big"), ioMiB<<20); err != nil {
		return nil, err
	}
	if err := writeTree(filepath.Join(dir("layer"), "tree")); err != nil {
		return nil, err
	}
	if err := os.Link(filepath.Join(dir("layer"), "big"), filepath.Join(dir("vol"), "big")); err != nil {
		return nil, err
	}
	if err := unix.Mount("overlay", dir("root"), "overlay", 0, fmt.Sprintf("lowerdir=%s:%s,upperdir=%s,workdir=%s", dir("layer"), dir("base"), dir("upper"), dir("work"))); err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	cu.Add(func() { unix.Unmount(dir("root"), unix.MNT_DETACH) })
	// The raw disk holds the same bytes; the ext4 disk the layer, with room
	// for the volume's write.
	if err := exec.Command("cp", filepath.Join(dir("layer"), "big"), dir("raw.img")).Run(); err != nil {
		return nil, fmt.Errorf("cp: %w", err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", dir("layer"), dir("ext4.img"), fmt.Sprintf("%dM", 2*ioMiB+128)).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mkfs.ext4: %v: %s", err, out)
	}
	spec := oci.DefaultSpec([]string{"sleep", "1000"}, nil, "/", false)
	all := []string{"CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE", "CAP_MKNOD", "CAP_CHOWN", "CAP_FOWNER"}
	spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: all, Effective: all, Permitted: all}
	spec.Linux.MaskedPaths, spec.Linux.ReadonlyPaths = nil, nil
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: dir("vol"), Options: []string{"rbind", "rw"}})
	for _, d := range []struct{ img, path string }{{"raw.img", "/dev/raw"}, {"ext4.img", "/dev/fsdisk"}} {
		out, err := exec.Command("losetup", "-f", "--show", dir(d.img)).Output()
		if err != nil {
			return nil, fmt.Errorf("losetup %s: %w", d.img, err)
		}
		loop := strings.TrimSpace(string(out))
		cu.Add(func() { exec.Command("losetup", "-d", loop).Run() })
		var st unix.Stat_t
		if err := unix.Stat(loop, &st); err != nil {
			return nil, err
		}
		major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		mode := os.FileMode(0o660)
		spec.Linux.Devices = append(spec.Linux.Devices, specs.LinuxDevice{Path: d.path, Type: "b", Major: major, Minor: minor, FileMode: &mode})
		if spec.Linux.Resources == nil {
			spec.Linux.Resources = &specs.LinuxResources{}
		}
		spec.Linux.Resources.Devices = append(spec.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "b", Major: &major, Minor: &minor, Access: "rwm"})
	}
	// Every file in the host's page cache.
	for _, f := range []string{filepath.Join(dir("root"), "big"), dir("raw.img"), dir("ext4.img")} {
		if err := exec.Command("cat", f).Run(); err != nil {
			return nil, fmt.Errorf("cat %s: %w", f, err)
		}
	}

	// The devices go to the 9p sandbox only: their floors are the same
	// guest's, whatever shares its files.
	bare, linux := *spec, *spec.Linux
	linux.Devices, linux.Resources = nil, nil
	bare.Linux = &linux
	t9, err := filesIn(ctx, e, vc.SharedFS9P, dir("root"), spec, true)
	if err != nil {
		return nil, err
	}
	tv, err := filesIn(ctx, e, vc.SharedFSVirtioFS, dir("root"), &bare, false)
	if err != nil {
		return nil, err
	}
	mbps := func(d time.Duration) float64 { return ioMiB / d.Seconds() }
	return []row{
		{figure: fmt.Sprintf("image read: a %d MiB file of an image layer, through the container's root (host overlay, 9p)", ioMiB), unit: "MiB/s", value: mbps(t9["image"]), floor: mbps(t9["raw direct"]),
			floorName: "the same bytes off a raw virtio-blk disk, O_DIRECT", note: fmt.Sprintf("target 0.6; the disk read buffered: %.0f MiB/s; the file read from a 9p volume: %.0f MiB/s; median of 3, busybox dd bs=1M, `time -p` in the guest", mbps(t9["raw buffered"]), mbps(t9["volume"]))},
		{figure: "the same over virtio-fs (HypervisorConfig.SharedFS)", unit: "MiB/s", value: mbps(tv["image"]), floor: mbps(t9["raw direct"]),
			floorName: "the same bytes off a raw virtio-blk disk, O_DIRECT", note: "virtiofsd cache=always, timeout=1: through the guest's page cache"},
		{figure: "the same file in an ext4 image of the layer on a disk, fresh mount (the block-device layer)", unit: "MiB/s", value: mbps(t9["ext4 image"]), floor: mbps(t9["raw direct"]),
			floorName: "the same bytes off a raw virtio-blk disk, O_DIRECT", note: "through the guest's page cache, as a container reads"},
		{figure: fmt.Sprintf("image metadata: ls -lnR of %d files in %d directories of an image layer (9p)", treeDirs*treeFiles, treeDirs), unit: "s", value: t9["tree"].Seconds(), floor: t9["ext4 tree"].Seconds(),
			floorName: "the same tree in the ext4 image, fresh mount", note: fmt.Sprintf("lower is better; over virtio-fs: %.2f s", tv["tree"].Seconds())},
		{figure: fmt.Sprintf("volume write: %d MiB + fsync to a 9p volume", ioMiB), unit: "MiB/s", value: mbps(t9["write"]), floor: mbps(t9["ext4 write"]),
			floorName: "the same dd to an ext4 virtio-blk disk", note: fmt.Sprintf("target 0.5; the raw disk written O_DIRECT: %.0f MiB/s; to a virtio-fs volume: %.0f MiB/s", mbps(t9["raw write"]), mbps(tv["write"]))},
	}, nil
}

// filesIn times, in a sandbox sharing its files by kind, a container of
// root and spec reading the layer's file, listing its tree and writing to
// its volume; with disks, the same on the spec's disks.
func filesIn(ctx context.Context, e *vmEnv, kind, root string, spec *specs.Spec, disks bool) (map[string]time.Duration, error) {
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: "files-" + kind, StateRoot: e.stateRoot,
		Hypervisor: vc.HypervisorConfig{Kernel: e.img.Kernel, Initrd: e.img.Initrd, SharedFS: kind}})
	if err != nil {
		return nil, err
	}
	defer func() { s.Stop(ctx, 5*time.Second); s.Delete(ctx) }()
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "c", Rootfs: root, Spec: spec}); err != nil {
		return nil, err
	}
	if err := s.Container("c").Start(ctx); err != nil {
		return nil, err
	}
	n := 0
	// timed runs prep then `time -p` of cmd in the container, three
	// times, and returns the median.
	timed := func(prep, cmd string) (time.Duration, error) {
		var ds []time.Duration
		for range 3 {
			n++
			var out bytes.Buffer
			id := fmt.Sprintf("x%d", n)
			script := prep + "; time -p " + cmd
			if err := s.Container("c").Exec(ctx, id, &specs.Process{Args: []string{"sh", "-ec", script}, Cwd: "/", Env: []string{"PATH=/bin:/sbin:/usr/bin"}}); err != nil {
				return 0, err
			}
			streams := s.Container("c").IOStream(ctx, id, vc.IO{Stdout: &out, Stderr: &out})
			code, err := s.Container("c").WaitProcess(ctx, id)
			<-streams
			if err == nil && code != 0 {
				err = fmt.Errorf("%q exited %d: %s", script, code, out.String())
			}
			if err != nil {
				return 0, err
			}
			d, err := timeReal(out.String())
			if err != nil {
				return 0, err
			}
			ds = append(ds, d)
		}
		slices.Sort(ds)
		return ds[1], nil
	}
	const (
		drop     = "sync; echo 3 > /proc/sys/vm/drop_caches"
		remount  = "umount /mnt 2>/dev/null || true; " + drop + "; mount /dev/fsdisk /mnt"
		readArgs = " of=/dev/null bs=1M"
		ls       = "ls -lnR %s > /dev/null"
	)
	if _, err := timed("mkdir -p /mnt", "true"); err != nil {
		return nil, err
	}
	type measure struct{ name, prep, cmd string }
	ms := []measure{
		{"image", drop, "dd if=/big" + readArgs},
		{"tree", drop, fmt.Sprintf(ls, "/tree")},
		{"volume", drop, "dd if=/vol/big" + readArgs},
		{"write", "rm -f /vol/out; " + drop, fmt.Sprintf("dd if=/dev/zero of=/vol/out bs=1M count=%d conv=fsync", ioMiB)},
	}
	if disks {
		ms = append(ms,
			measure{"raw direct", drop, "dd if=/dev/raw iflag=direct" + readArgs},
			measure{"raw buffered", drop, "dd if=/dev/raw" + readArgs},
			measure{"ext4 image", remount, "dd if=/mnt/big" + readArgs},
			measure{"ext4 tree", remount, fmt.Sprintf(ls, "/mnt/tree")},
			measure{"ext4 write", "rm -f /mnt/out; " + remount, fmt.Sprintf("dd if=/dev/zero of=/mnt/out bs=1M count=%d conv=fsync", ioMiB)},
			measure{"raw write", drop, fmt.Sprintf("dd if=/dev/zero of=/dev/raw oflag=direct bs=1M count=%d conv=fsync", ioMiB)},
		)
	}
	t := map[string]time.Duration{}
	for _, m := range ms {
		if t[m.name], err = timed(m.prep, m.cmd); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", kind, m.name, err)
		}
	}
	return t, nil
}

// The image layer's tree of small files, for the metadata figure.
const (
	treeDirs  = 50
	treeFiles = 40
)

// writeTree makes treeDirs directories of treeFiles small files under dir.
func writeTree(dir string) error {
	for d := range treeDirs {
		sub := filepath.Join(dir, fmt.Sprintf("d%d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		for f := range treeFiles {
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%d", f)), []byte("x\n"), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// randomFile writes size bytes of random data to path (random, so no
// layer on the way can shortcut zeros).
func randomFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// timeReal reads the "real" line `time -p` printed.
func timeReal(out string) (time.Duration, error) {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "real "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("time -p: %q: %w", l, err)
			}
			return time.Duration(f * float64(time.Second)), nil
		}
	}
	return 0, fmt.Errorf("no `real` line from time -p in %q", out)
}
