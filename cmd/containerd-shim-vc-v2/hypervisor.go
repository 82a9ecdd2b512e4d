package main

// The hypervisor drivers this program runs VMs with: each registers
// itself with pkg/hypervisor (pkg/vc names none).
import _ "github.com/virtcontainers/vc/pkg/hypervisor/qemu"
