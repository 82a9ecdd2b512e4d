package k8s

// The QEMU driver, registered for the VMs these tests start (a program
// links the drivers it runs: pkg/vc names none).
import _ "github.com/virtcontainers/vc/pkg/hypervisor/qemu"
