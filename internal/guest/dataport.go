package guest

import (
	"context"
	"log/slog"

	"github.com/virtcontainers/vc/internal/guest/transport"
	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// ServeDataPort serves process stdio on the data port
// (hypervisor.DataPortName) from its own goroutine, if the VM has one;
// without it, the host uses the agent's stdio RPCs.
func (a *Agent) ServeDataPort(ctx context.Context, sysRoot string) {
	dev, err := transport.FindSerialPort(sysRoot, hypervisor.DataPortName)
	if err != nil {
		slog.Debug("no data port", "err", err)
		return
	}
	go func() {
		if err := a.ctr.m.ServeDataPort(ctx, dev); err != nil {
			slog.Error("data port", "dev", dev, "err", err)
		}
	}()
}
