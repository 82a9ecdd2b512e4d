package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/atomicfile"
	"github.com/virtcontainers/vc/internal/cleanup"
)

func init() {
	register("create", command{
		usage: "[--bundle DIR] [--console-socket PATH] [--pid-file PATH] [--no-pivot] [--no-new-keyring] [--preserve-fds N] ID",
		short: "create a container (its VM boots; start runs its process)",
		run:   createCmd,
	})
}

// createOptions are create's (and run's) flags.
type createOptions struct {
	id            string
	bundle        string
	consoleSocket string
	pidFile       string
	// detach: the caller leaves (create, run -d); a terminal then needs
	// a console socket.
	detach bool
}

// bindCreateFlags binds the flags create and run share.
func bindCreateFlags(fsf interface {
	StringVar(*string, string, string, string)
	BoolVar(*bool, string, bool, string)
	IntVar(*int, string, int, string)
}, o *createOptions) {
	fsf.StringVar(&o.bundle, "bundle", ".", "path to the root of the bundle directory")
	fsf.StringVar(&o.bundle, "b", ".", "path to the root of the bundle directory")
	fsf.StringVar(&o.consoleSocket, "console-socket", "", "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal")
	fsf.StringVar(&o.pidFile, "pid-file", "", "specify the file to write the process id to (the VM owner's, which exits with the container)")
	var ignored bool
	var fds int
	fsf.BoolVar(&ignored, "no-pivot", false, "accepted; the container's root is in its VM")
	fsf.BoolVar(&ignored, "no-new-keyring", false, "accepted; the container's keyring is in its VM")
	fsf.IntVar(&fds, "preserve-fds", 0, "accepted; extra file descriptors are not passed into the VM")
}

func createCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("create")
	o := createOptions{detach: true}
	bindCreateFlags(fs, &o)
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := oneID(fs, "create")
	if err != nil {
		return err
	}
	o.id = id
	_, err = createContainer(ctx, g, o)
	return err
}

// ownerOptions tell the owner process what create was asked beyond the
// container's state.
type ownerOptions struct {
	ID            string `json:"id"`
	ConsoleSocket string `json:"console_socket,omitempty"`
}

// createContainer checks the bundle, records the container and starts
// its owner, which boots the VM (or joins the VM of the pod container
// whose process the spec's namespaces name) and creates the container in
// it; it
// returns once the container is created, or with the owner's error after
// the owner removed everything it made. The owner inherits this process's
// standard streams: they are the container's.
func createContainer(ctx context.Context, g *globals, o createOptions) (_ *exec.Cmd, err error) {
	if err := validateID(o.id); err != nil {
		return nil, err
	}
	bundle, err := filepath.Abs(o.bundle)
	if err != nil {
		return nil, err
	}
	if o.consoleSocket != "" {
		// The owner dials it from /.
		if o.consoleSocket, err = filepath.Abs(o.consoleSocket); err != nil {
			return nil, err
		}
	}
	spec, err := loadSpec(bundle)
	if err != nil {
		return nil, err
	}
	rootfs, err := specRootfs(bundle, spec)
	if err != nil {
		return nil, err
	}
	if err := checkNamespacePaths(spec); err != nil {
		return nil, err
	}
	// A pod's container names the process of the pod's infrastructure
	// container: it runs in that container's VM.
	host, err := vmToJoin(g.root, spec)
	if err != nil {
		return nil, err
	}

	if err := os.MkdirAll(g.root, 0o700); err != nil {
		return nil, fmt.Errorf("--root: %w", err)
	}
	dir := containerDir(g.root, o.id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("container with id exists: %s", o.id)
		}
		return nil, fmt.Errorf("container %s: %w", o.id, err)
	}
	cu := cleanup.Make(func() { os.RemoveAll(dir) })
	defer cu.Clean()
	// runc's order: an id in use first, then the terminal.
	if spec.Process.Terminal && o.detach && o.consoleSocket == "" {
		return nil, errors.New("cannot allocate tty if runc will detach without setting console socket")
	}
	if !spec.Process.Terminal && o.consoleSocket != "" {
		return nil, errors.New("cannot use console socket if runc will not detach or allocate tty")
	}
	st := &containerState{
		ID: o.id, Bundle: bundle, Rootfs: rootfs, Created: time.Now().UTC(),
		Annotations: spec.Annotations, Status: statusCreating, Sandbox: host,
	}
	if host == "" {
		st.NetNS, _ = network(spec)
	}
	if err := st.save(g.root); err != nil {
		return nil, fmt.Errorf("container %s: %w", o.id, err)
	}

	// The owner's errors (the library's) name the container.
	cmd, err := startOwner(g, ownerOptions{ID: o.id, ConsoleSocket: o.consoleSocket})
	if err != nil {
		return nil, err
	}
	if o.pidFile != "" {
		if err := writePidFile(o.pidFile, cmd.Process.Pid); err != nil {
			// The owner tears everything down when killed before start.
			stopLeftovers(ctx, g.root, o.id)
			cmd.Wait()
			return nil, err
		}
	}
	cu.Release()
	return cmd, nil
}

// startOwner starts the owner process in a session of its own and waits
// until it reports the container created, or its error. On error the
// owner has exited.
func startOwner(g *globals, oo ownerOptions) (*exec.Cmd, error) {
	// Without a terminal the container's streams are create's, which the
	// owner keeps; with one they are the terminal's, and the owner keeps
	// none of create's (a caller reading them to their end would wait
	// for the container).
	return startChild(g, "__owner", oo, oo.ConsoleSocket == "", func(cmd *exec.Cmd) string {
		b, _ := os.ReadFile(filepath.Join(containerDir(g.root, oo.ID), ownerLog))
		line := "owner process died: " + cmd.ProcessState.String()
		if s := strings.TrimSpace(string(b)); s != "" {
			line += ": " + lastLine(s)
		}
		return line
	})
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// writePidFile writes pid as runc does: atomically, no newline.
func writePidFile(path string, pid int) error {
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("--pid-file: %w", err)
	}
	return nil
}

// loadSpec reads the bundle's config.json, with runc's errors.
func loadSpec(bundle string) (*specs.Spec, error) {
	f, err := os.Open(filepath.Join(bundle, "config.json"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errors.New("JSON specification file config.json not found")
		}
		return nil, err
	}
	defer f.Close()
	var spec specs.Spec
	if err := json.NewDecoder(f).Decode(&spec); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	if spec.Process == nil {
		return nil, errors.New("process property must not be empty")
	}
	if len(spec.Process.Args) == 0 {
		return nil, errors.New("args must not be empty")
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, errors.New("root must be specified")
	}
	return &spec, nil
}

// specRootfs is the spec's root.path resolved against the bundle; it must
// be a directory.
func specRootfs(bundle string, spec *specs.Spec) (string, error) {
	root := spec.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(bundle, root)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return "", fmt.Errorf("rootfs (%q) does not exist: %w", root, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("rootfs (%q) is not a directory", root)
	}
	return root, nil
}
