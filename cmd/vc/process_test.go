package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/imagestore"
)

// The image config's Entrypoint, Cmd, Env, WorkingDir and User, with
// docker's overrides: arguments replace Cmd, --entrypoint replaces
// Entrypoint and drops Cmd, -e replaces a variable in place, -w and -u
// replace.
func TestProcessOf(t *testing.T) {
	img := imageSource{image: &imagestore.Image{Config: &v1.ConfigFile{Config: v1.Config{
		Entrypoint: []string{"/entry"}, Cmd: []string{"default"}, Env: []string{"PATH=/img/bin", "A=image"},
		WorkingDir: "/srv", User: "app",
	}}}}
	cases := []struct {
		name     string
		src      imageSource
		o        runOptions
		args     []string
		cwd, usr string
		env      []string
	}{
		{"image", img, runOptions{}, []string{"/entry", "default"}, "/srv", "app", []string{"PATH=/img/bin", "HOME=/root", "A=image"}},
		{"args", img, runOptions{Args: []string{"x", "y"}}, []string{"/entry", "x", "y"}, "/srv", "app", nil},
		{"entrypoint", img, runOptions{Entrypoint: []string{"/bin/echo"}}, []string{"/bin/echo"}, "/srv", "app", nil},
		{"entrypoint+args", img, runOptions{Entrypoint: []string{"/bin/echo"}, Args: []string{"hi"}}, []string{"/bin/echo", "hi"}, "/srv", "app", nil},
		{"overrides", img, runOptions{Env: []string{"A=flag", "B=new"}, Workdir: "/tmp", User: "0"}, []string{"/entry", "default"}, "/tmp", "0",
			[]string{"PATH=/img/bin", "HOME=/root", "A=flag", "B=new"}},
		{"busybox", imageSource{lowers: []string{"/x"}}, runOptions{}, []string{"sh"}, "", "", nil},
	}
	for _, c := range cases {
		args, env, cwd, usr, err := processOf(c.src, c.o)
		if err != nil || !slices.Equal(args, c.args) || cwd != c.cwd || usr != c.usr || (c.env != nil && !slices.Equal(env, c.env)) {
			t.Errorf("%s: args %q env %q cwd %q user %q (%v); want %q %q %q %q", c.name, args, env, cwd, usr, err, c.args, c.env, c.cwd, c.usr)
		}
	}
	empty := imageSource{image: &imagestore.Image{Config: &v1.ConfigFile{}}}
	if _, _, _, _, err := processOf(empty, runOptions{Image: "x/none"}); err == nil {
		t.Error("an image without Entrypoint or Cmd, and no command: no error")
	}
}

func TestHumanAgo(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "just now", 90 * time.Second: "1 minute ago", 49 * time.Hour: "2 days ago",
		15 * 24 * time.Hour: "2 weeks ago", 800 * 24 * time.Hour: "2 years ago",
	} {
		if got := humanAgo(d); got != want {
			t.Errorf("humanAgo(%v) = %q, want %q", d, got, want)
		}
	}
}

// An image's /etc/passwd that is a symbolic link is not followed on the
// host: its users are unknown.
func TestApplyUserNoLink(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(outside, []byte("outsider:x:4242:4242::/:/bin/sh\n"), 0o644)
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	if err := os.Symlink(outside, filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	p := &specs.Process{}
	if err := applyUser(p, []string{root}, "outsider", "-u"); err == nil {
		t.Errorf("a user of the host file the image's /etc/passwd links to was found: %+v", p.User)
	}
}
