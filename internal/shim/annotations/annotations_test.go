package annotations

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestContainerTypeOf(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		typ     ContainerType
		sandbox string
		errHas  string
	}{
		{name: "no annotations", ann: nil, typ: SingleContainer, sandbox: "c1"},
		{name: "cri sandbox", ann: map[string]string{CRIContainerType: "sandbox", CRISandboxID: "c1"}, typ: PodSandbox, sandbox: "c1"},
		{name: "cri sandbox without id", ann: map[string]string{CRIContainerType: "sandbox"}, typ: PodSandbox, sandbox: "c1"},
		{name: "cri container", ann: map[string]string{CRIContainerType: "container", CRISandboxID: "pod"}, typ: PodContainer, sandbox: "pod"},
		{name: "sandbox id only", ann: map[string]string{CRISandboxID: "pod"}, typ: PodContainer, sandbox: "pod"},
		{name: "own sandbox id only", ann: map[string]string{CRISandboxID: "c1"}, typ: SingleContainer, sandbox: "c1"},
		{name: "container without sandbox id", ann: map[string]string{CRIContainerType: "container"}, errHas: CRISandboxID},
		{name: "unknown type", ann: map[string]string{CRIContainerType: "podsandbox", CRISandboxID: "pod"}, errHas: CRIContainerType + ` "podsandbox": unknown value`},
		{name: "empty type", ann: map[string]string{CRIContainerType: ""}, errHas: CRIContainerType},
		{name: "sandbox with other id", ann: map[string]string{CRIContainerType: "sandbox", CRISandboxID: "x"}, errHas: CRISandboxID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ, sid, err := ContainerTypeOf("c1", tc.ann)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err = %v, want an invalid-argument error containing %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if typ != tc.typ || sid != tc.sandbox {
				t.Fatalf("got (%s, %s), want (%s, %s)", typ, sid, tc.typ, tc.sandbox)
			}
			if typ.BootsVM() != (tc.typ != PodContainer) {
				t.Fatalf("BootsVM() = %v for %s", typ.BootsVM(), typ)
			}
		})
	}
}

func TestParseSandboxAnnotations(t *testing.T) {
	all := []string{"cpus", "memory_mib", "kernel_params", "accel", "debug", AnnotationKernel, "initrd", "shared_pidns"}
	o, err := ParseSandboxAnnotations(map[string]string{
		AnnotationCPUs:         "2",
		AnnotationMemoryMiB:    "512",
		AnnotationKernelParams: " loglevel=7  quiet ",
		AnnotationAccel:        "tcg",
		AnnotationDebug:        "true",
		AnnotationKernel:       "/k",
		AnnotationInitrd:       "/i",
		AnnotationSharedPidNS:  "1",
		"io.kubernetes.cri.x":  "ignored",
		"io.virtcontainersx":   "not under the prefix",
	}, all)
	if err != nil {
		t.Fatal(err)
	}
	if *o.CPUs != 2 || *o.MemoryMiB != 512 || *o.Accel != "tcg" || !*o.Debug || *o.Kernel != "/k" || *o.Initrd != "/i" || !*o.SharedPidNS {
		t.Fatalf("overrides = %+v", o)
	}
	if strings.Join(o.KernelParams, ",") != "loglevel=7,quiet" {
		t.Fatalf("kernel params = %q", o.KernelParams)
	}

	none, err := ParseSandboxAnnotations(map[string]string{"foo": "bar"}, nil)
	if err != nil || none.CPUs != nil || none.MemoryMiB != nil || none.Debug != nil {
		t.Fatalf("no annotations: %+v, %v", none, err)
	}
}

func TestParseSandboxAnnotationsErrors(t *testing.T) {
	all := []string{"cpus", "memory_mib", "kernel_params", "accel", "debug", "kernel", "initrd", "shared_pidns"}
	for _, tc := range []struct {
		ann     map[string]string
		allowed []string
		errHas  string
	}{
		{map[string]string{"io.virtcontainers.cpu": "2"}, all, "annotation io.virtcontainers.cpu: unknown"},
		{map[string]string{AnnotationCPUs: "2"}, nil, "annotation io.virtcontainers.cpus: not allowed"},
		{map[string]string{AnnotationCPUs: "2"}, []string{"memory_mib"}, "not allowed"},
		{map[string]string{AnnotationCPUs: "0"}, all, `io.virtcontainers.cpus "0"`},
		{map[string]string{AnnotationCPUs: "65"}, all, `io.virtcontainers.cpus "65"`},
		{map[string]string{AnnotationCPUs: "two"}, all, `io.virtcontainers.cpus "two"`},
		{map[string]string{AnnotationMemoryMiB: "64"}, all, `io.virtcontainers.memory_mib "64": want a whole number of MiB, at least 128`},
		{map[string]string{AnnotationMemoryMiB: "1G"}, all, `io.virtcontainers.memory_mib "1G"`},
		{map[string]string{AnnotationAccel: "hvf"}, all, `io.virtcontainers.accel "hvf"`},
		{map[string]string{AnnotationDebug: "yes"}, all, `io.virtcontainers.debug "yes"`},
		{map[string]string{AnnotationKernel: "vmlinuz"}, all, `io.virtcontainers.kernel "vmlinuz"`},
		{map[string]string{AnnotationKernelParams: "a\nb"}, all, `io.virtcontainers.kernel_params`},
		{map[string]string{}, []string{"cpu"}, `allowlist entry "cpu": unknown`},
	} {
		_, err := ParseSandboxAnnotations(tc.ann, tc.allowed)
		if err == nil || !strings.Contains(err.Error(), tc.errHas) || !errdefs.IsInvalidArgument(err) {
			t.Errorf("%v (allowed %v): err = %v, want an invalid-argument error containing %q", tc.ann, tc.allowed, err, tc.errHas)
		}
	}
}

func TestPolicyAnnotation(t *testing.T) {
	doc := "package agent_policy\ndefault ExecProcessRequest := false\n"
	enc := base64.StdEncoding.EncodeToString([]byte(doc))
	o, err := ParseSandboxAnnotations(map[string]string{AnnotationPolicy: enc}, []string{"policy"})
	if err != nil || o.Policy == nil || *o.Policy != doc {
		t.Fatalf("policy annotation: %+v, %v", o.Policy, err)
	}
	if _, err := ParseSandboxAnnotations(map[string]string{AnnotationPolicy: enc}, nil); err == nil || !strings.Contains(err.Error(), "not allowed by the configuration") {
		t.Errorf("policy annotation without the allowlist: %v", err)
	}
	for _, bad := range []string{"not base64!", "", base64.StdEncoding.EncodeToString(make([]byte, 1<<20+1))} {
		_, err := ParseSandboxAnnotations(map[string]string{AnnotationPolicy: bad}, []string{"policy"})
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), AnnotationPolicy) || len(err.Error()) > 300 {
			t.Errorf("policy annotation of %d bytes: %v, want a short error naming the annotation", len(bad), err)
		}
	}
	// Kata's name: the same policy, the same allowlist entry, errors
	// naming the key the pod used.
	o, err = ParseSandboxAnnotations(map[string]string{KataAnnotationPolicy: enc}, []string{"policy"})
	if err != nil || o.Policy == nil || *o.Policy != doc {
		t.Fatalf("kata's policy annotation: %+v, %v", o.Policy, err)
	}
	if _, err := ParseSandboxAnnotations(map[string]string{KataAnnotationPolicy: enc}, nil); err == nil || !strings.Contains(err.Error(), KataAnnotationPolicy+": not allowed") {
		t.Errorf("kata's policy annotation without the allowlist: %v", err)
	}
	if _, err := ParseSandboxAnnotations(map[string]string{KataAnnotationPolicy: "!"}, []string{"policy"}); err == nil || !strings.Contains(err.Error(), KataAnnotationPolicy) {
		t.Errorf("kata's policy annotation, bad: %v", err)
	}
	if _, err := ParseSandboxAnnotations(map[string]string{KataAnnotationPolicy: enc, AnnotationPolicy: enc}, []string{"policy"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("both policy annotations: %v", err)
	}
}
