package containerd

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestConfigDump has containerd itself parse the generated config
// (`containerd config dump`): a misspelt plugin key is silently dropped,
// so each setting the harness relies on must show up decoded, and no key
// may be reported unknown.
func TestConfigDump(t *testing.T) {
	if err := checkBinaries(BinDir()); err != nil {
		t.Fatalf("%v: run hack/install-containerd.sh (`make test` runs it)", err)
	}
	c, err := newContainerd(Options{VCConfigPath: "/etc/vc/config.toml"})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, c.configData, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(BinDir(), "containerd"), "--config", p, "config", "dump").CombinedOutput()
	if err != nil {
		t.Fatalf("containerd config dump: %v\n%s", err, out)
	}
	dump := string(out)
	if strings.Contains(dump, "unknown key") {
		t.Errorf("containerd ignores keys of the generated config:\n%s", dump)
	}
	// section -> lines that must appear in it.
	want := map[string][]string{
		"": {
			"root = '" + c.Root + "'",
			"state = '" + c.State + "'",
		},
		"[plugins.'io.containerd.cri.v1.images'.pinned_images]": {"sandbox = 'registry.k8s.io/pause:vc-test'"},
		"[plugins.'io.containerd.cri.v1.images']":               {"snapshotter = 'overlayfs'"},
		"[plugins.'io.containerd.cri.v1.runtime']": {
			"restrict_oom_score_adj = true",
			"netns_mounts_under_state_dir = true",
		},
		"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.vc]": {
			"runtime_type = 'io.containerd.vc.v2'",
			"sandboxer = 'podsandbox'",
			"pod_annotations = ['io.virtcontainers.*']",
		},
		"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.vc.options]":   {"ConfigPath = '/etc/vc/config.toml'"},
		"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]":         {"runtime_type = 'io.containerd.runc.v2'"},
		"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]": {"BinaryName = '" + filepath.Join(BinDir(), "runc") + "'"},
		"[plugins.'io.containerd.cri.v1.runtime'.cni]": {
			"bin_dirs = ['/usr/lib/cni']",
			"conf_dir = '" + c.CNIConfDir + "'",
		},
		"[plugins.'io.containerd.server.v1.grpc']":  {"address = '" + c.Address + "'"},
		"[plugins.'io.containerd.server.v1.ttrpc']": {"address = '" + c.Address + ".ttrpc'"},
		"[plugins.'io.containerd.shim.v1.manager']": {"socket_dir = '" + filepath.Join(c.Dir, "s") + "'"},
		"[plugins.'io.containerd.internal.v1.opt']": {"path = '" + filepath.Join(c.Dir, "opt") + "'"},
	}
	sections := map[string][]string{}
	cur := ""
	for _, l := range strings.Split(dump, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "[") {
			cur = l
			continue
		}
		sections[cur] = append(sections[cur], l)
	}
	for sec, lines := range want {
		have := strings.Join(sections[sec], "\n")
		for _, l := range lines {
			if !strings.Contains("\n"+have+"\n", "\n"+l+"\n") {
				t.Errorf("section %q lacks %q; has:\n%s", sec, l, have)
			}
		}
	}
	for _, d := range disabledPlugins {
		if !strings.Contains(dump, "'"+d+"'") {
			t.Errorf("%s not disabled", d)
		}
	}
	// The daemon's socket fits a sockaddr_un, shim sockets their dir limit.
	if len(c.Address)+len(".ttrpc") >= 108 || len(filepath.Join(c.Dir, "s")) > 38 {
		t.Errorf("socket paths too long: %s, %s", c.Address, filepath.Join(c.Dir, "s"))
	}
}

func TestRenderConfigRejectsQuotes(t *testing.T) {
	if _, err := renderConfig(configParams{Root: "/tmp/it's"}); err == nil {
		t.Error("a path with a single quote was accepted into a TOML literal string")
	}
}

func TestCNIConfList(t *testing.T) {
	b, err := cniConfList()
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []struct {
			Type   string `json:"type"`
			Bridge string `json:"bridge"`
			IPAM   struct {
				Type    string                `json:"type"`
				DataDir string                `json:"dataDir"`
				Ranges  [][]map[string]string `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	if conf.Name != CNINetwork || len(conf.Plugins) != 1 {
		t.Fatalf("conflist: %s", b)
	}
	p := conf.Plugins[0]
	if p.Type != "bridge" || p.Bridge != CNIBridge || p.IPAM.Type != "host-local" || p.IPAM.DataDir != cniIPAMDir ||
		len(p.IPAM.Ranges) != 1 || p.IPAM.Ranges[0][0]["subnet"] != CNISubnet {
		t.Errorf("conflist: %s", b)
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(CNIBinDir, plugin)); err != nil {
			t.Errorf("CNI plugin %s: %v (run hack/install-containerd.sh)", plugin, err)
		}
	}
}

func TestKillShimsMatchesOnlyItsAddress(t *testing.T) {
	// No process serves a made-up address: nothing found, nothing killed.
	if pids := shimPids("/run/vc-test/nonexist/containerd.sock"); len(pids) != 0 {
		t.Errorf("shimPids matched %v", pids)
	}
	if n := killShims("/run/vc-test/nonexist/containerd.sock"); n != 0 {
		t.Errorf("killShims killed %d", n)
	}
}

// TestKillShims: a fake shim (argv[0] containerd-shim-*, -address A) and
// its child are killed; a process with another address is not.
func TestKillShims(t *testing.T) {
	addr := "/run/vc-test/" + t.Name() + "/containerd.sock"
	start := func(address string) *exec.Cmd {
		cmd := exec.Command("/bin/sh")
		cmd.Args = []string{"/fake/containerd-shim-test-v2", "-c", "sleep 1000 & wait", "-namespace", "-address", address}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The whole group: the shell and its sleep.
		t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
		return cmd
	}
	mine := start(addr)
	other := start(addr + ".other")
	// Wait for the shell to fork its sleep, and for the sleep to exec:
	// until then the child has the shell's command line.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := 0
		for pid, ppid := range parents() {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if ppid == mine.Process.Pid && strings.TrimSpace(string(comm)) == "sleep" {
				n++
			}
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("fake shim never forked")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if pids := shimPids(addr); len(pids) != 1 || pids[0] != mine.Process.Pid {
		t.Fatalf("shimPids = %v, want [%d]", pids, mine.Process.Pid)
	}
	if n := killShims(addr); n != 2 {
		t.Errorf("killShims killed %d processes, want the shim and its child", n)
	}
	if err := mine.Wait(); err == nil {
		t.Error("fake shim exited cleanly: not killed")
	}
	// Its shell may be forking its sleep: the child has the same command
	// line until it execs, so only the shell's presence is checked.
	if pids := shimPids(addr + ".other"); !slices.Contains(pids, other.Process.Pid) {
		t.Errorf("the other daemon's shim (%d) is gone: %v", other.Process.Pid, pids)
	}
}

func TestMedian(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var d []time.Duration
		for _, x := range n {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{ms(5), 5 * time.Millisecond},
		{ms(9, 1, 5), 5 * time.Millisecond},
		{ms(4, 1, 3, 2), 2500 * time.Microsecond},
	} {
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
