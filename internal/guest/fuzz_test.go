package guest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/network"
	"github.com/virtcontainers/vc/internal/guest/network/netnstest"
	"github.com/virtcontainers/vc/internal/guest/reaper"
	"github.com/virtcontainers/vc/internal/testenv"
)

// hostEffects lists the handlers that change the machine they run on,
// whatever the Agent's Config says. FuzzDecodeRequests only decodes (and
// re-encodes) their requests. Every RPC of agent.proto, health.proto and
// portforward.proto must be in exactly one of hostEffects, inNetns, blocking or none of
// them (called as is); TestRPCTable checks that the lists name real RPCs.
var hostEffects = map[string]string{
	"CreateSandbox":                  "sets the hostname, mounts storages, loads kernel modules",
	"DestroySandbox":                 "stops everything and calls Shutdown (power-off as PID 1)",
	"CreateContainer":                "mounts storages and starts container processes",
	"UpdateEphemeralMounts":          "mounts storages",
	"RemoveStaleVirtiofsShareMounts": "unmounts shares",
	"OnlineCPUMem":                   "onlines CPUs and memory through /sys",
	"ReseedRandomDev":                "writes to /dev/random",
	"MemHotplugByProbe":              "writes /sys/devices/system/memory/probe",
	"SetGuestDateTime":               "sets the system clock",
	"AddSwap":                        "enables swap",
	"ResizeVolume":                   "resizes filesystems",
	"SetIPTables":                    "runs iptables-restore, whose rules can make the host kernel load modules",
	"SetPolicy":                      "changes what the agent accepts, so later inputs would not reproduce",
	"SyncWatchedVolume":              "mounts a tmpfs under /run/vc/watched",
}

// zeroSafe are the hostEffects handlers whose zero-value request must be
// refused or do nothing; TestZeroRequests calls them.
var zeroSafe = map[string]string{
	"CreateContainer":       "no container id, no spec",
	"UpdateEphemeralMounts": "no storages",
	"ReseedRandomDev":       "no data",
	"MemHotplugByProbe":     "no addresses",
	"AddSwap":               "no PCI path",
	"ResizeVolume":          "no volume path",
	"SetPolicy":             "a fresh agent per test",
	"SetIPTables":           "no rules, in a network namespace of the test's own",
	"SyncWatchedVolume":     "no id",
}

// inNetns are the handlers that act on the network namespace: they run
// against a namespace of the test's own (guestNetwork points there, and
// the iptables tools are started from a thread inside it), or are only
// decoded when the test cannot create one (not root).
var inNetns = map[string]bool{
	"UpdateInterface": true,
	"UpdateRoutes":    true,
	"ListInterfaces":  true,
	"ListRoutes":      true,
	"AddARPNeighbors": true,
	"GetIPTables":     true,
	"SetIPTables":     true,
	// Dials the loopback of the namespace the calling thread is in: the
	// test's own, where nothing listens, not the host's.
	"ForwardDial": true,
}

// blocking are the handlers that wait for an event by design; the fuzz
// target only decodes their requests (each call would last its whole
// deadline), TestZeroRequests checks that they return when the context
// ends.
var blocking = map[string]string{
	"GetOOMEvent": "waits for a container to be OOM-killed",
}

// rpc is one method of the agent's services, bound to an Agent.
type rpc struct {
	name  string // method name
	full  string // /service/method
	input protoreflect.MessageType
	call  func(ctx context.Context, req proto.Message) (proto.Message, error)
}

// rpcTable lists every method of AgentService and Health from the
// generated descriptors, bound to a's methods of the same name.
func rpcTable(t testing.TB, a *Agent) []rpc {
	t.Helper()
	var rpcs []rpc
	av := reflect.ValueOf(a)
	for _, fd := range []protoreflect.FileDescriptor{pb.File_agent_proto, pb.File_health_proto, pb.File_portforward_proto} {
		for i := 0; i < fd.Services().Len(); i++ {
			svc := fd.Services().Get(i)
			for j := 0; j < svc.Methods().Len(); j++ {
				md := svc.Methods().Get(j)
				mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
				if err != nil {
					t.Fatalf("%s: input type %s: %v", md.FullName(), md.Input().FullName(), err)
				}
				fn := av.MethodByName(string(md.Name()))
				if !fn.IsValid() {
					t.Fatalf("Agent has no method %s", md.Name())
				}
				ft := fn.Type()
				if ft.NumIn() != 2 || ft.In(1) != reflect.TypeOf(mt.Zero().Interface()) || ft.NumOut() != 2 {
					t.Fatalf("Agent.%s has type %v, which does not take %s", md.Name(), ft, md.Input().FullName())
				}
				rpcs = append(rpcs, rpc{
					name:  string(md.Name()),
					full:  fmt.Sprintf("/%s/%s", svc.FullName(), md.Name()),
					input: mt,
					call: func(ctx context.Context, req proto.Message) (proto.Message, error) {
						out := fn.Call([]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(req)})
						resp, _ := out[0].Interface().(proto.Message)
						err, _ := out[1].Interface().(error)
						return resp, err
					},
				})
			}
		}
	}
	return rpcs
}

// fuzzEnv is an Agent confined to temporary directories (CopyFile writes
// below copyRoot) and, when run as root, to a network namespace with one
// tap link (MAC fuzzMAC).
type fuzzEnv struct {
	a        *Agent
	rpcs     []rpc
	copyRoot string
	ns       netns.NsHandle // -1 when no namespace could be made
	shut     chan struct{}
}

const fuzzMAC = "02:00:00:00:f0:01"

func newFuzzEnv(t testing.TB) *fuzzEnv {
	t.Helper()
	dir := t.TempDir()
	env := &fuzzEnv{ns: -1, shut: make(chan struct{}, 1), copyRoot: filepath.Join(dir, "copy")}
	if err := os.Mkdir(env.copyRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	env.a = New(Config{
		ContainerRoot: filepath.Join(dir, "containers"),
		SandboxRoot:   filepath.Join(dir, "sandbox"),
		CopyFileRoot:  env.copyRoot,
		Shutdown: func() {
			select {
			case env.shut <- struct{}{}:
			default:
			}
		},
	}, reaper.New()) // not started: it would reap the test's own children
	t.Cleanup(env.a.Close)
	env.rpcs = rpcTable(t, env.a)

	if os.Geteuid() != 0 {
		t.Logf("not root: the network RPCs (%s) are only decoded", strings.Join(keys(inNetns), ", "))
		return env
	}
	env.ns = netnstest.New(t)
	netnstest.AddTap(t, env.ns, "tap0", fuzzMAC)
	m, err := network.NewAt(env.ns)
	if err != nil {
		t.Fatal(err)
	}
	prev := guestNetwork
	guestNetwork = m
	t.Cleanup(func() {
		guestNetwork = prev
		m.Close()
	})
	return env
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// callTimeout bounds each call; a handler that outlives it by callGrace
// ignores its context, which fails the test.
const (
	callTimeout = 2 * time.Second
	callGrace   = 5 * time.Second
)

// invoke calls r with req, in the test's network namespace when r needs
// one, and checks the answer: no panic (the fuzzer reports those), a
// return soon after the context ends, and either an error that converts
// to a ttRPC status or a response that encodes.
func (env *fuzzEnv) invoke(t testing.TB, r rpc, req proto.Message, timeout time.Duration) (proto.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	type result struct {
		resp proto.Message
		err  error
	}
	var res result
	call := func() { res.resp, res.err = r.call(ctx, req) }
	if inNetns[r.name] {
		// Run on this goroutine, so that the iptables tools, started
		// from this thread, are in the namespace; the netlink sockets of
		// guestNetwork are in it whatever the thread.
		done := make(chan struct{})
		timer := time.AfterFunc(timeout+callGrace, func() {
			select {
			case <-done:
			default:
				panic(fmt.Sprintf("%s did not return %v after its deadline", r.full, callGrace))
			}
		})
		netnstest.Do(t, env.ns, call)
		close(done)
		timer.Stop()
	} else {
		done := make(chan struct{})
		go func() {
			defer close(done)
			call()
		}()
		select {
		case <-done:
		case <-time.After(timeout + callGrace):
			t.Fatalf("%s did not return %v after its deadline", r.full, callGrace)
		}
	}
	if res.err != nil {
		st := status.Convert(errgrpc.ToGRPC(res.err))
		if st.Code() == codes.OK {
			t.Fatalf("%s: error %v converts to status OK", r.full, res.err)
		}
		return nil, res.err
	}
	if res.resp == nil || reflect.ValueOf(res.resp).IsNil() {
		t.Fatalf("%s returned neither a response nor an error", r.full)
	}
	if _, err := proto.Marshal(res.resp); err != nil {
		t.Fatalf("%s returned a response that does not encode: %v", r.full, err)
	}
	return res.resp, nil
}

// callable tells whether the fuzz target may call r.
func (env *fuzzEnv) callable(r rpc) bool {
	if _, ok := hostEffects[r.name]; ok {
		return false
	}
	if _, ok := blocking[r.name]; ok {
		return false
	}
	if inNetns[r.name] && env.ns == -1 {
		return false
	}
	return true
}

// FuzzDecodeRequests decodes random bytes as the request of a random RPC
// and, when they decode, hands the request to the handler (unless the
// handler would change the host: see hostEffects, blocking, inNetns). It
// must find no panic and no handler that hangs or answers nonsense.
func FuzzDecodeRequests(f *testing.F) {
	env := newFuzzEnv(f)
	n := len(env.rpcs)
	if n > 256 {
		f.Fatalf("%d RPCs do not fit the fuzz target's one-byte selector", n)
	}
	runtimeSeeds := map[string][]proto.Message{
		"CopyFile": {
			&pb.CopyFileRequest{Path: env.copyRoot + "/d/f", FileSize: 4, Data: []byte("data"), FileMode: 0o644},
			&pb.CopyFileRequest{Path: env.copyRoot + "/l", Data: []byte("d/f"), FileMode: unix.S_IFLNK | 0o777},
		},
	}
	for i, r := range env.rpcs {
		f.Add(uint8(i), []byte{})
		for _, seed := range append(seeds[r.name], runtimeSeeds[r.name]...) {
			b, err := proto.Marshal(seed)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), b)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		r := env.rpcs[int(which)%n]
		req := r.input.New().Interface()
		if err := proto.Unmarshal(data, req); err != nil {
			return
		}
		if _, err := proto.Marshal(req); err != nil {
			t.Fatalf("%s: a decoded request does not encode again: %v", r.full, err)
		}
		if !env.callable(r) {
			return
		}
		env.invoke(t, r, req, callTimeout)
	})
}

// seeds are well-formed requests that reach past validation.
var seeds = map[string][]proto.Message{
	"UpdateInterface": {
		&pb.UpdateInterfaceRequest{Interface: &pb.Interface{
			HwAddr: fuzzMAC, Name: "eth0", Mtu: 1400,
			IPAddresses: []*pb.IPAddress{{Address: "10.0.0.2", Mask: "24"}, {Family: pb.IPFamily_v6, Address: "fd00::2", Mask: "64"}},
		}},
	},
	"UpdateRoutes": {
		&pb.UpdateRoutesRequest{Routes: &pb.Routes{Routes: []*pb.Route{
			{Dest: "10.0.0.0/24", Device: "eth0", Scope: 253},
			{Gateway: "10.0.0.1", Device: "eth0"},
			{Dest: "fd00::/64", Device: "eth0", Family: pb.IPFamily_v6},
		}}},
	},
	"AddARPNeighbors": {
		&pb.AddARPNeighborsRequest{Neighbors: &pb.ARPNeighbors{ARPNeighbors: []*pb.ARPNeighbor{
			{ToIPAddress: &pb.IPAddress{Address: "10.0.0.9"}, Device: "eth0", Lladdr: "02:00:00:00:00:09"},
		}}},
	},
	"GetIPTables":    {&pb.GetIPTablesRequest{IsIpv6: true}},
	"SignalProcess":  {&pb.SignalProcessRequest{ContainerId: "c1", ExecId: "e1", Signal: 15}},
	"WaitProcess":    {&pb.WaitProcessRequest{ContainerId: "c1"}},
	"ReadStdout":     {&pb.ReadStreamRequest{ContainerId: "c1", Len: 1024}},
	"WriteStdin":     {&pb.WriteStreamRequest{ContainerId: "c1", Data: []byte("x")}},
	"GetVolumeStats": {&pb.VolumeStatsRequest{VolumeGuestPath: "/nonexistent"}},
}

// TestRPCTable checks that the fuzz target knows every RPC and that its
// lists name only real ones.
func TestRPCTable(t *testing.T) {
	rpcs := rpcTable(t, New(Config{ContainerRoot: t.TempDir(), SandboxRoot: t.TempDir()}, reaper.New()))
	names := map[string]bool{}
	for _, r := range rpcs {
		names[r.name] = true
	}
	if !names["UpdateInterface"] || !names["Check"] || len(rpcs) < 40 {
		t.Fatalf("the RPC table has %d entries: %v", len(rpcs), names)
	}
	for list, m := range map[string][]string{
		"hostEffects": keys(hostEffects), "zeroSafe": keys(zeroSafe), "inNetns": keys(inNetns), "blocking": keys(blocking),
	} {
		for _, k := range m {
			if !names[k] {
				t.Errorf("%s names %s, which is no RPC", list, k)
			}
		}
	}
	for k := range zeroSafe {
		if _, ok := hostEffects[k]; !ok {
			t.Errorf("zeroSafe names %s, which is not in hostEffects", k)
		}
	}
}

// TestZeroRequests calls every handler once with a zero-value request
// (but those in hostEffects and not in zeroSafe): none may panic or hang;
// each returns an error or a response that encodes. The network handlers'
// answers are checked in full: they have been written with this test.
func TestZeroRequests(t *testing.T) {
	env := newFuzzEnv(t)
	for _, r := range env.rpcs {
		t.Run(r.name, func(t *testing.T) {
			if why, ok := hostEffects[r.name]; ok {
				if _, safe := zeroSafe[r.name]; !safe {
					t.Skipf("not called: it %s", why)
				}
			}
			if inNetns[r.name] && env.ns == -1 {
				testenv.Skip(t, "not called: needs root for a network namespace")
			}
			timeout := callTimeout
			if _, ok := blocking[r.name]; ok {
				timeout = 200 * time.Millisecond
			}
			start := time.Now()
			resp, err := env.invoke(t, r, r.input.New().Interface(), timeout)
			if _, ok := blocking[r.name]; ok && err == nil {
				t.Errorf("blocking RPC answered %v to a zero request with nothing to wait for", resp)
			}
			if err != nil {
				t.Logf("took %v: %v", time.Since(start).Round(time.Millisecond), errgrpc.ToGRPC(err))
			} else {
				msg := fmt.Sprint(resp)
				if len(msg) > 200 {
					msg = msg[:200] + "..."
				}
				t.Logf("took %v: response %s", time.Since(start).Round(time.Millisecond), msg)
			}
			if want, ok := zeroNetwork[r.name]; ok {
				if got := status.Code(errgrpc.ToGRPC(err)); got != want {
					t.Errorf("%s: %v, want code %v", r.name, err, want)
				}
			}
		})
	}
	select {
	case <-env.shut:
		t.Error("a zero request made the agent shut down")
	default:
	}
}

// zeroNetwork is what the network handlers answer a zero request.
var zeroNetwork = map[string]codes.Code{
	"UpdateInterface": codes.InvalidArgument, // no interface
	"UpdateRoutes":    codes.InvalidArgument, // no routes
	"AddARPNeighbors": codes.InvalidArgument, // no neighbours
	"ListInterfaces":  codes.OK,
	"ListRoutes":      codes.OK,
	"GetIPTables":     codes.OK,
	"SetIPTables":     codes.OK, // empty rules: nothing to do
}
