package shim

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/shim/annotations"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// FuzzBundleSpec reads a fuzzed config.json from a bundle and puts it
// through what the shim checks before it boots anything: the process,
// the CRI annotations, the host namespaces of a pod, the sandbox
// annotations (all allowed) and their publish list, the VM's size from
// the pod's or container's limits, and the container's configuration.
// Every refusal is an invalid argument naming what it refuses; a VM
// sized from limits is never smaller than its base or than what the
// limits asked for (it saturates: validation refuses it then).
func FuzzBundleSpec(f *testing.F) {
	seed := func(s *specs.Spec) {
		b, err := json.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	base := oci.DefaultSpec([]string{"sh", "-c", "true"}, []string{"PATH=/bin"}, "/", false)
	seed(base)
	pod := oci.DefaultSpec([]string{"/pause"}, nil, "/", false)
	pod.Annotations = map[string]string{
		annotations.CRIContainerType: "sandbox", annotations.CRISandboxID: "c1",
		annotations.CRISandboxCPUPeriod: "100000", annotations.CRISandboxCPUQuota: "150000", annotations.CRISandboxMemory: "4294967295",
		annotations.AnnotationPublish: "8080:80,127.0.0.1:53:53/udp", annotations.AnnotationKernelParams: "quiet",
	}
	seed(pod)
	limited := oci.DefaultSpec([]string{"app"}, nil, "/", false)
	limit, quota, period := int64(1<<30), int64(200000), uint64(100000)
	limited.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}, CPU: &specs.LinuxCPU{Quota: &quota, Period: &period}}
	seed(limited)
	f.Add([]byte(`{"process":{"args":[]},"annotations":{"io.kubernetes.cri.container-type":"container"}}`))
	f.Add([]byte(`{"process":{"args":["a"]},"annotations":{"io.kubernetes.cri.container-type":"sandbox"}}`))
	f.Fuzz(func(t *testing.T, config []byte) {
		bundle := t.TempDir()
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), config, 0o600); err != nil {
			t.Fatal(err)
		}
		refused := func(err error, names ...string) {
			t.Helper()
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("%s: refused with %v: not an invalid argument", config, err)
			}
			for _, n := range names {
				if strings.Contains(err.Error(), n) {
					return
				}
			}
			t.Fatalf("%s: refused with %q, naming none of %q", config, err, names)
		}
		spec, err := readSpec(bundle)
		if err != nil {
			refused(err, "config.json")
			return
		}
		if spec.Process == nil || len(spec.Process.Args) == 0 {
			return // refused as such by create
		}
		typ, sid, err := annotations.ContainerTypeOf("c1", spec.Annotations)
		if err != nil {
			refused(err, "annotation io.kubernetes.cri.")
			return
		}
		if sid == "" {
			t.Fatalf("%s: no sandbox id", config)
		}
		if typ != annotations.SingleContainer {
			if err := refuseHostNamespaces(spec); err != nil {
				refused(err, "spec.linux")
				return
			}
		}
		o, err := annotations.ParseSandboxAnnotations(spec.Annotations, annotations.KnownAnnotations())
		if err != nil {
			refused(err, "annotation io.virtcontainers.")
			return
		}
		if o.Publish != nil {
			if _, err := vc.ParsePortMappings(*o.Publish); err != nil {
				refused(err, "entry ")
				return
			}
		}
		hc := vc.HypervisorConfig{CPUs: 1, MemoryMiB: 2048}
		var cpus, mib uint32
		if typ.BootsVM() {
			if err := hc.SizeFor(spec); err != nil {
				refused(err, "annotation io.kubernetes.cri.sandbox-", "linux.resources.")
				return
			}
			cpus, mib, _ = vc.WorkloadFromSpec(spec)
		}
		// Too much saturates (and validation refuses it): it never
		// wraps to a small VM.
		if hc.CPUs < 1 || hc.MemoryMiB < 2048 || (mib > 0 && uint64(hc.MemoryMiB) < min(2048+uint64(mib), math.MaxUint32)) {
			t.Fatalf("%s: a VM of 1 vCPU and 2048 MiB, sized for %d CPUs and %d MiB, has %d vCPUs and %d MiB", config, cpus, mib, hc.CPUs, hc.MemoryMiB)
		}
		cc := vc.ContainerConfig{ID: "c1", Rootfs: bundle, Spec: spec}
		if err := cc.Validate(); err != nil {
			refused(err, "spec.process")
		}
	})
}
