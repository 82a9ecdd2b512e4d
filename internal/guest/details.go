package guest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runc/libcontainer/seccomp"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/hotplug"
	"github.com/virtcontainers/vc/internal/guest/storage"
)

// guestDetails answers GetGuestDetails.
func (a *Agent) guestDetails(req *pb.GuestDetailsRequest) (*pb.GuestDetailsResponse, error) {
	resp := &pb.GuestDetailsResponse{
		AgentDetails: &pb.AgentDetails{
			Version:         Version,
			InitDaemon:      a.cfg.InitDaemon,
			StorageHandlers: storage.Drivers(),
			SupportsSeccomp: a.supportsSeccomp(),
		},
	}
	if req.GetMemBlockSize() {
		n, err := hotplug.MemBlockSize(a.misc.sysfs)
		if err != nil {
			return nil, fmt.Errorf("mem_block_size: %w", err)
		}
		resp.MemBlockSizeBytes = n
	}
	if req.GetMemHotplugProbe() {
		resp.SupportMemHotplugProbe = hotplug.ProbeSupported(a.misc.sysfs)
	}
	return resp, nil
}

// supportsSeccomp: the agent was built with libseccomp and the kernel
// filters system calls (its /proc/PID/status has a Seccomp line).
func (a *Agent) supportsSeccomp() bool {
	if !seccomp.Enabled {
		return false
	}
	b, err := os.ReadFile(filepath.Join(a.misc.procfs, "self", "status"))
	return err == nil && bytes.Contains(b, []byte("\nSeccomp:"))
}
