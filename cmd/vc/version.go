package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

func init() {
	register("version", command{usage: "", short: "print vc's version", run: versionCmd})
}

// gitCommit is set by the Makefile (-X main.gitCommit=...) where the Go
// toolchain does not stamp the commit (GOFLAGS=-buildvcs=false).
var gitCommit string

// versionCmd prints the module version and the commit vc was built from,
// as the Go toolchain recorded them.
func versionCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("version", commands["version"].usage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	version, commit, dirty := "(devel)", "unknown", ""
	if gitCommit != "" {
		commit = gitCommit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = " (modified)"
				}
			}
		}
	}
	fmt.Printf("vc version %s\ncommit: %s%s\ngo: %s %s/%s\n", version, commit, dirty, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
