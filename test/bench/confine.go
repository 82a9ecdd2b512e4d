package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

func init() {
	register("confine", confineCost)
}

// confineRuns is how many starts of each kind the figure takes.
const confineRuns = 10

// confineCost times QEMU's start (Start returns once QMP answers: the
// launch itself, before the guest runs) confined (the default: user
// vc-qemu, its mount, PID, network, IPC and UTS namespaces, a 9p share
// made a shared mount) against the same VM started as root, alternating.
func confineCost() ([]row, error) {
	e, err := newVMEnv()
	if err != nil {
		return nil, err
	}
	defer e.close()
	start := func(i int, user string) (time.Duration, error) {
		id := fmt.Sprintf("confine%d-%s", i, map[string]string{"": "default", hypervisor.UserRoot: "root"}[user])
		dir := filepath.Join(e.stateRoot, id)
		shared := filepath.Join(dir, "shared")
		if err := os.MkdirAll(shared, 0o700); err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		vm, err := hypervisor.New("qemu", hypervisor.Config{
			ID: id, StateDir: filepath.Join(dir, "vm"), Kernel: e.img.Kernel, Initrd: e.img.Initrd, User: user,
			SharedFS: []hypervisor.SharedFS{{Tag: "shared", HostPath: shared, Kind: hypervisor.FS9P}},
		})
		if err != nil {
			return 0, err
		}
		t := time.Now()
		if err := vm.Start(context.Background()); err != nil {
			return 0, err
		}
		d := time.Since(t)
		return d, vm.Stop(context.Background(), 0)
	}
	var confined, root []time.Duration
	for i := 0; i < confineRuns; i++ {
		d, err := start(i, "")
		if err != nil {
			return nil, fmt.Errorf("confined: %w", err)
		}
		confined = append(confined, d)
		if d, err = start(i, hypervisor.UserRoot); err != nil {
			return nil, fmt.Errorf("as root: %w", err)
		}
		root = append(root, d)
	}
	return []row{{figure: "qemu start (until QMP answers), confined", unit: "ms", value: ms(median(confined)), floor: ms(median(root)),
		floorName: "the same VM started as root (vmm_user root)",
		note:      fmt.Sprintf("median of %d, alternating; the user, the mount namespace (about 20 mounts, pivot_root), the PID/network/IPC/UTS namespaces, /proc/self, the share's shared mount", confineRuns)}}, nil
}
