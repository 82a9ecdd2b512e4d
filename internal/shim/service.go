// Package shim is the containerd task service of containerd-shim-vc-v2:
// one shim process per pod (sandbox), which owns the pod's VM through
// pkg/vc and runs each of containerd's tasks as a container in it.
package shim

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cdshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/errdefs"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	"github.com/containerd/ttrpc"

	"github.com/virtcontainers/vc/internal/tracing"
	"github.com/virtcontainers/vc/pkg/vc"
	vcowner "github.com/virtcontainers/vc/pkg/vc/owner"
)

// Register adds the task service to the shim library's plugins; call it
// before RunShim.
func Register() {
	registry.Register(&plugin.Registration{
		Type:     plugins.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugins.EventPlugin, plugins.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (any, error) {
			pp, err := ic.GetByID(plugins.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			sd, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			return NewService(ic.Context, pp.(cdshim.Publisher), sd.(shutdown.Service))
		},
	})
}

// Service is the task service (API v3, and v2 for containerd 1.x).
type Service struct {
	ctx       context.Context
	ns        string
	cfg       Config
	sd        shutdown.Service
	publisher cdshim.Publisher
	events    chan any
	log       *slog.Logger

	// createMu serializes Create: a pod's sandbox boots before its
	// containers are created.
	createMu sync.Mutex

	mu         sync.Mutex
	containers map[string]*container
	sandbox    *vc.Sandbox
	vmPid      uint32
	portFwd    *portForward   // portforward.go; nil without a pod netns
	loopback   *loopbackShare // loopback.go; nil unless shared
}

var (
	_ taskAPI.TTRPCTaskService = (*Service)(nil)
	_ cdshim.TTRPCService      = (*Service)(nil)
)

// NewService makes the task service of a shim process.
func NewService(ctx context.Context, publisher cdshim.Publisher, sd shutdown.Service) (*Service, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	setupLogging(ctx)
	cfg, err := LoadConfig()
	if err != nil {
		return nil, err
	}
	shutdownTracing, err := tracing.Setup(ctx, cfg.Tracing, "containerd-shim-vc-v2")
	if err != nil {
		return nil, fmt.Errorf("shim config: tracing: %w", err)
	}
	s := &Service{
		ctx:        ctx,
		ns:         ns,
		cfg:        cfg,
		sd:         sd,
		publisher:  publisher,
		events:     make(chan any, 128),
		log:        slog.Default().With("namespace", ns),
		containers: map[string]*container{},
	}
	go s.forward()
	// The shim owns the VM: nothing could reach it after the shim is
	// gone, so it goes with the shim.
	sd.RegisterCallback(func(ctx context.Context) error {
		s.destroySandbox(ctx)
		shutdownTracing(ctx) // after the sandbox's last spans
		return nil
	})
	if address, err := cdshim.ReadAddress("address"); err == nil {
		sd.RegisterCallback(func(context.Context) error { return cdshim.RemoveSocket(address) })
	}
	s.log.Info("shim started", "pid", os.Getpid(), "state_root", cfg.StateRoot)
	return s, nil
}

// setupLogging sends log/slog to the shim's log (standard error, which
// the shim library connected to containerd's log FIFO).
func setupLogging(ctx context.Context) {
	level := slog.LevelInfo
	if o, ok := ctx.Value(cdshim.OptsKey{}).(cdshim.Opts); ok && o.Debug {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("runtime", "io.containerd.vc.v2"))
}

// RegisterTTRPC serves task API v3 (containerd 2.x) and v2 (containerd
// 1.x) on the shim's socket.
func (s *Service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	taskv2.RegisterTTRPCTaskService(server, &v2Service{s: s})
	return nil
}

// send queues an event; events go out in the order they were sent.
func (s *Service) send(e any) {
	select {
	case s.events <- e:
	case <-s.sd.Done():
	}
}

func (s *Service) forward() {
	ctx := namespaces.WithNamespace(context.Background(), s.ns)
	publish := func(e any) {
		if err := s.publisher.Publish(ctx, runtime.GetTopic(e), e); err != nil {
			s.log.Error("publish event", "topic", runtime.GetTopic(e), "err", err)
		}
	}
	for {
		select {
		case e := <-s.events:
			publish(e)
		case <-s.sd.Done():
			for {
				select {
				case e := <-s.events:
					publish(e)
				default:
					s.publisher.Close()
					return
				}
			}
		}
	}
}

// pid is what containerd is told a task's pid is: the VM's process, the
// one host process that runs every container of the pod (as Kata does).
func (s *Service) pid() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.vmPid
}

func (s *Service) getContainer(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.containers[id]
	if c == nil {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// config is the configuration in force: the sandbox's once it booted.
func (s *Service) config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

func (s *Service) getSandbox() *vc.Sandbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sandbox
}

// watchSandbox follows the VM: OOM events become TaskOOM, and the VM's
// end is logged (every process's wait then fails and reports its exit).
// It also starts serving kubectl port-forward into the pod, and shares
// the guest's loopback with the host's when shareLoopback.
func (s *Service) watchSandbox(sb *vc.Sandbox, shareLoopback bool) {
	if pf := startPortForward(sb, sb.Status().Config.NetNS, s.log.With("sandbox", sb.ID())); pf != nil {
		s.mu.Lock()
		s.portFwd = pf
		s.mu.Unlock()
	}
	if shareLoopback {
		l := startLoopbackShare(sb, s.log.With("sandbox", sb.ID()))
		s.mu.Lock()
		s.loopback = l
		s.mu.Unlock()
	}
	go func() {
		<-sb.Exited()
		if s.getSandbox() == sb {
			// Not stopped by the shim: it died.
			s.log.Warn("the sandbox's VM exited", "sandbox", sb.ID(), "reason", sb.Status().StopReason)
			return
		}
		s.log.Debug("the sandbox's VM exited", "sandbox", sb.ID())
	}()
	go func() {
		for {
			cid, err := sb.GetOOMEvent(context.Background())
			if err != nil {
				select {
				case <-sb.Exited():
					return
				case <-s.sd.Done():
					return
				case <-time.After(time.Second):
				}
				if errdefs.IsFailedPrecondition(err) {
					// The sandbox was stopped.
					return
				}
				s.log.Debug("oom event", "err", err)
				continue
			}
			s.oomFromEvent(cid)
		}
	}()
}

// destroySandbox stops and removes the VM and its state, if the shim
// still has one.
func (s *Service) destroySandbox(ctx context.Context) {
	s.mu.Lock()
	sb := s.sandbox
	s.sandbox = nil
	pf := s.portFwd
	s.portFwd = nil
	lb := s.loopback
	s.loopback = nil
	s.mu.Unlock()
	pf.close()
	lb.close()
	if sb == nil {
		return
	}
	vcowner.Teardown(ctx, sb, s.config().StopTimeout.Duration, true, s.log)
	s.log.Info("sandbox removed", "sandbox", sb.ID())
}
