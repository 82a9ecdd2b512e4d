package shim

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtcontainers/vc/internal/shim/annotations"
)

// A sandbox's policy: the configuration's policy_file, replaced by the
// allowlisted annotation; with a configured initrd it boots
// policy_initrd, and without one a policy cannot boot the default's.
func TestSandboxConfigPolicy(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"k", "i", "pi"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o644)
	}
	polFile := filepath.Join(dir, "policy.rego")
	os.WriteFile(polFile, []byte("package agent_policy\ndefault ExecProcessRequest := false\n"), 0o600)
	sc := singleSandboxConfig
	cfg := DefaultConfig()
	cfg.Kernel, cfg.Initrd = filepath.Join(dir, "k"), filepath.Join(dir, "i")
	if got, err := sc(cfg, nil); err != nil || got.Policy != "" || got.Hypervisor.Initrd != cfg.Initrd {
		t.Fatalf("no policy: %q %s, %v", got.Policy, got.Hypervisor.Initrd, err)
	}

	withPol, err := ParseConfig([]byte("policy_file = \"" + polFile + "\"\npolicy_initrd = \"" + filepath.Join(dir, "pi") + "\"\nkernel = \"" + cfg.Kernel + "\"\ninitrd = \"" + cfg.Initrd + "\"\nenable_annotations = [\"policy\"]"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := sc(withPol, nil)
	if err != nil || !strings.Contains(got.Policy, "ExecProcessRequest") || got.Hypervisor.Initrd != filepath.Join(dir, "pi") {
		t.Fatalf("policy_file: %q %s, %v; want its policy and policy_initrd", got.Policy, got.Hypervisor.Initrd, err)
	}
	doc := "package agent_policy\n"
	got, err = sc(withPol, map[string]string{annotations.AnnotationPolicy: base64.StdEncoding.EncodeToString([]byte(doc))})
	if err != nil || got.Policy != doc {
		t.Fatalf("annotation: %q, %v; want the annotation's policy", got.Policy, err)
	}
	// The annotation with a configured initrd and no policy_initrd.
	cfg.EnableAnnotations = []string{"policy"}
	if _, err := sc(cfg, map[string]string{annotations.AnnotationPolicy: base64.StdEncoding.EncodeToString([]byte(doc))}); err == nil || !strings.Contains(err.Error(), "policy_initrd") {
		t.Errorf("a policy annotation with initrd and no policy_initrd: %v", err)
	}
	for _, tc := range []struct{ toml, errHas string }{
		{`policy_file = "rel.rego"`, "policy_file"},
		{`policy_initrd = "rel"`, "policy_initrd"},
		{"policy_file = \"/p.rego\"\nkernel = \"/k\"\ninitrd = \"/i\"", "policy_initrd missing"},
	} {
		if _, err := ParseConfig([]byte(tc.toml)); err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("%s: %v, want an error naming %q", tc.toml, err, tc.errHas)
		}
	}
	gone := withPol
	gone.PolicyFile = filepath.Join(dir, "missing.rego")
	if _, err := sc(gone, nil); err == nil || !strings.Contains(err.Error(), "policy_file") {
		t.Errorf("a missing policy_file: %v", err)
	}
}
