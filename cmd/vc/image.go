package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/virtcontainers/vc/internal/guestconfig"
	"github.com/virtcontainers/vc/pkg/guestimage"
)

func init() {
	register("image", command{
		usage: "build [--flavor minimal|generic] [--kernel-package PKG] [--busybox] | ls",
		short: "build or list guest images (kernel + initrd with vc-agent)",
		run:   imageCmd,
	})
}

func imageCmd(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("want a subcommand: build or ls")
	}
	switch args[0] {
	case "build":
		fs := newFlags("image build", "[--flavor minimal|generic] [--kernel-package PKG] [--busybox]")
		flavor := fs.String("flavor", "", "the kernel: minimal (built once from Debian's linux-source with the project's config, everything built in; the default) or generic (Debian's linux-image package, modules in the initrd)")
		pkg := fs.String("kernel-package", "", "Debian kernel package of the generic flavor (default: what linux-image-amd64 depends on)")
		busybox := fs.Bool("busybox", false, "add busybox to the initrd for a debug console")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		opts := guestimage.Options{KernelFlavor: guestimage.KernelFlavor(*flavor), KernelPackage: *pkg, Busybox: *busybox}
		// A first build takes minutes (the kernel): say what it does.
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		if *pkg != "" && *flavor == string(guestimage.KernelMinimal) {
			return fmt.Errorf("--kernel-package %q: a package of the generic flavor, not --flavor minimal", *pkg)
		}
		img, err := buildImage(ctx, g, opts)
		if err != nil {
			return err
		}
		fmt.Printf("%s\nkernel %s (%s)\ninitrd %s (%s, %d modules)\n", img.Dir, img.Kernel, img.KernelVersion, img.Initrd, human(uint64(img.InitrdSize)), len(img.Modules))
		return nil
	case "ls":
		imgs, err := guestimage.List(imageRoot(g))
		if err != nil {
			return err
		}
		cur, _ := os.Readlink(filepath.Join(imageRoot(g), "current"))
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
		fmt.Fprintln(w, "IMAGE\tKIND\tFLAVOR\tKERNEL\tKERNEL SIZE\tINITRD SIZE\tMODULES\tCREATED\tCURRENT")
		for _, i := range imgs {
			mark := ""
			if filepath.Base(i.Dir) == cur {
				mark = "*"
			}
			flavor := string(i.KernelFlavor)
			if flavor == "" {
				flavor = "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s ago\t%s\n", filepath.Base(i.Dir), i.Kind, flavor, i.KernelVersion,
				human(uint64(i.KernelSize)), human(uint64(i.InitrdSize)), len(i.Modules), ago(i.Created), mark)
		}
		return w.Flush()
	}
	return fmt.Errorf("unknown image subcommand %q: want build or ls", args[0])
}

func imageRoot(g *globals) string { return guestconfig.ImageRoot(g.dataRoot) }

// buildImage builds (or finds) the image for the installed agent and makes
// it the current one.
func buildImage(ctx context.Context, g *globals, o guestimage.Options) (*guestimage.Image, error) {
	return guestconfig.Build(ctx, g.dataRoot, o)
}

// guestImage returns the kernel and initrd to boot: the ones given, or the
// current image if it was built from the installed agent, or a new build.
func guestImage(ctx context.Context, g *globals, kernel, initrd string) (string, string, error) {
	return guestconfig.Resolve(ctx, g.dataRoot, kernel, initrd, true)
}

// policyImage is guestImage's policy image (vc-agent-policy), for a
// sandbox given --policy.
func policyImage(ctx context.Context, g *globals, kernel, initrd string) (string, string, error) {
	return guestconfig.ResolvePolicy(ctx, g.dataRoot, kernel, initrd, true)
}
