package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/vc"
	"github.com/virtcontainers/vc/pkg/volume"
)

// Volumes: docker's local volumes, kept in <data-root>/volumes
// (pkg/volume), mounted with -v NAME:/path, -v /path (anonymous) or
// --mount type=volume. A container's volumes are in its run options; a
// volume any container has, running or stopped, is not removed.

func init() {
	register("volume", command{
		usage: "create [NAME] | ls [-q] | inspect NAME... | rm [-f] NAME... | prune [-a] [-f]",
		short: "make, list, show or remove volumes (kept in the data root, mounted with -v NAME:/path or --mount)",
		run:   volumeCmd,
	})
}

// openVolumeStore opens <data-root>/volumes, absolute: its paths are
// mount sources.
func openVolumeStore(g *globals) (*volume.Store, error) {
	dir, err := filepath.Abs(filepath.Join(g.dataRoot, "volumes"))
	if err != nil {
		return nil, err
	}
	return volume.Open(dir)
}

func volumeCmd(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("want a subcommand: create, ls, inspect, rm or prune")
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Printf(`usage: vc volume %s

  create   make a volume (a 64-hex name if none is given) and print its name
  ls       list the volumes (-q: names only)
  inspect  show volumes as JSON
  rm       remove volumes no container has, running or stopped
           (-f: a missing one is no error)
  prune    remove the anonymous volumes no container has, and with -a the
           named ones too; print the space reclaimed

The volumes are in %s. vc run -v NAME:/path or --mount
type=volume,source=NAME,target=/path mounts one (made if missing, and
given the image's content at /path on its first use); -v /path or
--mount type=volume,target=/path an anonymous one, removed with its
container by vc rm -v and vc run --rm.
`, commands["volume"].usage, filepath.Join(g.dataRoot, "volumes"))
		return nil
	case "create":
		return volumeCreate(g, args[1:])
	case "ls", "list":
		return volumeLs(g, args[1:])
	case "inspect":
		return volumeInspect(g, args[1:])
	case "rm", "remove":
		return volumeRm(ctx, g, args[1:])
	case "prune":
		return volumePrune(ctx, g, args[1:])
	}
	if strings.HasPrefix(args[0], "-") {
		// A flag before the subcommand: the flag package's error, which
		// main says as docker does.
		return newFlags("volume", commands["volume"].usage).Parse(args)
	}
	return fmt.Errorf("subcommand %q: want create, ls, inspect, rm or prune: %w", args[0], errdefs.ErrInvalidArgument)
}

func volumeCreate(g *globals, args []string) error {
	fs := newFlags("volume create", "[NAME]")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return fmt.Errorf("NAME: one at most, got %d: %w", fs.NArg(), errdefs.ErrInvalidArgument)
	}
	name := fs.Arg(0)
	if name == "" {
		name = volume.NewName()
	}
	st, err := openVolumeStore(g)
	if err != nil {
		return err
	}
	v, err := st.Create(name, nil)
	if err != nil {
		return err
	}
	fmt.Println(v.Name)
	return nil
}

func volumeLs(g *globals, args []string) error {
	fs := newFlags("volume ls", "[-q]")
	quiet := fs.Bool("q", false, "print the names only")
	if err := fs.Parse(expandShort(fs, args)); err != nil {
		return err
	}
	st, err := openVolumeStore(g)
	if err != nil {
		return err
	}
	vols, err := st.List()
	if err != nil {
		return err
	}
	if *quiet {
		for _, v := range vols {
			fmt.Println(v.Name)
		}
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 5, ' ', 0)
	fmt.Fprintln(tw, "DRIVER\tVOLUME NAME")
	for _, v := range vols {
		fmt.Fprintf(tw, "%s\t%s\n", v.Driver, v.Name)
	}
	return tw.Flush()
}

func volumeInspect(g *globals, args []string) error {
	fs := newFlags("volume inspect", "NAME...")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("NAME: missing: %w", errdefs.ErrInvalidArgument)
	}
	st, err := openVolumeStore(g)
	if err != nil {
		return err
	}
	// As docker: what was found is printed, then the error for what was
	// not.
	out := []volume.Volume{}
	var errs []error
	for _, n := range fs.Args() {
		v, err := st.Get(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, v)
	}
	b, _ := json.MarshalIndent(out, "", "    ")
	fmt.Println(string(b))
	return errors.Join(errs...)
}

func volumeRm(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("volume rm", "[-f] NAME...")
	force := fs.Bool("f", false, "a missing volume is no error")
	if err := fs.Parse(expandShort(fs, args)); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("NAME: missing: %w", errdefs.ErrInvalidArgument)
	}
	st, err := openVolumeStore(g)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range fs.Args() {
		err := st.Remove(n, volumeUsers(ctx, g))
		switch {
		case err == nil:
			fmt.Println(n)
		case *force && errdefs.IsNotFound(err):
		default:
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func volumePrune(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("volume prune", "[-a] [-f]")
	all := fs.Bool("a", false, "remove unused named volumes too, not only anonymous ones")
	fs.Bool("f", false, "do not ask (vc never asks)")
	if err := fs.Parse(expandShort(fs, args)); err != nil {
		return err
	}
	st, err := openVolumeStore(g)
	if err != nil {
		return err
	}
	removed, n, err := st.Prune(*all, volumeUsers(ctx, g))
	if len(removed) > 0 {
		fmt.Println("Deleted Volumes:")
		for _, name := range removed {
			fmt.Println(name)
		}
		fmt.Println()
	}
	fmt.Printf("Total reclaimed space: %s\n", humanBytes(n))
	return err
}

// humanBytes is a size as docker prints it (1.5kB, 3MB: powers of 1000).
func humanBytes(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%dB", n)
	}
	return fmt.Sprintf("%.4g%s", f, units[i])
}

// volumeUsers maps each volume a container of the state root has to
// those containers ("ID (STATE)"), from their run options (usersOf).
func volumeUsers(ctx context.Context, g *globals) volume.UsersFunc {
	return usersOf(ctx, g, func(o runOptions) []string {
		var names []string
		for _, m := range o.Mounts {
			if m.Type == mountVolume {
				names = append(names, m.Source)
			}
		}
		return names
	})
}

// usersOf maps each name uses gives of a container's run options (its
// volumes, its network) to the containers of the state root ("ID
// (STATE)") that have it: whatever their state, and a container being
// run again (its options are in its carry directory meanwhile).
func usersOf(ctx context.Context, g *globals, uses func(runOptions) []string) func() (map[string][]string, error) {
	return func() (map[string][]string, error) {
		used := map[string][]string{}
		add := func(o runOptions, id string, st vc.State) {
			for _, n := range uses(o) {
				user := fmt.Sprintf("%s (%s)", id, st)
				if !slices.Contains(used[n], user) {
					used[n] = append(used[n], user)
				}
			}
		}
		list, err := vc.ListSandbox(ctx, g.stateRoot)
		if err != nil {
			return nil, err
		}
		for _, sb := range list {
			if o, err := savedOptions(g, sb.ID); err == nil {
				add(o, sb.ID, sb.State)
			}
		}
		carried, err := carriedOptions(g)
		if err != nil {
			return nil, err
		}
		for _, o := range carried {
			add(o, o.ID, "restarting")
		}
		return used, nil
	}
}

// removeAnonymousVolumes removes the anonymous volumes of a container
// that is gone (vc rm -v, vc run --rm), as docker does; one another
// container has too stays, with a warning.
func removeAnonymousVolumes(ctx context.Context, g *globals, o runOptions) {
	names := anonymousVolumes(o)
	if len(names) == 0 {
		return
	}
	st, err := openVolumeStore(g)
	if err != nil {
		slog.Warn("remove anonymous volumes", "container", o.ID, "err", err)
		return
	}
	for _, n := range names {
		if err := st.Remove(n, volumeUsers(ctx, g)); err != nil && !errdefs.IsNotFound(err) {
			slog.Warn("remove anonymous volume", "container", o.ID, "volume", n, "err", err)
		}
	}
}

// reserveVolumes keeps vc volume rm and prune off the volumes of the
// container being made until release, once it is on record (its run
// options saved). Any container: its image may have VOLUMEs.
func reserveVolumes(g *globals) (release func(), err error) {
	st, err := openVolumeStore(g)
	if err != nil {
		return nil, err
	}
	return st.Reserve()
}

// volumeMounts gives the container of o its mounts, volumes made in the
// store if missing.
func volumeMounts(g *globals, o runOptions) ([]specs.Mount, error) {
	if len(o.Mounts) == 0 {
		return nil, nil
	}
	st, err := openVolumeStore(g)
	if err != nil {
		return nil, err
	}
	var out []specs.Mount
	for i, m := range o.Mounts {
		sm, err := m.specMount(st)
		if err != nil {
			return nil, fmt.Errorf("mount #%d (%s on %s): %w", i+1, m.Type, m.Target, err)
		}
		out = append(out, sm)
	}
	return out, nil
}

// copyUpVolumes gives each empty volume of o the image's content at its
// target, from the container's root filesystem rootfs, as docker does on
// a volume's first use.
func copyUpVolumes(g *globals, o runOptions, rootfs string) error {
	var st *volume.Store
	for i, m := range o.Mounts {
		if m.Type != mountVolume || m.NoCopy {
			continue
		}
		if st == nil {
			var err error
			if st, err = openVolumeStore(g); err != nil {
				return err
			}
		}
		if err := st.CopyUp(m.Source, rootfs, m.Target); err != nil {
			return fmt.Errorf("mount #%d (volume %s on %s): %w", i+1, m.Source, m.Target, err)
		}
	}
	return nil
}
