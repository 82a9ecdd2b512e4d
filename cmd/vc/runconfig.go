package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/mount"
	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/imagestore"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// imageSource is what a container's root filesystem is made of: a
// directory (--rootfs, or the built-in busybox), or an image of the store.
type imageSource struct {
	store *imagestore.Store
	image *imagestore.Image // nil: a directory
	// lowers are the image's directories, top first (a directory: it
	// alone).
	lowers []string
}

// resolveImage finds what o runs: --rootfs, an image of the store, or,
// when the store has no image of that name, the built-in busybox.
func resolveImage(g *globals, o runOptions) (imageSource, error) {
	if o.Rootfs != "" {
		return imageSource{lowers: []string{o.Rootfs}}, nil
	}
	st, err := openImageStore(g)
	if err != nil {
		return imageSource{}, err
	}
	var img *imagestore.Image
	if o.ImageDigest != "" {
		// Run again: the image it was run with.
		if img, err = st.GetDigest(o.Image, o.ImageDigest); err != nil {
			return imageSource{}, fmt.Errorf("IMAGE %q (%s): the container's image is gone from the store: %w", o.Image, o.ImageDigest, err)
		}
	} else {
		img, err = st.Get(o.Image)
	}
	switch {
	case err == nil:
		lowers := make([]string, 0, len(img.Layers))
		for i := len(img.Layers) - 1; i >= 0; i-- {
			lowers = append(lowers, st.LayerDir(img.Layers[i].DiffID))
		}
		return imageSource{store: st, image: img, lowers: lowers}, nil
	case !errdefs.IsNotFound(err):
		return imageSource{}, err
	case o.Image == "busybox":
		dir, err := rootfs.Busybox(filepath.Join(g.dataRoot, "rootfs"))
		if err != nil {
			return imageSource{}, err
		}
		return imageSource{lowers: []string{dir}}, nil
	}
	return imageSource{}, fmt.Errorf("IMAGE %q: unknown: not in the image store (vc pull or vc load it; the built-in image is busybox), or use --rootfs DIR: %w", o.Image, errdefs.ErrNotFound)
}

// processOf is the container's command line, environment, directory and
// user: the image config's Entrypoint, Cmd, Env, WorkingDir and User, with
// docker's overrides on top (--entrypoint, which drops the image's Cmd;
// arguments, which replace Cmd; -e; -w; -u).
func processOf(src imageSource, o runOptions) (args, env []string, cwd, user string, err error) {
	var c v1.Config
	if src.image != nil && src.image.Config != nil {
		c = src.image.Config.Config
	}
	entrypoint, cmd := c.Entrypoint, c.Cmd
	if len(o.Entrypoint) > 0 {
		entrypoint, cmd = o.Entrypoint, nil
	}
	if len(o.Args) > 0 {
		cmd = o.Args
	}
	args = append(slices.Clone(entrypoint), cmd...)
	if len(args) == 0 {
		if src.image != nil {
			return nil, nil, "", "", fmt.Errorf("IMAGE %q: no command: the image has no Entrypoint or Cmd and none was given: %w", o.Image, errdefs.ErrInvalidArgument)
		}
		args = []string{"sh"}
	}
	env = mergeEnv(oci.DefaultEnv, c.Env, o.Env)
	cwd, user = c.WorkingDir, c.User
	if o.Workdir != "" {
		cwd = o.Workdir
	}
	if o.User != "" {
		user = o.User
	}
	return args, env, cwd, user, nil
}

// mergeEnv joins K=V lists, a later list's K replacing an earlier's in
// place (a process reads the first of two).
func mergeEnv(lists ...[]string) []string {
	var out []string
	at := map[string]int{}
	for _, l := range lists {
		for _, e := range l {
			k, _, _ := strings.Cut(e, "=")
			if i, ok := at[k]; ok {
				out[i] = e
				continue
			}
			at[k] = len(out)
			out = append(out, e)
		}
	}
	return out
}

// containerConfig builds the container from the run options; Rootfs is
// the image's top directory until mountRootfs gives the container its
// layer. The image's VOLUMEs join o's mounts, anonymous volumes, for the
// container's record to keep.
func containerConfig(g *globals, po *runOptions) (vc.ContainerConfig, imageSource, error) {
	src, err := resolveImage(g, *po)
	if err != nil {
		return vc.ContainerConfig{}, src, err
	}
	po.Mounts = append(po.Mounts, imageVolumes(src, po.Mounts)...)
	o := *po
	args, env, cwd, user, err := processOf(src, o)
	if err != nil {
		return vc.ContainerConfig{}, src, err
	}
	spec := oci.DefaultSpec(args, nil, cwd, o.TTY)
	spec.Process.Env = env
	spec.Hostname = o.Hostname
	spec.Root.Readonly = o.ReadOnly
	if o.CPUQuota > 0 {
		quota, period := o.CPUQuota, uint64(cpuPeriod)
		if spec.Linux.Resources == nil {
			spec.Linux.Resources = &specs.LinuxResources{}
		}
		spec.Linux.Resources.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if o.Privileged {
		privileged(spec)
	}
	if o.Init {
		if err := withInit(spec); err != nil {
			return vc.ContainerConfig{}, src, err
		}
	}
	if err := applyCapabilities(spec.Process, o.CapAdd, o.CapDrop); err != nil {
		return vc.ContainerConfig{}, src, err
	}
	if err := withDevices(spec, o.Devices); err != nil {
		return vc.ContainerConfig{}, src, err
	}
	if user != "" {
		field := "-u"
		if o.User == "" {
			field = fmt.Sprintf("IMAGE %q: User", o.Image)
		}
		if err := applyUser(spec.Process, src.lowers, user, field); err != nil {
			return vc.ContainerConfig{}, src, err
		}
	}
	if o.TTY {
		if sz, ok := terminalSize(); ok {
			spec.Process.ConsoleSize = &specs.Box{Height: uint(sz.Height), Width: uint(sz.Width)}
		}
	}
	for i, v := range o.Volumes {
		m, err := parseVolume(v)
		if err != nil {
			return vc.ContainerConfig{}, src, fmt.Errorf("-v #%d %q: %w", i+1, v, err)
		}
		if err := volumeSource(m.Source); err != nil {
			return vc.ContainerConfig{}, src, fmt.Errorf("-v #%d %q: %w", i+1, v, err)
		}
		spec.Mounts = append(spec.Mounts, m)
	}
	ms, err := volumeMounts(g, o)
	if err != nil {
		return vc.ContainerConfig{}, src, err
	}
	spec.Mounts = append(spec.Mounts, ms...)
	ann := map[string]string{"vc.image": o.Image}
	if src.image != nil {
		ann[imageDigestAnnotation] = src.image.Digest
	}
	return vc.ContainerConfig{ID: o.ID, Rootfs: src.lowers[0], Spec: spec, Annotations: ann}, src, nil
}

// giveBack moves what a container run again had carried in back to its
// carry directory, its writable layer unmounted first.
func giveBack(dir, carry string) error {
	if err := mount.UnmountUnder(filepath.Join(dir, "layer")); err != nil {
		return err
	}
	return moveCarried(dir, carry)
}

// imageDigestAnnotation records the manifest digest of a container's
// image of the store: vc rmi refuses to remove an image a container has.
const imageDigestAnnotation = "vc.image.digest"

// mountRootfs gives a container of an image its writable layer over the
// image's directories, in the sandbox's directory dir; the store's lock
// keeps the layers there until the overlay holds them.
func mountRootfs(dir string, src imageSource) (string, error) {
	if src.image == nil {
		return containerLayer(dir, src.lowers)
	}
	lowers, release, err := src.store.Acquire(src.image)
	if err != nil {
		return "", err
	}
	defer release()
	return containerLayer(dir, lowers)
}

// sandboxConfig builds the sandbox (VM) from the run options and the
// container's spec.
func sandboxConfig(ctx context.Context, g *globals, o runOptions, spec *specs.Spec) (vc.SandboxConfig, error) {
	resolve := guestImage
	if o.Policy != "" {
		resolve = policyImage
	}
	kernel, initrd, err := resolve(ctx, g, o.Kernel, o.Initrd)
	if err != nil {
		return vc.SandboxConfig{}, err
	}
	scfg := vc.SandboxConfig{
		ID:        o.ID,
		Policy:    o.Policy,
		Hostname:  o.Hostname,
		StateRoot: g.stateRoot,
		NetNS:     o.NetNS,
		NAT:       vc.NATConfig{Disabled: o.NoNAT, Publish: o.Publish, DNS: o.DNS},
		Hypervisor: vc.HypervisorConfig{
			Kernel:    kernel,
			Initrd:    initrd,
			Accel:     o.Accel,
			MemoryMiB: o.MemoryMiB,
			Debug:     o.Debug,
			SharedFS:  o.SharedFS,
		},
	}
	// --cpus is the container's limit (its spec's CPU quota): the VM is
	// sized from the spec as the shim and vc-runtime size theirs.
	if err := scfg.Hypervisor.SizeFor(spec); err != nil {
		return vc.SandboxConfig{}, err
	}
	// A factory's VMs share over 9p: virtio-fs boots (and --factory on
	// says why it cannot).
	factoryMode := o.Factory
	if o.SharedFS == vc.SharedFSVirtioFS {
		if factoryMode == "on" {
			return vc.SandboxConfig{}, fmt.Errorf("--factory on with --shared-fs %s: the factory's VMs share over 9p: %w", o.SharedFS, errdefs.ErrInvalidArgument)
		}
		factoryMode = "off"
	}
	if err := useFactory(g, factoryMode, &scfg); err != nil {
		return vc.SandboxConfig{}, err
	}
	return scfg, nil
}
