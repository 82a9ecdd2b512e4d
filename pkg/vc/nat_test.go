package vc

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParsePortMapping(t *testing.T) {
	good := map[string]PortMapping{
		"8080:80":               {HostPort: 8080, ContainerPort: 80},
		"127.0.0.1:5353:53/udp": {HostIP: "127.0.0.1", HostPort: 5353, ContainerPort: 53, Protocol: "udp"},
		" 1:65535/tcp ":         {HostPort: 1, ContainerPort: 65535, Protocol: "tcp"},
		"10.1.2.3:443:8443":     {HostIP: "10.1.2.3", HostPort: 443, ContainerPort: 8443},
		"0.0.0.0:9000:9000/udp": {HostIP: "0.0.0.0", HostPort: 9000, ContainerPort: 9000, Protocol: "udp"},
	}
	for in, want := range good {
		got, err := ParsePortMapping(in)
		if err != nil || got != want {
			t.Errorf("ParsePortMapping(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"80":              "not two or three fields",
		"8080:80/sctp":    `protocol "sctp"`,
		"0:80":            `host port "0"`,
		"8080:65536":      `container port "65536"`,
		"x:80":            `host port "x"`,
		"::1:8080:80":     "not two or three fields",
		"localhost:80:80": `host address "localhost"`,
		"[::1]:80:80":     "not two or three fields",
	}
	for in, want := range bad {
		_, err := ParsePortMapping(in)
		if err == nil || !strings.Contains(err.Error(), want) || !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParsePortMapping(%q): got %v, want an invalid-argument error with %q", in, err, want)
		}
	}
	ms, err := ParsePortMappings("8080:80, 127.0.0.1:5353:53/udp")
	if err != nil || len(ms) != 2 || ms[1].String() != "127.0.0.1:5353:53/udp" || ms[0].String() != "8080:80" {
		t.Errorf("ParsePortMappings: %+v, %v", ms, err)
	}
	if _, err := ParsePortMappings("8080:80,99999:1"); err == nil || !strings.Contains(err.Error(), "entry 2") {
		t.Errorf("ParsePortMappings with a bad second entry: %v", err)
	}
}

// validateNAT refuses, naming the entry, a publish the sandbox cannot
// honour: with a network namespace, with the NAT off, twice the same host
// port, or a host port in use.
func TestValidateNAT(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	ns := filepath.Join(t.TempDir(), "ns")
	os.WriteFile(ns, nil, 0o600)
	cases := []struct {
		name string
		cfg  SandboxConfig
		want string
		is   func(error) bool
	}{
		{"netns", SandboxConfig{NetNS: ns, NAT: NATConfig{Publish: []PortMapping{{HostPort: 8080, ContainerPort: 80}}}},
			"nat.publish: the sandbox joins network namespace", errdefs.IsInvalidArgument},
		{"disabled", SandboxConfig{NAT: NATConfig{Disabled: true, Publish: []PortMapping{{HostPort: 8080, ContainerPort: 80}}}},
			"nat.publish: the NAT is disabled", errdefs.IsInvalidArgument},
		{"duplicate", SandboxConfig{NAT: NATConfig{Publish: []PortMapping{{HostPort: 18080, ContainerPort: 80}, {HostIP: "127.0.0.1", HostPort: 18080, ContainerPort: 81}}}},
			"forwards[1] 127.0.0.1:18080:81/tcp: host port already forwarded", errdefs.IsAlreadyExists},
		{"bad port", SandboxConfig{NAT: NATConfig{Publish: []PortMapping{{HostPort: 70000, ContainerPort: 80}}}},
			"nat.publish: nat nic nat0: forwards[0]: host port 70000", errdefs.IsInvalidArgument},
		{"in use", SandboxConfig{NAT: NATConfig{Publish: []PortMapping{{HostPort: 18081, ContainerPort: 81, Protocol: "udp"}, {HostIP: "127.0.0.1", HostPort: busy, ContainerPort: 80}}}},
			"nat.publish[1] 127.0.0.1:" + strconv.Itoa(busy) + ":80: host port: listen tcp4 127.0.0.1:" + strconv.Itoa(busy) + ": bind: address already in use", errdefs.IsFailedPrecondition},
		{"dns with netns", SandboxConfig{NetNS: ns, NAT: NATConfig{DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}}},
			"nat.dns: the sandbox joins network namespace", errdefs.IsInvalidArgument},
		{"dns disabled", SandboxConfig{NAT: NATConfig{Disabled: true, DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}}},
			"nat.dns: the NAT is disabled", errdefs.IsInvalidArgument},
		{"dns loopback", SandboxConfig{NAT: NATConfig{DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("127.0.0.53")}}},
			"nat.dns[1]: resolver 127.0.0.53: a loopback address", errdefs.IsInvalidArgument},
		{"dns ipv6", SandboxConfig{NAT: NATConfig{DNS: []netip.Addr{netip.MustParseAddr("2001:db8::53")}}},
			"nat.dns[0]: resolver 2001:db8::53: want an IPv4 address", errdefs.IsInvalidArgument},
		{"host loopback with netns", SandboxConfig{NetNS: ns, NAT: NATConfig{HostLoopback: true}},
			"nat.host_loopback: the sandbox joins network namespace", errdefs.IsInvalidArgument},
		{"host loopback disabled", SandboxConfig{NAT: NATConfig{Disabled: true, HostLoopback: true}},
			"nat.host_loopback: the NAT is disabled", errdefs.IsInvalidArgument},
	}
	for _, tc := range cases {
		err := tc.cfg.validateNAT()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !tc.is(err) {
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	ok := SandboxConfig{NAT: NATConfig{Publish: []PortMapping{{HostIP: "127.0.0.1", HostPort: 18082, ContainerPort: 80}, {HostPort: 18082, ContainerPort: 53, Protocol: "udp"}}}}
	if err := ok.validateNAT(); err != nil {
		t.Error(err)
	}
	if n, err := ok.natNIC(); err != nil || n == nil || len(n.Forwards) != 2 || n.Forwards[0].HostAddr.String() != "127.0.0.1" || n.Forwards[1].Protocol != "udp" {
		t.Errorf("natNIC: %+v, %v", n, err)
	}
	if n, err := ok.natNIC(); err != nil || n.HostLoopback {
		t.Errorf("natNIC: host loopback %v, %v; want off by default", n.HostLoopback, err)
	}
	hl := SandboxConfig{NAT: NATConfig{HostLoopback: true}}
	if n, err := hl.natNIC(); hl.validateNAT() != nil || err != nil || !n.HostLoopback {
		t.Errorf("natNIC with host loopback: %+v, %v", n, err)
	}
	dns := SandboxConfig{NAT: NATConfig{DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}}}
	if err := dns.validateNAT(); err != nil {
		t.Error(err)
	}
	if n, err := dns.natNIC(); err != nil || n == nil || fmt.Sprint(n.Resolvers) != "[192.0.2.53]" || n.DNS != NATDNS {
		t.Errorf("natNIC with dns: %+v, %v; want resolvers [192.0.2.53]", n, err)
	}
	if n, err := (&SandboxConfig{NetNS: ns}).natNIC(); n != nil || err != nil {
		t.Errorf("natNIC with a netns: %+v, %v; want none", n, err)
	}
	if n, err := (&SandboxConfig{NAT: NATConfig{Disabled: true}}).natNIC(); n != nil || err != nil {
		t.Errorf("natNIC with the NAT disabled: %+v, %v; want none", n, err)
	}
}
