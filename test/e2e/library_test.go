package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// Two containers of one sandbox share the guest kernel: they read the
// same boot_id, and the host's differs.
func TestTwoContainersShareTheVM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{
		ID:        "e2e-two",
		StateRoot: stateRoot,
		Hypervisor: vc.HypervisorConfig{
			Kernel: kernel, Initrd: initrd, Accel: "tcg", MemoryMiB: 256,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.Stop(context.Background(), 5*time.Second)
		if err := s.Delete(context.Background()); err != nil {
			t.Errorf("delete: %v", err)
		}
		noLeftovers(t, "e2e-two")
	}()
	var ids []string
	for _, cid := range []string{"a", "b"} {
		spec := oci.DefaultSpec([]string{"cat", "/proc/sys/kernel/random/boot_id"}, nil, "/", false)
		if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: cid, Rootfs: root, Spec: spec}); err != nil {
			t.Fatalf("create %s: %v", cid, err)
		}
		var out bytes.Buffer
		streams := s.Container(cid).IOStream(ctx, cid, vc.IO{Stdout: &out, Stderr: &out})
		if err := s.Container(cid).Start(ctx); err != nil {
			t.Fatalf("start %s: %v", cid, err)
		}
		code, err := s.Container(cid).Wait(ctx)
		if err != nil || code != 0 {
			t.Fatalf("wait %s: %d %v", cid, code, err)
		}
		<-streams
		ids = append(ids, strings.TrimSpace(out.String()))
		if err := s.Container(cid).Delete(ctx); err != nil {
			t.Fatalf("delete %s: %v", cid, err)
		}
	}
	host, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if len(ids[0]) != 36 || ids[0] != ids[1] {
		t.Fatalf("containers' boot ids %q and %q: want equal uuids", ids[0], ids[1])
	}
	if ids[0] == strings.TrimSpace(string(host)) {
		t.Fatalf("container boot id %q equals the host's", ids[0])
	}
	// ps in a running container lists its processes.
	spec := oci.DefaultSpec([]string{"sleep", "60"}, nil, "/", false)
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "ps", Rootfs: root, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	if err := s.Container("ps").Start(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := s.Container("ps").ProcessList(ctx, "-o", "pid,args")
	if err != nil || !strings.Contains(out, "sleep 60") {
		t.Fatalf("process list: %q, %v", out, err)
	}
	if err := s.Container("ps").Stop(ctx, time.Second); err != nil {
		t.Fatal(err)
	}

	// A second process finds the sandbox through its state.
	f, err := vc.FetchSandbox(ctx, stateRoot, "e2e-two")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if st := f.Status(); st.State != vc.StateRunning || st.VMPid != s.Status().VMPid {
		t.Fatalf("fetched sandbox: %+v", st)
	}
}

// TestLargeStdio: 16 MiB through a container process's stdin and back on
// its stdout while it writes 400000 lines to its stderr: each stream
// whole and in order.
func TestLargeStdio(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: "e2e-stdio", StateRoot: stateRoot,
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", MemoryMiB: 256}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.Stop(context.Background(), 5*time.Second)
		if err := s.Delete(context.Background()); err != nil {
			t.Errorf("delete: %v", err)
		}
		noLeftovers(t, "e2e-stdio")
	}()
	const lines = 400000
	spec := oci.DefaultSpec([]string{"sh", "-c", fmt.Sprintf("seq 1 %d >&2 & cat; wait", lines)}, nil, "/", false)
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "c", Rootfs: root, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	// A period of 251 bytes: a chunk lost, repeated or out of place shows.
	in := make([]byte, 16<<20)
	for i := range in {
		in[i] = byte(i % 251)
	}
	var out, errOut bytes.Buffer
	streams := s.Container("c").IOStream(ctx, "c", vc.IO{Stdin: bytes.NewReader(in), Stdout: &out, Stderr: &errOut})
	if err := s.Container("c").Start(ctx); err != nil {
		t.Fatal(err)
	}
	code, err := s.Container("c").Wait(ctx)
	if err != nil || code != 0 {
		t.Fatalf("wait: %d %v (stderr %.200q)", code, err, errOut.String())
	}
	if err := <-streams; err != nil {
		t.Fatal("streams:", err)
	}
	if !bytes.Equal(out.Bytes(), in) {
		i := 0
		for i < min(out.Len(), len(in)) && out.Bytes()[i] == in[i] {
			i++
		}
		t.Errorf("stdout: %d bytes, want the %d of stdin; first difference at %d", out.Len(), len(in), i)
	}
	var want strings.Builder
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	if errOut.String() != want.String() {
		t.Errorf("stderr: %d bytes, want %d lines of seq (%d bytes)", errOut.Len(), lines, want.Len())
	}
}
