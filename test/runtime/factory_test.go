package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/guestconfig"
	vcfactory "github.com/virtcontainers/vc/pkg/factory"
	"github.com/virtcontainers/vc/pkg/vc"
)

// vc-runtime --factory DIR: a container whose VM fits the template (a
// spec without a network namespace: the NAT network) starts from it, with
// its own hostname; one that does not fit
// (another memory size) boots; a damaged template fails create, naming
// the file, and leaves nothing.
func TestFactory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Setenv("VC_AGENT", agentBin) // the image vc-runtime resolves: this agent's
	kernel, initrd, err := guestconfig.Resolve(ctx, dataRoot, "", "", true)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "factory")
	if _, err := vcfactory.Init(ctx, dir, vcfactory.Config{
		// --debug below (for the owner's info log) is the agent's debug
		// log in the guest: the template's too.
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", Debug: true}}); err != nil {
		t.Fatal(err)
	}
	defer vcfactory.Destroy(dir)
	logPath := filepath.Join(t.TempDir(), "runtime.log")
	run := func(id string, change func(*specs.Spec)) (string, int) {
		b := bundle(t, []string{"hostname"}, func(s *specs.Spec) {
			s.Hostname = id
			if change != nil {
				change(s)
			}
		})
		out, code := rt(nil, "--debug", "--log", logPath, "--factory", dir, "run", "--bundle", b, id)
		rt(nil, "delete", "--force", id)
		noLeftovers(t, id)
		return out, code
	}
	if out, code := run("fac-a", nil); code != 0 || strings.TrimSpace(out) != "fac-a" {
		t.Fatalf("run from the template: %d %q", code, out)
	}
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), "from_template=true") {
		t.Errorf("the VM did not start from the template; log:\n%s", log)
	}
	// Another size: boots, saying why in the log.
	big := func(s *specs.Spec) {
		lim := int64(256 << 20)
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &lim}}
	}
	if out, code := run("fac-big", big); code != 0 || strings.TrimSpace(out) != "fac-big" {
		t.Fatalf("run of another size: %d %q", code, out)
	}
	log, _ = os.ReadFile(logPath)
	if !strings.Contains(string(log), "does not fit the factory's template") || !strings.Contains(string(log), "from_template=false") {
		t.Errorf("another size: log:\n%s", log)
	}
	// A damaged template fails create.
	if err := os.Truncate(filepath.Join(dir, "state"), 100); err != nil {
		t.Fatal(err)
	}
	if out, code := run("fac-bad", nil); code == 0 || !strings.Contains(out, "state file") {
		t.Errorf("run on a truncated template: %d %q", code, out)
	}
}
