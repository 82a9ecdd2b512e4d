package e2e

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The user network tests keep their networks in a data root of their own
// (an imgEnv's) and use subnets of 10.89.0.0/16, which no other test
// uses.

type netInspect struct {
	Name       string
	ID         string `json:"Id"`
	IPAM       struct{ Config []map[string]string }
	Containers map[string]struct{ Name, IPv4Address string }
	Options    map[string]string
}

func (e *imgEnv) inspectNetwork(t *testing.T, name string) netInspect {
	t.Helper()
	var ns []netInspect
	out := e.must(t, "network", "inspect", name)
	if err := json.Unmarshal([]byte(out), &ns); err != nil || len(ns) != 1 {
		t.Fatalf("network inspect %s: %v\n%s", name, err, out)
	}
	return ns[0]
}

// nsLinks are the links of the network namespace pinned at path, nil if
// none is pinned there.
func nsLinks(t *testing.T, path string) []string {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ls, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		out = append(out, l.Attrs().Name)
	}
	return out
}

// waitHTTP is a shell command (a subshell) printing http://host/, tried for up to 20 s
// while the server is not listening yet (connection refused); a name
// that does not resolve fails at once.
func waitHTTP(host string) string {
	return "(for i in $(seq 100); do wget -qO- http://" + host + "/ 2>/tmp/err && exit 0; grep -q refused /tmp/err || break; sleep 0.2; done; cat /tmp/err >&2; exit 1)"
}

// Containers on a user network reach each other by address, name and
// alias, a container started later is known to those before it, the
// addresses are distinct and in the subnet; the network cannot be
// removed while a container has it, and nothing is left once they and
// it are gone.
func TestUserNetwork(t *testing.T) {
	e := newImgEnv(t)
	const net, srv, late, cli = "e2e-net", "e2e-net-srv", "e2e-net-late", "e2e-net-cli"
	subnet := netip.MustParsePrefix("10.89.7.0/24")
	t.Cleanup(func() {
		e.vc(t, "rm", "-f", srv, late, cli)
		e.vc(t, "network", "rm", net)
	})
	e.must(t, "network", "create", "--subnet", subnet.String(), net)
	n := e.inspectNetwork(t, net)
	bridge := n.Options["com.docker.network.bridge.name"]
	if n.IPAM.Config[0]["Subnet"] != subnet.String() || n.IPAM.Config[0]["Gateway"] != "10.89.7.1" || bridge == "" {
		t.Fatalf("inspect: %+v", n)
	}
	nsPath := filepath.Join(e.data, "networks", net, "netns")
	if got := nsLinks(t, nsPath); got != nil {
		t.Fatalf("the bridge's namespace made before any container runs: %v", got)
	}
	httpd := "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"
	if out, errOut, code := e.vc(t, "run", "-d", "--name", srv, "--network", net, "--network-alias", "web", "busybox", "--", "sh", "-c", httpd); code != 0 {
		t.Fatalf("run %s: exit %d %s%s", srv, code, out, errOut)
	}
	n = e.inspectNetwork(t, net)
	var srvIP netip.Addr
	for _, c := range n.Containers {
		if c.Name == srv {
			srvIP = netip.MustParsePrefix(c.IPv4Address).Addr()
		}
	}
	if !srvIP.IsValid() || !subnet.Contains(srvIP) {
		t.Fatalf("%s's address %v: want one in %s (inspect %+v)", srv, srvIP, subnet, n)
	}
	if out := e.must(t, "inspect", "-f", `{{(index .NetworkSettings.Networks "`+net+`").IPAddress}}`, srv); strings.TrimSpace(out) != srvIP.String() {
		t.Errorf("inspect's address on %s: %q, want %s", net, out, srvIP)
	}
	if got := nsLinks(t, nsPath); !slices.Contains(got, bridge) || len(got) != 3 {
		t.Fatalf("the network's namespace while a container runs: links %v, want lo, %s and a tap", got, bridge)
	}
	// By address, by name, by alias; its own address on eth1.
	// run -d returns once the server's shell runs, maybe before httpd
	// listens: the first fetch waits for it.
	script := waitHTTP(srvIP.String()) + " && wget -qO- http://" + srv + "/ && wget -qO- http://web/ && ip -4 -o addr show eth1 | awk '{print $4}'; ping -c 1 -W 5 " + srv + " | head -1"
	out, errOut, code := e.vc(t, "run", "--rm", "--name", cli, "--network", net, "busybox", "--", "sh", "-c", script)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 5 || lines[0] != "hello from "+srv {
		t.Fatalf("client: exit %d stdout %q stderr %q; want the server's page three times, its address and a ping", code, out, errOut)
	}
	if lines[1] != lines[0] || lines[2] != lines[0] {
		t.Errorf("by name, by alias: %q, %q; want %q", lines[1], lines[2], lines[0])
	}
	cliIP, err := netip.ParsePrefix(lines[3])
	if err != nil || cliIP.Bits() != 24 || !subnet.Contains(cliIP.Addr()) || cliIP.Addr() == srvIP {
		t.Errorf("client's eth1 address %q: want another address of %s than the server's %s", lines[3], subnet, srvIP)
	}
	if !strings.Contains(lines[4], "("+srvIP.String()+")") {
		t.Errorf("ping %s: %q, want it resolved to %s", srv, lines[4], srvIP)
	}
	noLeftovers(t, cli)

	// Started after the server: the server finds it by name.
	if out, errOut, code := e.vc(t, "run", "-d", "--name", late, "--network", net, "busybox", "--", "sh", "-c", httpd); code != 0 {
		t.Fatalf("run %s: exit %d %s%s", late, code, out, errOut)
	}
	out, errOut, code = e.vc(t, "exec", srv, "sh", "-c", waitHTTP(late))
	if code != 0 || !strings.HasPrefix(out, "hello from ") {
		t.Fatalf("%s reaching %s by name: exit %d stdout %q stderr %q", srv, late, code, out, errOut)
	}
	n = e.inspectNetwork(t, net)
	seen := map[string]bool{}
	for _, c := range n.Containers {
		a := netip.MustParsePrefix(c.IPv4Address).Addr()
		if seen[a.String()] || !subnet.Contains(a) || a.String() == "10.89.7.1" {
			t.Errorf("address %s of %s: twice, outside %s or the gateway's", a, c.Name, subnet)
		}
		seen[a.String()] = true
	}
	if len(n.Containers) != 2 {
		t.Errorf("containers on the network: %+v, want %s and %s", n.Containers, srv, late)
	}

	// In use: refused, naming the container; the network stays.
	_, errOut, code = e.vc(t, "network", "rm", net)
	if code != 125 || !strings.Contains(errOut, "in use") || !strings.Contains(errOut, srv) {
		t.Fatalf("network rm while in use: exit %d stderr %q; want 125 naming %s", code, errOut, srv)
	}
	e.must(t, "rm", "-f", srv, late)
	noLeftovers(t, srv)
	noLeftovers(t, late)
	if _, err := os.Stat(nsPath); !os.IsNotExist(err) {
		t.Errorf("the bridge's namespace left once no container runs (%v): links %v", err, nsLinks(t, nsPath))
	}
	if ents, _ := os.ReadDir(filepath.Join(e.data, "networks", net, "leases")); len(ents) != 0 {
		t.Errorf("leases left: %v", ents)
	}
	if out, errOut, code := e.vc(t, "network", "rm", net); code != 0 || out != net+"\n" {
		t.Fatalf("network rm: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(e.data, "networks", net)); !os.IsNotExist(err) {
		t.Errorf("the removed network's directory: %v", err)
	}
}

// Bad input is refused with exit 125 and an error naming the field, and
// leaves nothing: no container, lease, bridge or namespace; nor does a
// container that fails to start once its VM is on the network.
func TestUserNetworkBadInput(t *testing.T) {
	e := newImgEnv(t)
	const net = "e2e-net-bad"
	t.Cleanup(func() { e.vc(t, "network", "rm", net) })
	e.must(t, "network", "create", "--subnet", "10.89.8.0/24", net)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "--subnet", "10.89.9.0/33", "e2e-net-x"}, "--subnet"},
		{[]string{"network", "create", "--subnet", "10.89.9.1/24", "e2e-net-x"}, "--subnet"},
		{[]string{"network", "create", "--subnet", "10.89.9.0/24", "--gateway", "10.89.10.1", "e2e-net-x"}, "--gateway"},
		{[]string{"network", "create", "--subnet", "10.89.8.0/25", "e2e-net-x"}, "overlaps network " + net},
		{[]string{"network", "create", net}, "already exists"},
		{[]string{"network", "create", "none"}, "reserved"},
		{[]string{"network", "rm", "e2e-net-missing"}, "not found"},
		{[]string{"run", "--rm", "--name", "e2e-net-b1", "--network", "e2e-net-missing", "busybox", "true"}, "--network"},
		{[]string{"run", "--rm", "--name", "e2e-net-b2", "--network", net, "--ip", "10.89.9.5", "busybox", "true"}, "--ip"},
		{[]string{"run", "--rm", "--name", "e2e-net-b3", "--network", net, "--ip", "10.89.8.1", "busybox", "true"}, "--ip"},
		{[]string{"run", "-d", "--name", "e2e-net-b4", "--network", net, "--ip", "nope", "busybox", "true"}, "--ip"},
		{[]string{"run", "--rm", "--name", "e2e-net-b5", "--ip", "10.89.8.5", "busybox", "true"}, "--ip"},
	} {
		out, errOut, code := e.vc(t, c.args...)
		if code != 125 || !strings.Contains(errOut, c.want) {
			t.Errorf("vc %s: exit %d stdout %q stderr %q; want 125 and %q", strings.Join(c.args, " "), code, out, errOut, c.want)
		}
	}
	// Fails once the VM is on the network: undone all the same.
	if out, errOut, code := e.vc(t, "run", "--rm", "--name", "e2e-net-b6", "--network", net, "busybox", "--", "/no/such/cmd"); code != 127 {
		t.Errorf("run of a missing command on the network: exit %d stdout %q stderr %q; want 127", code, out, errOut)
	}
	for _, id := range []string{"e2e-net-b1", "e2e-net-b2", "e2e-net-b3", "e2e-net-b4", "e2e-net-b5", "e2e-net-b6"} {
		noLeftovers(t, id)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.data, "networks", net, "leases")); len(ents) != 0 {
		t.Errorf("leases left: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(e.data, "networks", net, "netns")); !os.IsNotExist(err) {
		t.Errorf("the bridge's namespace left: %v", err)
	}
	if names := strings.Fields(e.must(t, "network", "ls", "-q")); len(names) != 1 || names[0] != net {
		t.Errorf("networks: %q, want %s alone", names, net)
	}
}

// A stopped container keeps its network: network rm is refused, naming
// it; vc start runs it on the network again (an address of its own, the
// one asked for); once it is removed the network goes.
func TestUserNetworkStoppedContainer(t *testing.T) {
	e := newImgEnv(t)
	const net, id = "e2e-net-stop", "e2e-net-stopped"
	t.Cleanup(func() {
		e.vc(t, "rm", "-f", id)
		e.vc(t, "network", "rm", net)
	})
	e.must(t, "network", "create", "--subnet", "10.89.11.0/24", net)
	script := "ip -4 -o addr show eth1 | awk '{print $4}'"
	if out, errOut, code := e.vc(t, "run", "--name", id, "--network", net, "--ip", "10.89.11.77", "busybox", "--", "sh", "-c", script); code != 0 || out != "10.89.11.77/24\n" {
		t.Fatalf("run: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if n := e.inspectNetwork(t, net); len(n.Containers) != 0 {
		t.Errorf("a stopped container holds an address: %+v", n.Containers)
	}
	_, errOut, code := e.vc(t, "network", "rm", net)
	if code != 125 || !strings.Contains(errOut, id+" (stopped)") && !strings.Contains(errOut, id+" (exited)") {
		t.Fatalf("network rm with a stopped container on it: exit %d stderr %q; want 125 naming %s", code, errOut, id)
	}
	if out, errOut, code := e.vc(t, "start", "-a", id); code != 0 || out != "10.89.11.77/24\n" {
		t.Fatalf("start -a: exit %d stdout %q stderr %q; want the address again", code, out, errOut)
	}
	e.must(t, "rm", id)
	noLeftovers(t, id)
	if out, errOut, code := e.vc(t, "network", "rm", net); code != 0 || out != net+"\n" {
		t.Fatalf("network rm once the container is gone: exit %d stdout %q stderr %q", code, out, errOut)
	}
}
