package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/virtcontainers/vc/internal/guestconfig"
	"github.com/virtcontainers/vc/pkg/guestimage"
)

func init() {
	register("image", command{
		usage: "build [--kernel-package PKG] [--busybox] | ls",
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
		fs := newFlags("image build", "[--kernel-package PKG] [--busybox]")
		pkg := fs.String("kernel-package", "", "Debian kernel package (default: what linux-image-amd64 depends on)")
		busybox := fs.Bool("busybox", false, "add busybox to the initrd for a debug console")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		img, err := buildImage(ctx, g, guestimage.Options{KernelPackage: *pkg, Busybox: *busybox})
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
		fmt.Fprintln(w, "IMAGE\tKIND\tKERNEL\tKERNEL SIZE\tINITRD SIZE\tMODULES\tCREATED\tCURRENT")
		for _, i := range imgs {
			mark := ""
			if filepath.Base(i.Dir) == cur {
				mark = "*"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s ago\t%s\n", filepath.Base(i.Dir), i.Kind, i.KernelVersion,
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
