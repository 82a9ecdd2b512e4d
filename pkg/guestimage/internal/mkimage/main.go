// mkimage builds a guest image with pkg/guestimage from the command line
// (make -f pkg/guestimage/image.mk image). It prints the image's manifest
// with the absolute kernel and initrd paths as JSON.
//
//	go run ./pkg/guestimage/internal/mkimage -agent bin/vc-agent
//	go run ./pkg/guestimage/internal/mkimage -floor-init bin/vc-floor-init
//	go run ./pkg/guestimage/internal/mkimage -ls
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/virtcontainers/vc/pkg/guestimage"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		o        guestimage.Options
		floor    = flag.String("floor-init", "", "build the floor image with this /init instead of an agent image")
		modules  = flag.String("modules", "", "comma-separated kernel modules (default: guestimage.DefaultModules; \"none\" for none)")
		compress = flag.String("compression", string(guestimage.DefaultCompression), "initrd compression: none, gzip, zstd, xz")
		ls       = flag.Bool("ls", false, "list the images under -root and exit")
		verbose  = flag.Bool("v", false, "debug logging")
	)
	flag.StringVar(&o.Root, "root", guestimage.DefaultRoot, "image directory")
	flag.StringVar(&o.CacheDir, "cache", guestimage.DefaultCacheDir, "kernel package cache")
	flag.StringVar(&o.Agent, "agent", "", "static vc-agent binary (becomes /init)")
	flag.StringVar(&o.KernelPackage, "kernel-package", "", "Debian kernel package (default: what "+guestimage.DefaultKernelMetaPackage()+" depends on)")
	flag.BoolVar(&o.Busybox, "busybox", false, "add /bin/busybox for a debug console")
	flag.StringVar(&o.Kernel, "kernel", "", "a kernel of your own instead of Debian's")
	flag.StringVar(&o.Initrd, "initrd", "", "an initrd of your own (with -kernel): only recorded")
	flag.StringVar(&o.KernelModulesDir, "kernel-modules", "", "lib/modules/<version> of -kernel")
	flag.Parse()

	lv := slog.LevelInfo
	if *verbose {
		lv = slog.LevelDebug
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	o.Compression = guestimage.Compression(*compress)
	switch *modules {
	case "":
	case "none":
		o.Modules = []string{}
	default:
		o.Modules = strings.Split(*modules, ",")
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if *ls {
		imgs, err := guestimage.List(o.Root)
		if err != nil {
			return err
		}
		return enc.Encode(imgs)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var (
		img *guestimage.Image
		err error
	)
	if *floor != "" {
		img, err = guestimage.BuildFloor(ctx, o, *floor)
	} else {
		img, err = guestimage.Build(ctx, o)
	}
	if err != nil {
		return err
	}
	return enc.Encode(img)
}
