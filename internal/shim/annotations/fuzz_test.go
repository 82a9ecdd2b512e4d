package annotations

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// format is the annotations that ask for o: what ParseSandboxAnnotations
// must read back as o.
func format(o SandboxOverrides) map[string]string {
	m := map[string]string{}
	if o.CPUs != nil {
		m[AnnotationCPUs] = strconv.FormatUint(uint64(*o.CPUs), 10)
	}
	if o.MemoryMiB != nil {
		m[AnnotationMemoryMiB] = strconv.FormatUint(uint64(*o.MemoryMiB), 10)
	}
	if o.KernelParams != nil {
		m[AnnotationKernelParams] = strings.Join(o.KernelParams, " ")
	}
	for k, p := range map[string]*string{AnnotationAccel: o.Accel, AnnotationKernel: o.Kernel, AnnotationInitrd: o.Initrd, AnnotationPublish: o.Publish} {
		if p != nil {
			m[k] = *p
		}
	}
	for k, p := range map[string]*bool{AnnotationDebug: o.Debug, AnnotationSharedPidNS: o.SharedPidNS, AnnotationHostLoopback: o.HostLoopback} {
		if p != nil {
			m[k] = strconv.FormatBool(*p)
		}
	}
	return m
}

// sameOverrides compares overrides, no kernel parameters (nil or empty)
// being the same.
func sameOverrides(a, b SandboxOverrides) bool {
	if len(a.KernelParams) == 0 && len(b.KernelParams) == 0 {
		a.KernelParams, b.KernelParams = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// FuzzParseSandboxAnnotations parses two annotations (a short name
// becomes a key under the prefix), with every annotation allowed or none.
// A refused set's error is an invalid argument naming one of its keys
// under the prefix; an accepted one holds values in range, no control
// characters, and reads back the same from its own formatting; keys
// outside the prefix change nothing.
func FuzzParseSandboxAnnotations(f *testing.F) {
	for _, s := range [][4]string{
		{"cpus", "2", "memory_mib", "512"},
		{"kernel_params", " loglevel=7  quiet ", "accel", "tcg"},
		{"debug", "true", "shared_pidns", "1"},
		{"kernel", "/k", "initrd", "/i"},
		{"publish", "127.0.0.1:8080:80/tcp,53:53/udp", "host_loopback", "false"},
		{"cpu", "2", "memory_mib", "64"},
		{"cpus", "65", "kernel", "vmlinuz"},
		{"kernel_params", "a\nb", "io.kubernetes.cri.x", "ignored"},
	} {
		f.Add(s[0], s[1], s[2], s[3], true)
		f.Add(s[0], s[1], s[2], s[3], false)
	}
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string, allowAll bool) {
		key := func(k string) string {
			if strings.Contains(k, ".") {
				return k
			}
			return AnnotationPrefix + k
		}
		ann := map[string]string{key(k1): v1, key(k2): v2}
		var allowed []string
		if allowAll {
			allowed = KnownAnnotations()
		}
		o, err := ParseSandboxAnnotations(ann, allowed)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("%v: error %v is not an invalid argument", ann, err)
			}
			named := false
			for k := range ann {
				named = named || (strings.HasPrefix(k, AnnotationPrefix) && strings.Contains(err.Error(), "annotation "+k))
			}
			if !named {
				t.Fatalf("%v: error %q names none of its annotations", ann, err)
			}
			return
		}
		if o.CPUs != nil && (*o.CPUs < 1 || *o.CPUs > hypervisor.MaxVCPUs) {
			t.Errorf("%v: %d vCPUs accepted", ann, *o.CPUs)
		}
		if o.MemoryMiB != nil && *o.MemoryMiB < hypervisor.MinMemoryMiB {
			t.Errorf("%v: %d MiB accepted", ann, *o.MemoryMiB)
		}
		for _, p := range o.KernelParams {
			if p == "" || strings.IndexFunc(p, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
				t.Errorf("%v: kernel parameter %q accepted", ann, p)
			}
		}
		if o.Publish != nil && strings.IndexFunc(*o.Publish, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) >= 0 {
			t.Errorf("%v: publish %q accepted", ann, *o.Publish)
		}
		for _, p := range []*string{o.Kernel, o.Initrd} {
			if p != nil && !strings.HasPrefix(*p, "/") {
				t.Errorf("%v: relative path %q accepted", ann, *p)
			}
		}
		again, err := ParseSandboxAnnotations(format(o), allowed)
		if err != nil {
			t.Fatalf("%v: accepted as %+v, whose annotations %v are refused: %v", ann, o, format(o), err)
		}
		if !sameOverrides(o, again) {
			t.Fatalf("%v: read as %+v, its annotations %v as %+v", ann, o, format(o), again)
		}
		ann["io.kubernetes.cri.other"] = v1
		if other, err := ParseSandboxAnnotations(ann, allowed); err != nil || !sameOverrides(other, o) {
			t.Fatalf("%v: an annotation outside the prefix changed the result: %+v, %v", ann, other, err)
		}
	})
}

// FuzzContainerTypeOf reads the CRI annotations of container c1: a
// refused set is an invalid argument naming one of them; a type that
// boots its VM runs in a sandbox of its own id, a pod container in
// another, named.
func FuzzContainerTypeOf(f *testing.F) {
	f.Add("sandbox", true, "c1")
	f.Add("sandbox", true, "x")
	f.Add("container", true, "pod")
	f.Add("container", true, "")
	f.Add("", false, "pod")
	f.Add("", false, "c1")
	f.Add("podsandbox", true, "pod")
	f.Fuzz(func(t *testing.T, typ string, hasType bool, sid string) {
		ann := map[string]string{CRISandboxID: sid}
		if hasType {
			ann[CRIContainerType] = typ
		}
		ct, got, err := ContainerTypeOf("c1", ann)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) || !(strings.Contains(err.Error(), CRIContainerType) || strings.Contains(err.Error(), CRISandboxID)) {
				t.Fatalf("%v: error %v: not an invalid argument naming an annotation", ann, err)
			}
			return
		}
		switch {
		case ct.BootsVM() && got != "c1":
			t.Fatalf("%v: %s in sandbox %q, not its own", ann, ct, got)
		case !ct.BootsVM() && (got == "" || got == "c1" || got != sid):
			t.Fatalf("%v: %s in sandbox %q", ann, ct, got)
		}
	})
}
