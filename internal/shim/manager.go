package shim

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cdshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/virtcontainers/vc/internal/shim/annotations"
	"github.com/virtcontainers/vc/pkg/vc"
)

// RuntimeName is the runtime's name in containerd.
const RuntimeName = "io.containerd.vc.v2"

// Manager starts shim processes and cleans up after dead ones.
type Manager struct{}

var _ cdshim.Shim = Manager{}

// NewManager returns the shim manager.
func NewManager() Manager { return Manager{} }

// Name is the runtime name.
func (Manager) Name() string { return RuntimeName }

// groupID is the id of the shim a container runs in: its sandbox's (the
// sandbox's own id for the container that boots it), so a pod's
// containers share one shim process, and its socket address follows
// from the sandbox id.
func groupID(id string, ann map[string]string) (string, error) {
	_, sid, err := annotations.ContainerTypeOf(id, ann)
	if err != nil {
		return "", fmt.Errorf("container %s: %w", id, err)
	}
	return sid, nil
}

// bundleAnnotations reads the annotations of the bundle's config.json.
func bundleAnnotations(bundle string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var s struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(bundle, "config.json"), err)
	}
	return s.Annotations, nil
}

// Start finds or starts the shim process of the container's sandbox and
// returns its address. It runs in the bundle directory.
func (m Manager) Start(ctx context.Context, params *bootapi.BootstrapParams) (_ *bootapi.BootstrapResult, retErr error) {
	legacy := legacyBootstrap(params, commandLine())
	id := params.GetInstanceID()
	if legacy {
		// A containerd older than 2.3 sent the runtime options, if any,
		// not bootstrap parameters: take what it said on the command line.
		// Nothing else of what stdin decoded to holds.
		id = flagValue("id")
		params.ContainerdGrpcAddress = flagValue("address")
		params.ContainerdTtrpcAddress = os.Getenv("TTRPC_ADDRESS")
		params.SocketDir = nil
	}
	if id == "" {
		return nil, fmt.Errorf("shim start: no container id: %w", errdefs.ErrInvalidArgument)
	}
	bundle, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	ann, err := bundleAnnotations(bundle)
	if err != nil {
		return nil, fmt.Errorf("shim start: %w", err)
	}
	group, err := groupID(id, ann)
	if err != nil {
		return nil, err
	}
	socketDir := params.GetSocketDir()
	if socketDir == "" {
		socketDir = filepath.Join(defaults.DefaultStateDir, "s")
	}
	address, err := cdshim.CreateSocketAddress(ctx, socketDir, params.GetContainerdGrpcAddress(), group, false)
	if err != nil {
		return nil, err
	}
	result := &bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc", Address: address}

	socket, err := cdshim.NewSocket(address)
	if err != nil {
		if !cdshim.SocketEaddrinuse(err) {
			return nil, fmt.Errorf("shim socket %s: %w", address, err)
		}
		if cdshim.CanConnect(address) {
			// The sandbox's shim runs: the container joins it.
			return m.reply(legacy, result)
		}
		// Left by a shim that died.
		if err := cdshim.RemoveSocket(address); err != nil {
			return nil, fmt.Errorf("remove stale shim socket: %w", err)
		}
		if socket, err = cdshim.NewSocket(address); err != nil {
			return nil, fmt.Errorf("shim socket %s: %w", address, err)
		}
	}
	defer func() {
		if retErr != nil {
			socket.Close()
			cdshim.RemoveSocket(address)
		}
	}()
	f, err := socket.File()
	if err != nil {
		return nil, err
	}
	defer f.Close()

	// A broken configuration fails here, where containerd shows the
	// error, rather than in the shim process it would start.
	if _, err := LoadConfig(); err != nil {
		return nil, err
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-id", id, "-address", params.GetContainerdGrpcAddress()}
	debug := params.GetLogLevel() <= bootapi.LogLevel_LOG_LEVEL_DEBUG
	if legacy {
		debug = flagValue("debug") == "true"
	}
	if debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = bundle
	// One P: the shim only copies streams and waits on the agent, and
	// each P costs memory (its caches, its GC worker).
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	if params.GetContainerdTtrpcAddress() != "" {
		cmd.Env = append(cmd.Env, "TTRPC_ADDRESS="+params.GetContainerdTtrpcAddress())
	}
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start shim: %w", err)
	}
	defer func() {
		if retErr != nil {
			cmd.Process.Kill()
		}
	}()
	go cmd.Wait()
	if err := cdshim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		return nil, fmt.Errorf("shim oom score: %w", err)
	}
	return m.reply(legacy, result)
}

// startCommandLine is what the shim library knows of a start request
// besides stdin: its flags and the environment containerd set.
type startCommandLine struct {
	ID, Namespace, Binary string
	TTRPCAddress          string
	GRPCAddress           string
	Debug                 bool
}

// commandLine reads the flags the shim library parsed and the environment.
func commandLine() startCommandLine {
	return startCommandLine{
		ID:           flagValue("id"),
		Namespace:    flagValue("namespace"),
		Binary:       flagValue("publish-binary"),
		TTRPCAddress: os.Getenv("TTRPC_ADDRESS"),
		GRPCAddress:  os.Getenv("GRPC_ADDRESS"),
		Debug:        flagValue("debug") == "true",
	}
}

// legacyBootstrap tells, from the fields of the start request, whether it
// came from a containerd older than 2.3. Those write the runtime options
// (or nothing) to the start helper's stdin, not bootstrap parameters, and
// read its stdout as a bare socket address rather than a BootstrapResult.
//
// The shim library decodes stdin as BootstrapParams and only when that
// fails copies the command line and environment into them. So:
//
//   - instance_id empty, or instance_id or namespace other than the
//     command line's: stdin held something else (runtime options decode
//     too: their type_url lands in instance_id, config_path in namespace);
//   - a field only the bootstrap protocol carries (containerd_version,
//     socket_dir), or one that differs from the library's copy of the
//     command line (an address, the binary, the log level): stdin held
//     bootstrap parameters;
//   - otherwise the parameters are exactly that copy: an older containerd.
//
// containerd_version alone decides nothing: a bootstrap request may leave
// it out (containerd's shim conformance suite does).
func legacyBootstrap(p *bootapi.BootstrapParams, cl startCommandLine) bool {
	if p.GetInstanceID() == "" ||
		(cl.ID != "" && p.GetInstanceID() != cl.ID) ||
		(cl.Namespace != "" && p.GetNamespace() != cl.Namespace) {
		return true
	}
	if p.GetContainerdVersion() != "" || p.SocketDir != nil {
		return false
	}
	copied := bootapi.LogLevel_LOG_LEVEL_INFO
	if cl.Debug {
		copied = bootapi.LogLevel_LOG_LEVEL_DEBUG
	}
	fromStdin := p.GetContainerdTtrpcAddress() != cl.TTRPCAddress ||
		p.GetContainerdGrpcAddress() != cl.GRPCAddress ||
		p.GetContainerdBinary() != cl.Binary ||
		p.GetLogLevel() != copied
	return !fromStdin
}

// reply records the address in the bundle and answers containerd. A
// containerd 2.3 or later reads the bootstrap result the shim library
// prints. Older ones (1.6 to 2.2) read stdout as the socket address, which
// they then speak task API v2 to (this shim serves both): the address is
// printed here and the start helper ends at once.
func (Manager) reply(legacy bool, result *bootapi.BootstrapResult) (*bootapi.BootstrapResult, error) {
	// containerd 1.x finds a running shim again through this file.
	if err := os.WriteFile("address", []byte(result.Address), 0o600); err != nil {
		return nil, fmt.Errorf("write address file: %w", err)
	}
	if legacy {
		if _, err := io.WriteString(os.Stdout, result.Address); err != nil {
			return nil, err
		}
		os.Exit(0)
	}
	return result, nil
}

// flagValue is a command line flag the shim library parsed.
func flagValue(name string) string {
	if f := flag.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// Stop is `shim delete`: containerd cleans up after a shim that is gone
// (or a task whose shim it cannot reach). From the state on disk it stops
// the VM of a container that booted one and removes the sandbox's state,
// or removes a pod container from its sandbox; either way the rootfs
// mounts in the bundle go.
func (m Manager) Stop(ctx context.Context, id string) (cdshim.StopStatus, error) {
	setupLogging(ctx)
	status := cdshim.StopStatus{ExitedAt: time.Now(), ExitStatus: 128 + int(syscall.SIGKILL)}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return status, err
	}
	bundle := ""
	if o, ok := ctx.Value(cdshim.OptsKey{}).(cdshim.Opts); ok {
		bundle = o.BundlePath
	}
	if bundle == "" {
		if bundle, err = os.Getwd(); err != nil {
			return status, err
		}
	}
	cfg, err := LoadConfig()
	if err != nil {
		slog.Warn("shim delete: bad configuration; using the defaults", "err", err)
		cfg = DefaultConfig()
	}
	if b, err := os.ReadFile(filepath.Join(bundle, stateRootFile)); err == nil && filepath.IsAbs(string(b)) {
		cfg.StateRoot = string(b)
	}
	log := slog.Default().With("namespace", ns, "container", id)
	ann, err := bundleAnnotations(bundle)
	if err != nil {
		log.Warn("shim delete: no spec in the bundle; taking the container for a sandbox", "bundle", bundle, "err", err)
	}
	typ, sid, err := annotations.ContainerTypeOf(id, ann)
	if err != nil {
		typ, sid = annotations.SingleContainer, id
	}
	log = log.With("sandbox", sid)
	sb, err := vc.FetchSandbox(ctx, cfg.StateRoot, sid)
	switch {
	case err != nil && !errdefs.IsNotFound(err):
		log.Warn("shim delete: sandbox state", "err", err)
	case err != nil:
		log.Debug("shim delete: no sandbox state")
	case sb.Status().Config.Annotations[annNamespace] != ns:
		log.Warn("shim delete: the sandbox belongs to another containerd namespace; left alone", "its_namespace", sb.Status().Config.Annotations[annNamespace])
		sb.Close()
	default:
		status.Pid = sb.Status().VMPid
		cleanupSandbox(ctx, log, sb, typ, id, cfg.StopTimeout.Duration)
	}
	if err := unmountRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		log.Warn("shim delete: unmount rootfs", "err", err)
	}
	return status, nil
}

// cleanupSandbox does Stop's work on a sandbox found on disk.
func cleanupSandbox(ctx context.Context, log *slog.Logger, sb *vc.Sandbox, typ annotations.ContainerType, id string, timeout time.Duration) {
	defer sb.Close()
	if typ.BootsVM() {
		removeLeftPortForward(log, sb)
		if err := sb.Stop(ctx, timeout); err != nil {
			log.Warn("shim delete: stop sandbox", "err", err)
		}
		if err := sb.Delete(ctx); err != nil {
			log.Warn("shim delete: delete sandbox", "err", err)
			return
		}
		log.Info("shim delete: sandbox removed")
		return
	}
	if _, err := sb.Container(id).Status(ctx); err != nil {
		return
	}
	if err := sb.Container(id).Stop(ctx, time.Second); err != nil {
		log.Warn("shim delete: stop container", "err", err)
	}
	if err := sb.Container(id).Delete(ctx); err != nil {
		log.Warn("shim delete: delete container", "err", err)
		return
	}
	log.Info("shim delete: container removed")
}

// Info describes the runtime.
// Its features are the OCI runtime features of a container in a VM,
// encoded as containerd-shim-runc-v2 encodes runc's, so that containerd
// (CRI, the task manager) enables what the runtime supports.
func (m Manager) Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error) {
	feat, err := typeurl.MarshalAnyToProto(ociFeatures())
	if err != nil {
		return nil, fmt.Errorf("runtime info: features: %w", err)
	}
	return &types.RuntimeInfo{
		Name: m.Name(),
		Annotations: map[string]string{
			"io.virtcontainers.annotations": fmt.Sprint(annotations.KnownAnnotations()),
			allowMountsAnnotation:           allowedMounts,
		},
		Features: feat,
	}, nil
}

// allowMountsAnnotation, in a runtime's Info, lists the mount types the
// shim activates itself: containerd's task manager then leaves them to it
// rather than activating them in the daemon (core/runtime/v2,
// runtime-allow-mounts).
const allowMountsAnnotation = "containerd.io/runtime-allow-mounts"

// allowedMounts are the erofs snapshotter's layers and the mount manager's
// format and mkdir transforms, which prepareRootfs activates. (mkfs is
// left to containerd; so are erofs layers it verifies with dm-verity,
// whose option prepareRootfs refuses.)
const allowedMounts = "erofs,format/*,mkdir/*"
