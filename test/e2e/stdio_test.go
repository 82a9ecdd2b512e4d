package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// gateWriter blocks its writes until open is closed, then keeps them.
type gateWriter struct {
	open chan struct{}
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (g *gateWriter) Write(p []byte) (int, error) {
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

// TestStdioDataPort: process stdio over the data port (the owner of a VM
// with one): per-stream order with both streams busy, a reader that
// stops holding back its own process only, stdin to EOF, large output
// whole.
func TestStdioDataPort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: "e2e-dataport", StateRoot: stateRoot,
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", MemoryMiB: 256}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.Stop(context.Background(), 5*time.Second)
		if err := s.Delete(context.Background()); err != nil {
			t.Errorf("delete: %v", err)
		}
		noLeftovers(t, "e2e-dataport")
	}()
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "c", Rootfs: root, Spec: oci.DefaultSpec([]string{"sleep", "1000"}, nil, "/", false)}); err != nil {
		t.Fatal(err)
	}
	c := s.Container("c")
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.StdioOverDataPort(ctx) {
		t.Fatal("stdio goes over the RPCs: the data port did not answer")
	}
	exec := func(id string, args ...string) {
		t.Helper()
		if err := c.Exec(ctx, id, &specs.Process{Args: args, Cwd: "/", Env: oci.DefaultEnv}); err != nil {
			t.Fatalf("exec %s: %v", id, err)
		}
	}
	finish := func(id string, streams <-chan error) {
		t.Helper()
		code, err := c.WaitProcess(ctx, id)
		if err != nil || code != 0 {
			t.Fatalf("%s: wait: %d %v", id, code, err)
		}
		if err := <-streams; err != nil {
			t.Fatalf("%s: streams: %v", id, err)
		}
	}

	t.Run("order", func(t *testing.T) {
		// The same 30000 lines on both streams at once.
		exec("order", "sh", "-c", "seq 1 30000 | tee /dev/stderr")
		var out, errOut bytes.Buffer
		finish("order", c.IOStream(ctx, "order", vc.IO{Stdout: &out, Stderr: &errOut}))
		var want strings.Builder
		for i := 1; i <= 30000; i++ {
			fmt.Fprintf(&want, "%d\n", i)
		}
		if out.String() != want.String() {
			t.Errorf("stdout: %d bytes, want %d lines of seq (%d bytes)", out.Len(), 30000, want.Len())
		}
		if errOut.String() != want.String() {
			t.Errorf("stderr: %d bytes, want %d lines of seq (%d bytes)", errOut.Len(), 30000, want.Len())
		}
	})

	t.Run("stalled reader", func(t *testing.T) {
		// 16 MiB to a reader that does not read: it fills its window
		// and the pipe, and must not hold back another process.
		exec("stalled", "dd", "if=/dev/zero", "bs=64k", "count=256")
		gate := &gateWriter{open: make(chan struct{})}
		stalled := c.IOStream(ctx, "stalled", vc.IO{Stdout: gate, Stderr: io.Discard})
		exec("other", "sh", "-c", "seq 1 100000")
		var out bytes.Buffer
		done := make(chan struct{})
		go func() {
			defer close(done)
			finish("other", c.IOStream(ctx, "other", vc.IO{Stdout: &out}))
		}()
		select {
		case <-done:
		case <-time.After(3 * time.Minute):
			close(gate.open)
			t.Fatal("another process's output waited for the stalled reader")
		}
		if n := strings.Count(out.String(), "\n"); n != 100000 || !strings.HasSuffix(out.String(), "\n100000\n") {
			t.Errorf("the other process: %d lines (want 100000), ends %q", n, out.String()[max(0, out.Len()-20):])
		}
		close(gate.open)
		finish("stalled", stalled)
		if gate.buf.Len() != 16<<20 || bytes.ContainsFunc(gate.buf.Bytes(), func(r rune) bool { return r != 0 }) {
			t.Errorf("the stalled reader got %d bytes, want 16 MiB of zeros", gate.buf.Len())
		}
	})

	t.Run("stdin", func(t *testing.T) {
		// Through the process and back, then EOF ends it.
		in := make([]byte, 4<<20+123)
		for i := range in {
			in[i] = byte(i % 251)
		}
		exec("stdin", "cat")
		var out bytes.Buffer
		finish("stdin", c.IOStream(ctx, "stdin", vc.IO{Stdin: bytes.NewReader(in), Stdout: &out, Stderr: io.Discard}))
		if !bytes.Equal(out.Bytes(), in) {
			t.Errorf("cat gave back %d bytes, want the %d given, equal", out.Len(), len(in))
		}
	})

	t.Run("exited before read", func(t *testing.T) {
		// Output written before anyone reads stays in the pipe until
		// the reader comes, after the process has ended.
		exec("early", "sh", "-c", "echo early-out; echo early-err >&2")
		if code, err := c.WaitProcess(ctx, "early"); err != nil || code != 0 {
			t.Fatalf("wait: %d %v", code, err)
		}
		var out, errOut bytes.Buffer
		if err := <-c.IOStream(ctx, "early", vc.IO{Stdout: &out, Stderr: &errOut}); err != nil {
			t.Fatal(err)
		}
		if out.String() != "early-out\n" || errOut.String() != "early-err\n" {
			t.Errorf("stdout %q, stderr %q", out.String(), errOut.String())
		}
	})
}
