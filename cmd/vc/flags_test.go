package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

func TestExpandShort(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Bool("d", false, "")
	fs.Bool("i", false, "")
	fs.Bool("t", false, "")
	fs.Bool("rm", false, "")
	fs.String("e", "", "")
	fs.String("name", "", "")
	for in, want := range map[string]string{
		"-it busybox sh":                 "-i -t busybox sh",
		"-dit --name x busybox":          "-d -i -t --name x busybox",
		"--rm -it busybox -- ls -la":     "--rm -i -t busybox -- ls -la",
		"-e -it busybox":                 "-e -it busybox", // -it is -e's value
		"-e=K=V -ti busybox -xy":         "-e=K=V -t -i busybox -xy",
		"-ix busybox":                    "-ix busybox", // x is no flag: Parse names it
		"--it busybox":                   "--it busybox",
		"-- -it":                         "-- -it",
		"--name=-it -it busybox cmd -it": "--name=-it -i -t busybox cmd -it",
	} {
		if got := strings.Join(expandShort(fs, strings.Fields(in)), " "); got != want {
			t.Errorf("expandShort(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolveEnv(t *testing.T) {
	t.Setenv("VC_TEST_HOST_VAR", "from-host")
	os.Unsetenv("VC_TEST_UNSET_VAR")
	file := filepath.Join(t.TempDir(), "env")
	os.WriteFile(file, []byte("# comment\n\nA=1\nB=from-file\nVC_TEST_HOST_VAR\n"), 0o600)
	got, err := resolveEnv([]string{"B=from-flag", "VC_TEST_HOST_VAR", "VC_TEST_UNSET_VAR"}, []string{file})
	want := []string{"A=1", "B=from-file", "VC_TEST_HOST_VAR=from-host", "B=from-flag", "VC_TEST_HOST_VAR=from-host"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("resolveEnv = %q, %v; want %q", got, err, want)
	}
	if _, err := resolveEnv([]string{"=x"}, nil); err == nil || !strings.Contains(err.Error(), `-e "=x"`) {
		t.Errorf("-e =x: %v", err)
	}
	if _, err := resolveEnv(nil, []string{"/nonexistent/env"}); err == nil || !strings.Contains(err.Error(), "--env-file") {
		t.Errorf("missing env file: %v", err)
	}
}

func TestCapabilities(t *testing.T) {
	p := oci.DefaultSpec([]string{"true"}, nil, "/", false).Process
	if err := applyCapabilities(p, []string{"net_admin", "CAP_SYS_TIME"}, []string{"chown"}); err != nil {
		t.Fatal(err)
	}
	c := p.Capabilities.Bounding
	if !slices.Contains(c, "CAP_NET_ADMIN") || !slices.Contains(c, "CAP_SYS_TIME") || slices.Contains(c, "CAP_CHOWN") || !slices.Equal(c, p.Capabilities.Effective) {
		t.Errorf("caps %v", c)
	}
	if err := applyCapabilities(p, []string{"KILL"}, []string{"ALL"}); err != nil || !slices.Equal(p.Capabilities.Bounding, []string{"CAP_KILL"}) {
		t.Errorf("drop ALL, add KILL: %v %v", p.Capabilities.Bounding, err)
	}
	if err := applyCapabilities(p, []string{"NOPE"}, nil); err == nil || !strings.Contains(err.Error(), `--cap-add "NOPE"`) {
		t.Errorf("unknown capability: %v", err)
	}
	spec := oci.DefaultSpec([]string{"true"}, nil, "/", false)
	privileged(spec)
	if len(spec.Process.Capabilities.Bounding) != len(allCapabilities) || spec.Linux.MaskedPaths != nil || spec.Process.NoNewPrivileges {
		t.Errorf("privileged: %+v", spec.Process)
	}
	for _, m := range spec.Mounts {
		if (m.Destination == "/sys" || m.Destination == "/sys/fs/cgroup") && slices.Contains(m.Options, "ro") {
			t.Errorf("privileged %s is read-only: %v", m.Destination, m.Options)
		}
	}
}

func TestApplyUser(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\napp:x:1000:1001::/:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "group"), []byte("root:x:0:\nnogroup:x:65534:\nstaff:x:50:\n"), 0o644)
	for in, want := range map[string]specs.User{
		"nobody": {UID: 65534, GID: 65534}, "app": {UID: 1000, GID: 1001}, "1000": {UID: 1000, GID: 1001},
		"4242": {UID: 4242}, "app:staff": {UID: 1000, GID: 50}, "7:8": {UID: 7, GID: 8},
	} {
		p := &specs.Process{}
		if err := applyUser(p, []string{root}, in, "-u"); err != nil || p.User.UID != want.UID || p.User.GID != want.GID {
			t.Errorf("-u %s: %+v %v, want %+v", in, p.User, err, want)
		}
	}
	for _, bad := range []string{"ghost", "app:ghosts", ":1", "1:"} {
		if err := applyUser(&specs.Process{}, []string{root}, bad, "-u"); err == nil || !strings.Contains(err.Error(), "-u") {
			t.Errorf("-u %s: %v, want an error naming -u", bad, err)
		}
	}
}

// vc exec runs with the container's environment, working directory and
// user, as docker exec does; -e adds, -w overrides.
func TestExecProcess(t *testing.T) {
	spec := oci.DefaultSpec([]string{"sleep", "1"}, []string{"APP=1"}, "/srv", false)
	spec.Process.User = specs.User{UID: 1000, GID: 1000}
	p := execProcess(spec, []string{"env"}, []string{"X=2"}, "", false)
	if !slices.Contains(p.Env, "APP=1") || !slices.Contains(p.Env, "X=2") || p.Cwd != "/srv" || p.User.UID != 1000 {
		t.Errorf("exec process %+v", p)
	}
	if p := execProcess(spec, []string{"env"}, nil, "/tmp", false); p.Cwd != "/tmp" {
		t.Errorf("-w: cwd %q", p.Cwd)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{"KILL": 9, "SIGTERM": 15, "term": 15, "9": 9, "SIGUSR1": 10} {
		if got, err := parseSignal(in); err != nil || int(got) != want {
			t.Errorf("parseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"NOPE", "0", "65", "-1", ""} {
		if _, err := parseSignal(bad); err == nil || !strings.Contains(err.Error(), "-s") {
			t.Errorf("parseSignal(%q): %v, want an error naming -s", bad, err)
		}
	}
}

func TestPsFormat(t *testing.T) {
	r := psRow{ID: "a6cf0123beef", Names: "web", Image: "busybox", Command: "httpd -f", State: "running", Status: "running",
		Ports: dockerPorts([]vc.PortMapping{{HostPort: 8080, ContainerPort: 80}, {HostIP: "127.0.0.1", HostPort: 5353, ContainerPort: 53, Protocol: "udp"}})}
	for format, want := range map[string]string{
		"{{.ID}} {{.Names}} {{.State}}": "a6cf0123beef web running\n",
		"{{.Ports}}":                    "0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp\n",
		`table {{.Names}}\t{{.Image}}`:  "NAMES   IMAGE\nweb     busybox\n",
		"json": `{"ID":"a6cf0123beef","Names":"web","Image":"busybox","Command":"httpd -f","State":"running","Status":"running",` +
			`"Ports":"0.0.0.0:8080-\u003e80/tcp, 127.0.0.1:5353-\u003e53/udp","CreatedAt":"0001-01-01T00:00:00Z","ExitCode":0}` + "\n",
		// The default table: docker's columns, NAMES and PORTS among them.
		"": "CONTAINER ID   IMAGE     COMMAND      CREATED   STATUS    PORTS                                          NAMES\n" +
			"a6cf0123beef   busybox   \"httpd -f\"   ? ago     running   0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp   web\n",
	} {
		var b strings.Builder
		print, flush, err := psPrinter(&b, format, false)
		if err != nil {
			t.Fatalf("%q: %v", format, err)
		}
		if err := print(r); err != nil {
			t.Fatal(err)
		}
		flush()
		if b.String() != want {
			t.Errorf("--format %q: %q, want %q", format, b.String(), want)
		}
	}
	if _, _, err := psPrinter(io.Discard, "{{.ID", false); err == nil || !strings.Contains(err.Error(), "--format") {
		t.Errorf("bad template: %v", err)
	}
	var b strings.Builder
	print, flush, _ := psPrinter(&b, "{{.Nope}}", false)
	if err := print(r); err == nil || !strings.Contains(err.Error(), "--format") {
		t.Errorf("unknown field: %v (%q)", err, b.String())
	}
	flush()
}

// --dns takes IPv4 resolvers the NAT can reach, on the NAT network only;
// a bad one is refused naming the flag and the entry.
func TestDNSOptions(t *testing.T) {
	got, err := dnsOptions("nat", []string{"198.18.0.2", "192.0.2.53"})
	if err != nil || fmt.Sprint(got) != "[198.18.0.2 192.0.2.53]" {
		t.Errorf("got %v, %v", got, err)
	}
	if got, err := dnsOptions("", nil); err != nil || got != nil {
		t.Errorf("none: got %v, %v", got, err)
	}
	for _, tc := range []struct {
		network string
		dns     []string
		want    string
	}{
		{"nat", []string{"1.1.1.1", "dns.example"}, `--dns #2 "dns.example"`},
		{"nat", []string{"127.0.0.53"}, "--dns #1: resolver 127.0.0.53: a loopback address"},
		{"nat", []string{"2001:db8::1"}, "--dns #1: resolver 2001:db8::1: want an IPv4 address"},
		{"none", []string{"192.0.2.53"}, `--dns "192.0.2.53": names the NAT's resolver, which needs --network nat (not "none")`},
	} {
		_, err := dnsOptions(tc.network, tc.dns)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s %v: got %v, want an invalid-argument error with %q", tc.network, tc.dns, err, tc.want)
		}
	}
}

// vc check names passt as the NAT (not QEMU's libslirp), and says why the
// NAT cannot run when it cannot.
func TestCheckNATDetail(t *testing.T) {
	ok := natDetail(hypervisor.HostReport{UserNet: true, UserNetPath: "/usr/bin/passt"})
	if !strings.Contains(ok, "passt (/usr/bin/passt)") || strings.Contains(ok, "slirp") {
		t.Errorf("ok: %q", ok)
	}
	no := natDetail(hypervisor.HostReport{UserNetError: "passt, the user-mode network stack, is not installed (apt-get install passt)"})
	if !strings.Contains(no, "apt-get install passt") || !strings.Contains(no, "--network nat and -p do not work") {
		t.Errorf("no passt: %q", no)
	}
}

// --network takes nat, none, a namespace's path or a user network's name;
// -p and --dns stay with the NAT, which a user network keeps.
func TestNetworkOptions(t *testing.T) {
	for _, tc := range []struct {
		network, netns, user string
		noNAT                bool
	}{
		{"nat", "", "", false},
		{"none", "", "", true},
		{"/var/run/netns/x", "/var/run/netns/x", "", false},
		{"backend", "", "backend", false},
	} {
		netns, noNAT, user, _, err := networkOptions(tc.network, nil)
		if err != nil || netns != tc.netns || noNAT != tc.noNAT || user != tc.user {
			t.Errorf("--network %s: netns %q noNAT %v user %q err %v", tc.network, netns, noNAT, user, err)
		}
	}
	if _, _, _, ports, err := networkOptions("backend", []string{"8080:80"}); err != nil || len(ports) != 1 {
		t.Errorf("-p on a user network: %v %v", ports, err)
	}
	if _, err := dnsOptions("backend", []string{"192.0.2.53"}); err != nil {
		t.Errorf("--dns on a user network: %v", err)
	}
	for _, n := range []string{"x", "bad/name", "host"} {
		if _, _, _, _, err := networkOptions(n, nil); err == nil || !strings.Contains(err.Error(), "--network") {
			t.Errorf("--network %q: %v, want refused naming --network", n, err)
		}
	}
	if _, _, _, _, err := networkOptions("none", []string{"80:80"}); err == nil || !strings.Contains(err.Error(), "-p") {
		t.Errorf("-p with --network none: %v", err)
	}
}
