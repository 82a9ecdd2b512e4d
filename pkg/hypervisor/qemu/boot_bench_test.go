package qemu

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// BenchmarkBootFirmware boots the test initrd under TCG with SeaBIOS
// (QEMU's default) and with qboot, alternating so that both see the same
// host load, and reports the median wall time from Start to the guest's
// marker on the agent channel, and QEMU's CPU time for the whole run (boot
// and power-off), which a loaded host inflates less.
//
//	go test -run '^$' -bench BootFirmware -benchtime 6x ./pkg/hypervisor/qemu
func BenchmarkBootFirmware(b *testing.B) {
	const qboot = "/usr/share/qemu/qboot.rom"
	if _, err := os.Stat(qboot); err != nil {
		b.Fatalf("qboot: %v (Debian's qemu-system-data ships it)", err)
	}
	k := findTestKernel(b)
	initrd := testInitrd(b, k)
	wall := map[string][]time.Duration{}
	cpu := map[string][]time.Duration{}
	for i := 0; i < b.N; i++ {
		for _, fw := range []string{"", qboot} {
			w, c := bootOnce(b, k.vmlinuz, initrd, fw)
			name := "seabios"
			if fw != "" {
				name = "qboot"
			}
			wall[name] = append(wall[name], w)
			cpu[name] = append(cpu[name], c)
		}
	}
	for _, name := range []string{"seabios", "qboot"} {
		b.ReportMetric(float64(median(wall[name]).Milliseconds()), name+"-wall-ms")
		b.ReportMetric(float64(median(cpu[name]).Milliseconds()), name+"-cpu-ms")
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func bootOnce(b *testing.B, kernel, initrd, fw string) (wall, cpu time.Duration) {
	dir, err := os.MkdirTemp("/tmp", "vcqb")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	vm, err := New(hypervisor.Config{
		ID: "bench", StateDir: dir + "/vm", Kernel: kernel, Initrd: initrd, Firmware: fw,
		Accel: hypervisor.AccelTCG, AgentTransport: hypervisor.TransportVirtioSerial,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	begin := time.Now()
	if err := vm.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer vm.Stop(context.Background(), 0)
	g := dialGuest(b, vm)
	if line, err := g.readLine(2 * time.Minute); err != nil || line != "vc-test-ok" {
		b.Fatalf("no marker: %q %v %v", line, err, vm.ExitError())
	}
	wall = time.Since(begin)
	g.c.Write([]byte("poweroff\n"))
	select {
	case <-vm.Exited():
	case <-time.After(30 * time.Second):
		b.Fatal("no power-off")
	}
	vm.proc.mu.Lock()
	cpu = vm.proc.cpu
	vm.proc.mu.Unlock()
	return wall, cpu
}
