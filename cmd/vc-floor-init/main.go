// vc-floor-init is the /init of the benchmark floor image: it powers the
// machine off at once. Booting it measures what QEMU, the firmware and the
// kernel cost before any agent runs, the floor that cold-start figures are
// compared with. Build it static: CGO_ENABLED=0 go build.
package main

import (
	"os"
	"syscall"
)

func main() {
	// Nothing was mounted or written: there is nothing to sync.
	err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	// Only reached when not allowed to power off (not PID 1 of the
	// machine, or not root).
	os.Stderr.WriteString("vc-floor-init: power off: " + err.Error() + "\n")
	os.Exit(1)
}
