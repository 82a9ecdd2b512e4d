package annotations

import "github.com/virtcontainers/vc/pkg/vc"

// CRI pod sizing annotations: containerd's CRI plugin copies the kubelet's
// PodSandboxConfig.Linux.Resources (the sum of the pod's container limits)
// onto the sandbox container. pkg/vc reads them (vc.WorkloadFromSpec).
const (
	CRISandboxCPUPeriod = vc.CRISandboxCPUPeriod
	CRISandboxCPUQuota  = vc.CRISandboxCPUQuota
	CRISandboxMemory    = vc.CRISandboxMemory
)
