package annotations

import (
	"encoding/base64"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/vc"
)

// CRI annotations: containerd's CRI plugin (and CRI-O's compatible keys)
// mark a pod's sandbox container and the containers that join it.
const (
	// CRIContainerType is "sandbox" on a pod's sandbox (pause) container
	// and "container" on the pod's other containers.
	CRIContainerType = vc.CRIContainerType
	// CRISandboxID names the pod sandbox a container belongs to (on the
	// sandbox container itself, its own id).
	CRISandboxID = "io.kubernetes.cri.sandbox-id"

	criTypeSandbox   = "sandbox"
	criTypeContainer = "container"
)

// ContainerType says how a container relates to a sandbox (a VM).
type ContainerType string

const (
	// PodSandbox is a CRI pod's sandbox container: it boots the VM.
	PodSandbox ContainerType = "pod-sandbox"
	// PodContainer is a CRI pod's container: it joins its sandbox's VM.
	PodContainer ContainerType = "pod-container"
	// SingleContainer has no CRI annotations (`ctr run`): it boots a VM
	// of its own and is that sandbox's only container.
	SingleContainer ContainerType = "single"
)

// BootsVM tells whether a container of this type creates its sandbox.
func (t ContainerType) BootsVM() bool { return t == PodSandbox || t == SingleContainer }

// ContainerTypeOf reads the CRI annotations of container id and returns
// its type and the id of the sandbox it runs in (id itself for a type that
// boots its VM). A container with a sandbox id but no type joins that
// sandbox. An unknown type, or a pod container without a sandbox id, is an
// error naming the annotation.
func ContainerTypeOf(id string, annotations map[string]string) (ContainerType, string, error) {
	typ, hasType := annotations[CRIContainerType]
	sid := annotations[CRISandboxID]
	switch {
	case hasType && typ == criTypeSandbox:
		if sid != "" && sid != id {
			return "", "", fmt.Errorf("annotation %s %q: a sandbox container's sandbox id must be its own id %q: %w", CRISandboxID, sid, id, errdefs.ErrInvalidArgument)
		}
		return PodSandbox, id, nil
	case hasType && typ == criTypeContainer:
		if sid == "" {
			return "", "", fmt.Errorf("annotation %s: missing on a container of type %q (%s): %w", CRISandboxID, typ, CRIContainerType, errdefs.ErrInvalidArgument)
		}
		return PodContainer, sid, nil
	case hasType:
		return "", "", fmt.Errorf("annotation %s %q: unknown value (want %q or %q): %w", CRIContainerType, typ, criTypeSandbox, criTypeContainer, errdefs.ErrInvalidArgument)
	case sid != "" && sid != id:
		return PodContainer, sid, nil
	default:
		return SingleContainer, id, nil
	}
}

// AnnotationPrefix starts every annotation virtcontainers reads. An
// unknown key under it is an error, so that a typo is not silently
// ignored.
const AnnotationPrefix = "io.virtcontainers."

// Annotations that override sandbox settings; each is honoured only when
// the configuration allows it (see ParseSandboxAnnotations).
const (
	// AnnotationCPUs is the number of vCPUs of the VM (1-64).
	AnnotationCPUs = AnnotationPrefix + "cpus"
	// AnnotationMemoryMiB is the VM's memory in MiB (at least 128).
	AnnotationMemoryMiB = AnnotationPrefix + "memory_mib"
	// AnnotationKernelParams is appended to the guest kernel command line
	// (space-separated parameters).
	AnnotationKernelParams = AnnotationPrefix + "kernel_params"
	// AnnotationAccel is the acceleration: auto, kvm or tcg.
	AnnotationAccel = AnnotationPrefix + "accel"
	// AnnotationDebug turns the agent's debug log on (true/false).
	AnnotationDebug = AnnotationPrefix + "debug"
	// AnnotationKernel and AnnotationInitrd are host paths of the guest
	// kernel and initrd to boot instead of the configured ones.
	AnnotationKernel = AnnotationPrefix + "kernel"
	AnnotationInitrd = AnnotationPrefix + "initrd"
	// AnnotationSharedPidNS starts the sandbox with a shared PID namespace
	// that containers can join (true/false).
	AnnotationSharedPidNS = AnnotationPrefix + "shared_pidns"
	// AnnotationPublish publishes ports of a sandbox without a network
	// namespace on the host, through its user-mode NAT: a comma-separated
	// list of [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp] (pkg/vc's
	// ParsePortMappings, which the caller applies). Like every override
	// it needs the allowlist: it binds host ports, privileged ones and on
	// every address included, in the host's network namespace as the
	// shim's user (root), which is a node-level privilege (Kubernetes
	// guards hostPort likewise), and annotations come from whoever writes
	// the pod or container spec.
	AnnotationPublish = AnnotationPrefix + "publish"
	// AnnotationHostLoopback (true/false) lets the sandbox's NAT reach
	// the host's loopback (the configuration's host_loopback); allowed
	// only by the allowlist, as it opens every service of the host's
	// 127.0.0.1 to the guest.
	AnnotationHostLoopback = AnnotationPrefix + "host_loopback"
	// AnnotationPolicy is an agent policy (a Rego document,
	// docs/security.md), base64-encoded as Kata's
	// io.katacontainers.config.agent.policy: it replaces the
	// configuration's policy_file, so only an allowlist that names it
	// lets a pod's author choose what the agent refuses.
	AnnotationPolicy = AnnotationPrefix + "policy"
	// KataAnnotationPolicy is Kata Containers' name of the same
	// annotation, taken as AnnotationPolicy (and allowed by the same
	// allowlist entry), so a pod written for Kata keeps its policy.
	KataAnnotationPolicy = "io.katacontainers.config.agent.policy"
)

// knownAnnotations are the keys under AnnotationPrefix.
var knownAnnotations = map[string]bool{
	AnnotationCPUs: true, AnnotationMemoryMiB: true, AnnotationKernelParams: true,
	AnnotationAccel: true, AnnotationDebug: true, AnnotationKernel: true,
	AnnotationInitrd: true, AnnotationSharedPidNS: true, AnnotationPublish: true,
	AnnotationHostLoopback: true, AnnotationPolicy: true,
}

// KnownAnnotations lists the sandbox annotations, sorted.
func KnownAnnotations() []string {
	out := make([]string, 0, len(knownAnnotations))
	for k := range knownAnnotations {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// SandboxOverrides are the sandbox settings annotations asked for; nil
// (or empty) fields were not asked for.
type SandboxOverrides struct {
	CPUs         *uint32
	MemoryMiB    *uint32
	KernelParams []string
	Accel        *string
	Debug        *bool
	Kernel       *string
	Initrd       *string
	SharedPidNS  *bool
	// Publish is the raw publish list, checked only for control
	// characters here: pkg/vc parses it (pkg/vc imports this package).
	Publish      *string
	HostLoopback *bool
	// Policy is the decoded policy document.
	Policy *string
}

// hasControl tells whether s holds a control character other than a tab
// (a separator, as a space is).
func hasControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) >= 0
}

// CheckAllowlist validates a configuration's list of annotations that may
// override sandbox settings: each entry is a full key or its short name
// after the prefix ("cpus"). It returns the full keys.
func CheckAllowlist(allowed []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, a := range allowed {
		k := a
		if !strings.HasPrefix(k, AnnotationPrefix) {
			k = AnnotationPrefix + k
		}
		if !knownAnnotations[k] {
			return nil, fmt.Errorf("annotation allowlist entry %q: unknown (known: %s): %w", a, strings.Join(KnownAnnotations(), ", "), errdefs.ErrInvalidArgument)
		}
		out[k] = true
	}
	return out, nil
}

// ParseSandboxAnnotations reads the io.virtcontainers.* annotations.
// allowed is the configuration's allowlist (short names or full keys, see
// CheckAllowlist). An unknown key under the prefix, a key the allowlist
// does not hold, or a bad value is an error naming the annotation;
// annotations outside the prefix are ignored.
func ParseSandboxAnnotations(annotations map[string]string, allowed []string) (SandboxOverrides, error) {
	var o SandboxOverrides
	allow, err := CheckAllowlist(allowed)
	if err != nil {
		return o, err
	}
	policyKey := AnnotationPolicy // the name the pod used, for errors
	if v, ok := annotations[KataAnnotationPolicy]; ok {
		if _, both := annotations[AnnotationPolicy]; both {
			return o, fmt.Errorf("annotations %s and %s: the same policy given twice: %w", AnnotationPolicy, KataAnnotationPolicy, errdefs.ErrInvalidArgument)
		}
		annotations = maps.Clone(annotations)
		annotations[AnnotationPolicy] = v
		policyKey = KataAnnotationPolicy
	}
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys) // the first error is always the same one
	for _, k := range keys {
		v := annotations[k]
		if !knownAnnotations[k] {
			return o, fmt.Errorf("annotation %s: unknown (known: %s): %w", k, strings.Join(KnownAnnotations(), ", "), errdefs.ErrInvalidArgument)
		}
		name := k
		if k == AnnotationPolicy {
			name = policyKey
		}
		if !allow[k] {
			return o, fmt.Errorf("annotation %s: not allowed by the configuration (add %s to enable_annotations): %w", name, strings.TrimPrefix(k, AnnotationPrefix), errdefs.ErrInvalidArgument)
		}
		if k == AnnotationPolicy {
			// Not quoted in errors: up to a megabyte.
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil || len(b) == 0 || len(b) > vc.MaxPolicySize {
				return o, fmt.Errorf("annotation %s (%d bytes): want a policy document of 1 to %d bytes, base64-encoded: %w", name, len(v), vc.MaxPolicySize, errdefs.ErrInvalidArgument)
			}
			doc := string(b)
			o.Policy = &doc
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("annotation %s %q: %s: %w", k, v, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
		}
		switch k {
		case AnnotationCPUs:
			n, err := strconv.ParseUint(v, 10, 32)
			c, cerr := hypervisor.CheckCPUs("vCPUs", n)
			if err != nil || n == 0 || cerr != nil {
				return o, bad("want a whole number of vCPUs from 1 to %d", hypervisor.MaxVCPUs)
			}
			o.CPUs = &c
		case AnnotationMemoryMiB:
			n, err := strconv.ParseUint(v, 10, 32)
			m, merr := hypervisor.CheckMemoryMiB("MiB", n)
			if err != nil || n == 0 || merr != nil {
				return o, bad("want a whole number of MiB, at least %d", hypervisor.MinMemoryMiB)
			}
			o.MemoryMiB = &m
		case AnnotationKernelParams:
			if hasControl(v) {
				return o, bad("control characters")
			}
			o.KernelParams = strings.Fields(v)
		case AnnotationAccel:
			switch v {
			case "auto", "kvm", "tcg":
			default:
				return o, bad("want auto, kvm or tcg")
			}
			a := v
			o.Accel = &a
		case AnnotationDebug, AnnotationSharedPidNS, AnnotationHostLoopback:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return o, bad("want true or false")
			}
			switch k {
			case AnnotationDebug:
				o.Debug = &b
			case AnnotationSharedPidNS:
				o.SharedPidNS = &b
			default:
				o.HostLoopback = &b
			}
		case AnnotationPublish:
			if hasControl(v) {
				return o, bad("control characters")
			}
			p := v
			o.Publish = &p
		case AnnotationKernel, AnnotationInitrd:
			if !strings.HasPrefix(v, "/") {
				return o, bad("want an absolute host path")
			}
			p := v
			if k == AnnotationKernel {
				o.Kernel = &p
			} else {
				o.Initrd = &p
			}
		}
	}
	return o, nil
}
