package shimtest

import (
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/guestimage"
	"github.com/virtcontainers/vc/pkg/vc"
)

func crcOf(s string) string {
	return fmt.Sprintf("%08x", crc32.Checksum([]byte(s), crc32.MakeTable(crc32.Castagnoli)))
}

// testBinDir is where hack/install-containerd.sh puts containerd's
// binaries (VC_TEST_BIN).
func testBinDir() string {
	if d := os.Getenv("VC_TEST_BIN"); d != "" {
		return d
	}
	return "/usr/local/lib/vc-test/bin"
}

// dataRoot holds the guest images the tests build (shared with the
// containerd tests).
func dataRoot() string {
	if d := os.Getenv("VC_TEST_DATA_ROOT"); d != "" {
		return d
	}
	return "/var/lib/vc-test"
}

func TestMain(m *testing.M) {
	code := m.Run()
	// The images are shared by every test of the binary.
	if testImages.dir != "" {
		os.RemoveAll(filepath.Dir(testImages.dir))
	}
	os.Exit(code)
}

// TestShim runs the conformance suites against containerd-shim-runc-v2
// (the harness's proof) and containerd-shim-vc-v2.
func TestShim(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: the shims mount root filesystems and make containers")
	}
	if testing.Short() {
		t.Skip("boots a VM per test under TCG (about two minutes): not in -short")
	}
	t.Run("runc", func(t *testing.T) {
		p := runcProfile(t)
		runSuites(t, p)
	})
	t.Run("vc", func(t *testing.T) {
		p := vcProfile(t, true)
		runSuites(t, p)
		p.after(t)
	})
}

// TestHostLoopbackOff: without host_loopback (the default), a container
// without a network namespace reaches no server of the host's loopback:
// not at its own 127.0.0.1, and not at the NAT's gateway, which
// QEMU's libslirp maps to the host's loopback. The host sees no
// connection. A listener of the container's is served on the host's
// 127.0.0.1 all the same.
func TestHostLoopbackOff(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: the shim mounts root filesystems and makes containers")
	}
	if testing.Short() {
		t.Skip("boots a VM under TCG: not in -short")
	}
	p := vcProfile(t, false)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	tk := newTask(t, p, []string{"/bin/forever"})
	out := newOutput(t, tk.bundle, "stdout")
	errOut := newOutput(t, tk.bundle, "stderr")
	tk.createStart("", out.path, errOut.path)
	for i, host := range []string{"127.0.0.1", vc.NATGateway.String()} {
		code, got := tk.exec(fmt.Sprintf("nc%d", i), "/bin/nc", host, port)
		if code == 0 {
			t.Errorf("nc %s %s in the container: exit 0 (%q), want a refused connection", host, port, got)
		}
	}
	select {
	case c := <-conns:
		t.Errorf("the host's 127.0.0.1:%s accepted a connection from %s", port, c.RemoteAddr())
		c.Close()
	default:
	}

	// Inbound does not need the option. A listener that says nothing:
	// the time from its exec's start to the host's first connection is
	// the agent's detection (its poll) plus nc's start and one agent
	// call.
	free, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inPort := strconv.Itoa(free.Addr().(*net.TCPAddr).Port)
	free.Close()
	dir := t.TempDir()
	ncOut := newOutput(t, dir, "stdout")
	ncErr := newOutput(t, dir, "stderr")
	tk.execStart("listen", "", ncOut.path, ncErr.path, "/bin/nc", "-l", inPort)
	started := time.Now()
	var c net.Conn
	for c == nil {
		if c, err = net.Dial("tcp4", "127.0.0.1:"+inPort); err != nil && time.Since(started) > 15*time.Second {
			t.Fatalf("the container's listener on port %s is not served on the host's 127.0.0.1 after 15 s: %v", inPort, err)
		}
		if c == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("the container's listener served on the host's 127.0.0.1 %v after its exec started", time.Since(started).Round(time.Millisecond))
	io.WriteString(c, "inbound-ok\n")
	c.Close()
	ncOut.waitFor(t, "inbound-ok", 10*time.Second)
	tk.stop()
	p.after(t)
}

// runcProfile is containerd's runc shim v2.3.1 with runc v1.4.3, as
// hack/install-containerd.sh builds them: containerd hands it the rootfs
// as the overlayfs snapshotter does (its mount manager activates formatted
// mounts before runc's shim sees them).
func runcProfile(t *testing.T) *profile {
	bin := filepath.Join(testBinDir(), "containerd-shim-runc-v2")
	if _, err := os.Stat(bin); err != nil {
		testenv.Skipf(t, "no %s (make containerd installs it): %v", bin, err)
	}
	if _, err := os.Stat(filepath.Join(testBinDir(), "runc")); err != nil {
		testenv.Skipf(t, "no runc in %s (make containerd installs it): %v", testBinDir(), err)
	}
	return &profile{
		name: "runc",
		bin:  bin,
		skip: map[string]string{
			"Layers/HundredLayers": "runc's shim mounts its rootfs with mount.All, which refuses the mount manager's formats: containerd activates them for it",
		},
	}
}

// vcProfile is containerd-shim-vc-v2 built as `make build` builds it, on
// the guest image of the agent under test, under TCG. Its rootfs comes
// as the mount manager's formats (an ext4 scratch image, erofs layers,
// format/mkdir/overlay), which the shim activates, as nerdbox's profile of
// containerd/shimtest does.
func vcProfile(t *testing.T, hostLoopback bool) *profile {
	agent := testutil.AgentBinary(t)
	shim, err := testutil.Build("containerd-shim-vc-v2", "./cmd/containerd-shim-vc-v2", []string{"CGO_ENABLED=0"}, "-tags", "grpcnotrace")
	if err != nil {
		t.Fatalf("build containerd-shim-vc-v2: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	img, err := guestimage.Build(ctx, guestimage.Options{Agent: agent, Root: filepath.Join(dataRoot(), "images")})
	if err != nil {
		t.Fatalf("guest image: %v", err)
	}
	// Short: QEMU's sockets live in <state root>/<sandbox id>/vm.
	stateRoot := "/run/vc-st/" + randomHex()
	cfg := filepath.Join(t.TempDir(), "vc-shim.toml")
	// host_loopback: the Net suite's servers listen on the host's
	// 127.0.0.1, which a container without a network namespace reaches
	// only with it (off by default, docs/containerd.md).
	toml := fmt.Sprintf("state_root = %q\ndata_root = %q\nkernel = %q\ninitrd = %q\naccel = \"tcg\"\nstop_timeout = \"5s\"\nhost_loopback = %v\n",
		stateRoot, dataRoot(), img.Kernel, img.Initrd, hostLoopback)
	if err := os.WriteFile(cfg, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever a failed test left: VMs, state.
		ents, _ := os.ReadDir(stateRoot)
		for _, e := range ents {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			vc.StopSandbox(ctx, stateRoot, e.Name(), 5*time.Second)
			cancel()
		}
		os.RemoveAll(stateRoot)
	})
	return &profile{
		name:         "vc",
		bin:          shim,
		env:          []string{"VC_SHIM_CONFIG=" + cfg},
		formatMounts: true,
		after: func(t *testing.T) {
			var left []string
			ents, _ := os.ReadDir(stateRoot)
			for _, e := range ents {
				left = append(left, "state "+e.Name())
			}
			for _, pid := range proc.Find(func(args []string) bool {
				return strings.Contains(filepath.Base(args[0]), "qemu-system") && strings.Contains(strings.Join(args, " "), stateRoot+"/")
			}) {
				left = append(left, fmt.Sprintf("qemu pid %d", pid))
			}
			if len(left) > 0 {
				t.Errorf("left behind by the vc shim: %s", strings.Join(left, ", "))
			}
		},
	}
}
