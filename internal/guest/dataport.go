package guest

import (
	"context"
	"log/slog"

	"github.com/virtcontainers/vc/internal/guest/transport"
)

// dataPortName is hypervisor.DataPortName (dataport_test.go checks it),
// not imported: pkg/hypervisor's package initialization (its regexps) cost
// every start of the agent's binary (the agent, each runc init, each exec
// helper) 3 ms natively, tens of milliseconds under TCG.
const dataPortName = "vc.data.0"

// ServeDataPort serves process stdio on the data port
// (dataPortName) from its own goroutine, if the VM has one;
// without it, the host uses the agent's stdio RPCs.
func (a *Agent) ServeDataPort(ctx context.Context, sysRoot string) {
	dev, err := transport.FindSerialPort(sysRoot, dataPortName)
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
