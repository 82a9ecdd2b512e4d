package guest

import (
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/guest/copyfile"
)

// miscState is the agent's state for the guest, storage and
// observability RPCs (rpc_misc.go).
type miscState struct {
	// Where the guest's sysfs, procfs and device nodes are.
	sysfs, procfs, dev string
	// deviceTimeout bounds the wait for a hotplugged disk to appear.
	deviceTimeout time.Duration

	copier    *copyfile.Copier
	copierErr error

	// hotplugMu serializes CPU and memory hotplug work.
	hotplugMu sync.Mutex

	policy policyState // policy.go
}

// DefaultCopyFileRoot is where CopyFile writes unless Config says otherwise.
const DefaultCopyFileRoot = "/run"

func (s *miscState) init(a *Agent) {
	s.sysfs, s.procfs, s.dev = "/sys", "/proc", "/dev"
	s.deviceTimeout = 5 * time.Second
	root := a.cfg.CopyFileRoot
	if root == "" {
		root = DefaultCopyFileRoot
	}
	s.copier, s.copierErr = copyfile.New(root)
	if s.copierErr != nil {
		a.log.Error("CopyFile disabled", "err", s.copierErr)
	}
}

// copyFiles returns the CopyFile writer, or why there is none.
func (s *miscState) copyFiles() (*copyfile.Copier, error) {
	if s.copier == nil {
		return nil, fmt.Errorf("CopyFile is disabled: %v: %w", s.copierErr, errdefs.ErrFailedPrecondition)
	}
	return s.copier, nil
}
