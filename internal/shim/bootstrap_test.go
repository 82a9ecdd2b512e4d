package shim

import (
	"testing"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// decodeStart does what containerd v2.3.1's pkg/shim does with the start
// helper's stdin before it calls Manager.Start: decode it as
// BootstrapParams or, failing that (or when empty), copy the command line
// and environment into them (readBootstrapParamsFromDeprecatedFields).
func decodeStart(t *testing.T, stdin []byte, cl startCommandLine) *bootapi.BootstrapParams {
	t.Helper()
	var p bootapi.BootstrapParams
	if len(stdin) == 0 || proto.Unmarshal(stdin, &p) != nil {
		p = bootapi.BootstrapParams{
			InstanceID:             cl.ID,
			Namespace:              cl.Namespace,
			ContainerdTtrpcAddress: cl.TTRPCAddress,
			ContainerdGrpcAddress:  cl.GRPCAddress,
			ContainerdBinary:       cl.Binary,
		}
		if cl.Debug {
			p.LogLevel = bootapi.LogLevel_LOG_LEVEL_DEBUG
		}
	}
	return &p
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// anyOf is the runtime options as containerd before 2.3 wrote them to the
// start helper's stdin: a marshalled Any.
func anyOf(t *testing.T, v any) []byte {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(v)
	if err != nil {
		t.Fatal(err)
	}
	return marshal(t, &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: a.GetValue()})
}

func TestLegacyBootstrap(t *testing.T) {
	// What containerd puts on the command line and in the environment,
	// old and new alike.
	cl := startCommandLine{
		ID: "c1", Namespace: "k8s.io", Binary: "/usr/bin/containerd",
		TTRPCAddress: "/run/containerd/containerd.sock.ttrpc",
		GRPCAddress:  "/run/containerd/containerd.sock",
	}
	debugCL := cl
	debugCL.Debug = true
	socketDir := "/tmp/nb-1"
	for _, tc := range []struct {
		name   string
		stdin  []byte
		cl     startCommandLine
		legacy bool
	}{
		{"containerd 2.3", marshal(t, &bootapi.BootstrapParams{
			InstanceID: "c1", Namespace: "k8s.io", ContainerdVersion: "v2.3.1",
			ContainerdGrpcAddress: cl.GRPCAddress, ContainerdTtrpcAddress: cl.TTRPCAddress,
			ContainerdBinary: cl.Binary,
		}), cl, false},
		// containerd's shim conformance suite: no containerd_version.
		{"bootstrap without version, with socket dir", marshal(t, &bootapi.BootstrapParams{
			InstanceID: "c1", Namespace: "k8s.io", ContainerdGrpcAddress: "/tmp/x/events.sock",
			SocketDir: &socketDir,
		}), cl, false},
		{"bootstrap without version, its own address", marshal(t, &bootapi.BootstrapParams{
			InstanceID: "c1", Namespace: "k8s.io", ContainerdGrpcAddress: "/tmp/x/events.sock",
		}), cl, false},
		{"bootstrap without version, debug level of its own", marshal(t, &bootapi.BootstrapParams{
			InstanceID: "c1", Namespace: "k8s.io", ContainerdGrpcAddress: cl.GRPCAddress,
			ContainerdTtrpcAddress: cl.TTRPCAddress, ContainerdBinary: cl.Binary,
			LogLevel: bootapi.LogLevel_LOG_LEVEL_DEBUG,
		}), cl, false},
		// containerd 1.6 to 2.2 without runtime options: empty stdin.
		{"old containerd, no options", nil, cl, true},
		{"old containerd, no options, debug", nil, debugCL, true},
		// CRI's runtime options (ConfigPath) and runc's, as an Any:
		// they may decode as BootstrapParams, with nonsense in them.
		{"old containerd, CRI runtime options", anyOf(t, &runtimeoptions.Options{
			TypeUrl: "io.containerd.vc.v2", ConfigPath: "/etc/vc/shim.toml",
		}), cl, true},
		{"old containerd, runc options", anyOf(t, &runcoptions.Options{BinaryName: "runc"}), cl, true},
		{"old containerd, bare CRI options", marshal(t, &runtimeoptions.Options{
			TypeUrl: "c1", ConfigPath: "/etc/vc/shim.toml",
		}), cl, true},
		{"bootstrap for another instance", marshal(t, &bootapi.BootstrapParams{
			InstanceID: "other", Namespace: "k8s.io", ContainerdVersion: "v2.3.1",
		}), cl, true},
		{"bootstrap for another namespace", marshal(t, &bootapi.BootstrapParams{
			InstanceID: "c1", Namespace: "default", SocketDir: &socketDir,
		}), cl, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := decodeStart(t, tc.stdin, tc.cl)
			if got := legacyBootstrap(p, tc.cl); got != tc.legacy {
				t.Errorf("legacyBootstrap(%v) = %v, want %v", p, got, tc.legacy)
			}
		})
	}
}
