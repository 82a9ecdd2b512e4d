// vc-agent is the guest side of virtcontainers: PID 1 of the sandbox VM,
// serving the agent protocol over ttRPC on vsock, virtio-serial or a unix
// socket.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/guest"
	"github.com/virtcontainers/vc/internal/guest/boot"
	"github.com/virtcontainers/vc/internal/guest/container"
	"github.com/virtcontainers/vc/internal/guest/kmod"
	"github.com/virtcontainers/vc/internal/guest/reaper"
	"github.com/virtcontainers/vc/internal/guest/storage"
	"github.com/virtcontainers/vc/internal/guest/transport"
)

// init keeps the main thread the agent's own. A goroutine that changes
// its thread's namespaces and ends locked to it (libcontainer joining a
// container's mount namespace, the sandbox's shared namespaces) has that
// thread discarded by the Go runtime, except the main thread, which is
// parked instead, in the foreign namespaces: /proc/<agent>/mountinfo and
// the like (the main thread's view) would then show a container's mounts
// instead of the agent's. With main's goroutine locked to it, no other
// goroutine ever runs there.
func init() { runtime.LockOSThread() }

func main() {
	// libcontainer re-executes this binary as "vc-agent init" to set up a
	// container's process inside its namespaces.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
		return
	}
	// The agent re-executes itself as "vc-agent pause" to be PID 1 of the
	// sandbox's shared PID namespace.
	if len(os.Args) > 1 && os.Args[1] == container.PauseArg {
		container.RunPause()
		return
	}
	// A container's exec helper: the agent's binary run in the container
	// by libcontainer, forking the container's execs.
	if os.Args[0] == container.ExecHelperArg || len(os.Args) > 1 && os.Args[1] == container.ExecHelperArg {
		container.RunExecHelper()
		return
	}
	if err := run(); err != nil {
		slog.Error("vc-agent failed", "err", err)
		if os.Getpid() == 1 {
			boot.PowerOff()
		}
		os.Exit(1)
	}
}

func run() error {
	var (
		unixPath   = flag.String("unix", "", "also listen on this unix socket")
		vsockPort  = flag.Uint("vsock-port", 1024, "listen on this vsock port (0: off)")
		serialName = flag.String("serial", "agent.channel.0", "listen on the virtio-serial port of this name (empty: off)")
		level      = flag.String("log-level", "info", "debug, info, warn or error")
		modules    = flag.String("modules", "/etc/vc-agent/modules", "file listing kernel modules to load, in order")
		moduleDir  = flag.String("module-dir", "/lib/modules", "directory the module list is relative to")
		ctrRoot    = flag.String("container-root", "", "libcontainer state directory (default /run/vc-agent/containers)")
		sbRoot     = flag.String("sandbox-root", "", "where sandbox storages are mounted (default /run/vc-agent/sandbox)")
		copyRoot   = flag.String("copy-root", "", "directory CopyFile may write below (default /run)")
		storeRoot  = flag.String("storage-root", storage.DefaultMountRoot, "directory storages may be mounted below")
	)
	flag.Parse()
	if err := storage.SetMountRoot(*storeRoot); err != nil {
		return fmt.Errorf("-storage-root: %w", err)
	}
	// Kernel command line parameters without a dot (vc_log=debug) come as
	// environment for PID 1; dotted ones are taken for module parameters.
	if v := os.Getenv("vc_log"); v != "" {
		*level = v
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv})).With("component", "vc-agent"))
	if lv <= slog.LevelDebug {
		// libcontainer's own debug log (logrus), with its runc init's
		// and nsexec's stages, timestamped to split an exec's time.
		logrus.SetLevel(logrus.DebugLevel)
		logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000000"})
		// Written behind the exec path's back: a line on the serial
		// console costs milliseconds under TCG, which would land in
		// the very times the log is for.
		logrus.SetOutput(newAsyncWriter(os.Stderr))
	}

	initDaemon := os.Getpid() == 1
	if initDaemon {
		start := time.Now()
		// On the initramfs, move to a tmpfs root (re-executing the agent)
		// so that pivot_root works for containers.
		if err := boot.SwitchRoot(); err != nil {
			return err
		}
		if err := boot.MountSystem(); err != nil {
			return err
		}
		if err := kmod.Load(*modules, *moduleDir); err != nil {
			return err
		}
		slog.Info("system ready", "took", time.Since(start))
	}
	r := reaper.New()
	if err := r.Start(); err != nil {
		return fmt.Errorf("start reaper: %w", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shutdown := make(chan struct{}, 1)
	a := guest.New(guest.Config{
		InitDaemon:    initDaemon,
		ContainerRoot: *ctrRoot,
		SandboxRoot:   *sbRoot,
		CopyFileRoot:  *copyRoot,
		// Called before DestroySandbox answers: once it has, the host may
		// end the VM at once, so the guest's filesystems are synced first.
		Shutdown: func() {
			if initDaemon {
				unix.Sync()
			}
			select {
			case shutdown <- struct{}{}:
			default:
			}
		},
	}, r)
	srv, err := a.NewServer()
	if err != nil {
		return err
	}

	listeners, err := listen(*unixPath, uint32(*vsockPort), *serialName)
	if err != nil {
		return err
	}
	// After listen, which waits for the virtio-serial ports to appear.
	a.ServeDataPort(ctx, "/sys")
	for _, l := range listeners {
		slog.Info("listening", "addr", l.Addr().String(), "network", l.Addr().Network())
		go func(l net.Listener) {
			if err := srv.Serve(ctx, l); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, context.Canceled) && !errors.Is(err, ttrpc.ErrServerClosed) {
				slog.Error("serve", "addr", l.Addr().String(), "err", err)
			}
		}(l)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT)
	select {
	case s := <-sigs:
		slog.Info("signal received, shutting down", "signal", s.String())
		a.Close()
	case <-shutdown:
		slog.Info("sandbox destroyed, shutting down")
		// Let the DestroySandbox reply reach the host.
		time.Sleep(30 * time.Millisecond)
	}
	srv.Close()
	if initDaemon {
		boot.PowerOff()
	}
	return nil
}

func listen(unixPath string, vsockPort uint32, serialName string) ([]net.Listener, error) {
	var ls []net.Listener
	if unixPath != "" {
		l, err := transport.Unix(unixPath)
		if err != nil {
			return nil, fmt.Errorf("listen on unix socket %s: %w", unixPath, err)
		}
		ls = append(ls, l)
	}
	if vsockPort != 0 {
		if l, err := transport.Vsock(vsockPort); err == nil {
			ls = append(ls, l)
		} else {
			slog.Debug("no vsock listener", "err", err)
		}
	}
	if serialName != "" {
		// The port appears once the virtio_console driver has probed it.
		deadline := time.Now().Add(2 * time.Second)
		for {
			dev, err := transport.FindSerialPort("/sys", serialName)
			if err == nil {
				ls = append(ls, transport.Serial(dev))
				break
			}
			if time.Now().After(deadline) || len(ls) > 0 {
				slog.Debug("no virtio-serial listener", "err", err)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if len(ls) == 0 {
		return nil, errors.New("no transport: no unix socket given, no vsock, no virtio-serial port")
	}
	return ls, nil
}

// asyncWriter queues what is written to it and writes it to w from its
// own goroutine, so that a slow w (the serial console) does not slow the
// writers. The queue is unbounded: it is only for debug logs.
type asyncWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
}

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{ready: make(chan struct{}, 1)}
	go func() {
		var out []byte
		for range a.ready {
			a.mu.Lock()
			out = append(out[:0], a.buf.Bytes()...)
			a.buf.Reset()
			a.mu.Unlock()
			w.Write(out)
		}
	}()
	return a
}

func (a *asyncWriter) Write(b []byte) (int, error) {
	a.mu.Lock()
	a.buf.Write(b)
	a.mu.Unlock()
	select {
	case a.ready <- struct{}{}:
	default:
	}
	return len(b), nil
}
