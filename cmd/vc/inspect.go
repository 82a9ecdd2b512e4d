package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("inspect", command{usage: "[-f TEMPLATE] CONTAINER", short: "print a container's and its VM's state as JSON", run: inspectCmd})
}

// inspectInfo is what vc inspect prints: docker's fields for what a
// container has in common with docker's (Id, State, Config,
// NetworkSettings...), for docker's templates, and vc's own records of
// the sandbox and its containers.
type inspectInfo struct {
	ID              string               `json:"Id"`
	Name            string               `json:"Name"`
	Created         time.Time            `json:"Created"`
	Image           string               `json:"Image"`
	State           inspectState         `json:"State"`
	Config          inspectConfig        `json:"Config"`
	NetworkSettings inspectNetwork       `json:"NetworkSettings"`
	Sandbox         vc.SandboxStatus     `json:"sandbox"`
	Containers      []vc.ContainerStatus `json:"containers"`
}

type inspectState struct {
	// Status is docker's: created, running, paused or exited.
	Status   string `json:"Status"`
	Running  bool   `json:"Running"`
	Paused   bool   `json:"Paused"`
	ExitCode int32  `json:"ExitCode"`
	// Pid is the VM's process, the container's processes being the
	// guest's.
	Pid        int       `json:"Pid"`
	FinishedAt time.Time `json:"FinishedAt"`
}

type inspectConfig struct {
	Hostname   string   `json:"Hostname"`
	Image      string   `json:"Image"`
	Cmd        []string `json:"Cmd"`
	Env        []string `json:"Env"`
	WorkingDir string   `json:"WorkingDir"`
}

type inspectNetwork struct {
	// IPAddress is the guest's IPv4 address while the container runs:
	// the NAT's guest address, or the first the guest has in the
	// network namespace it joined; empty without one (docker's too).
	IPAddress string `json:"IPAddress"`
	// Ports are the published ports, as docker's: "80/tcp" to where the
	// host listens.
	Ports map[string][]inspectPort `json:"Ports"`
	// Networks is the user network the container is on, while it runs
	// (docker's .NetworkSettings.Networks.NAME.IPAddress).
	Networks map[string]inspectEndpoint `json:"Networks,omitempty"`
}

type inspectEndpoint struct {
	NetworkID   string   `json:"NetworkID"`
	IPAddress   string   `json:"IPAddress"`
	IPPrefixLen int      `json:"IPPrefixLen"`
	Gateway     string   `json:"Gateway"`
	MacAddress  string   `json:"MacAddress"`
	Aliases     []string `json:"Aliases"`
}

type inspectPort struct {
	HostIP   string `json:"HostIp"`
	HostPort string `json:"HostPort"`
}

func inspectCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("inspect", commands["inspect"].usage)
	format := fs.String("f", "", "print this Go template of the JSON instead, e.g. {{.State.Status}} or {{.NetworkSettings.IPAddress}} (functions: json, join, split, upper, lower)")
	fs.StringVar(format, "format", "", "the same as -f")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("CONTAINER: want exactly one")
	}
	tmpl, err := inspectTemplate(*format)
	if err != nil {
		return err
	}
	name, err := resolveContainer(ctx, g, fs.Arg(0))
	if err != nil {
		return err
	}
	info, err := inspectContainer(ctx, g, name)
	if err != nil {
		return err
	}
	return printInspect(os.Stdout, info, tmpl)
}

// inspectContainer gathers what vc inspect prints of container name.
func inspectContainer(ctx context.Context, g *globals, name string) (inspectInfo, error) {
	s, err := vc.FetchSandbox(ctx, g.stateRoot, name)
	if err != nil {
		return inspectInfo{}, err
	}
	defer s.Close()
	cs, err := s.ListContainers(ctx)
	if err != nil {
		return inspectInfo{}, err
	}
	sb := s.Status()
	info := inspectInfo{ID: containerID(g, name), Name: name, Created: sb.Created, Sandbox: sb, Containers: cs,
		State:           inspectState{Status: dockerStatus(sb.State), Pid: sb.VMPid},
		NetworkSettings: inspectNetwork{Ports: inspectPorts(sb.Config.NAT.Publish)}}
	for _, c := range cs {
		if c.ID != name {
			continue
		}
		info.Image = c.Config.Annotations["vc.image"]
		info.Config.Image = info.Image
		if sp := c.Config.Spec; sp != nil {
			info.Config.Hostname = sp.Hostname
			if sp.Process != nil {
				info.Config.Cmd, info.Config.Env, info.Config.WorkingDir = sp.Process.Args, sp.Process.Env, sp.Process.Cwd
			}
		}
		info.State.Status, info.State.ExitCode, info.State.FinishedAt = dockerStatus(c.State), c.ExitCode, c.Exited
	}
	info.State.Running = info.State.Status == "running" || info.State.Status == "paused"
	info.State.Paused = info.State.Status == "paused"
	if !info.State.Running {
		info.State.Pid = 0
		return info, nil
	}
	ip, err := guestIP(ctx, s)
	if err != nil {
		return info, err
	}
	info.NetworkSettings.IPAddress = ip
	info.NetworkSettings.Networks = userNetworkOf(g, name)
	return info, nil
}

// userNetworkOf is the user network container name holds an address of,
// if any.
func userNetworkOf(g *globals, name string) map[string]inspectEndpoint {
	o, err := savedOptions(g, name)
	if err != nil || o.Network == "" {
		return nil
	}
	st, err := openNetworkStore(g)
	if err != nil {
		return nil
	}
	n, leases, err := st.Get(o.Network)
	if err != nil {
		return nil
	}
	for _, l := range leases {
		if l.Container == name {
			return map[string]inspectEndpoint{n.Name: {NetworkID: n.ID, IPAddress: l.Addr.String(), IPPrefixLen: n.Subnet.Bits(),
				Gateway: n.Gateway.String(), MacAddress: l.MAC, Aliases: l.Aliases}}
		}
	}
	return nil
}

// guestIP is the address the running sandbox s has: the NAT's guest
// address, or the first IPv4 address on a link of the guest's but
// loopback in the network namespace it joined; none with --network none.
func guestIP(ctx context.Context, s *vc.Sandbox) (string, error) {
	cfg := s.Status().Config
	switch {
	case cfg.NetNS == "" && cfg.NAT.Disabled:
		return "", nil
	case cfg.NetNS == "":
		return vc.NATGuestAddr.String(), nil
	}
	ifs, err := s.ListInterfaces(ctx)
	if err != nil {
		return "", err
	}
	for _, i := range ifs {
		for _, a := range i.Addrs {
			if a.Addr().Is4() && !a.Addr().IsLoopback() {
				return a.Addr().String(), nil
			}
		}
	}
	return "", nil
}

// dockerStatus is docker's name of state st.
func dockerStatus(st vc.State) string {
	if st == vc.StateStopped {
		return "exited"
	}
	return string(st)
}

func inspectPorts(ports []vc.PortMapping) map[string][]inspectPort {
	out := map[string][]inspectPort{}
	for _, p := range ports {
		ip, proto := p.HostIP, p.Protocol
		if ip == "" {
			ip = "0.0.0.0"
		}
		if proto == "" {
			proto = "tcp"
		}
		k := fmt.Sprintf("%d/%s", p.ContainerPort, proto)
		out[k] = append(out[k], inspectPort{HostIP: ip, HostPort: strconv.Itoa(p.HostPort)})
	}
	return out
}

// inspectTemplate parses -f's template; nil for none (indented JSON).
func inspectTemplate(format string) (*template.Template, error) {
	if format == "" {
		return nil, nil
	}
	funcs := template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"join":  func(l []any, sep string) string { return strings.Join(strs(l), sep) },
		"split": strings.Split,
		"upper": strings.ToUpper,
		"lower": strings.ToLower,
	}
	t, err := template.New("format").Funcs(funcs).Parse(format)
	if err != nil {
		return nil, fmt.Errorf("--format %q: %w", format, err)
	}
	return t, nil
}

func strs(l []any) []string {
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = fmt.Sprint(v)
	}
	return out
}

// printInspect writes info as indented JSON, or through tmpl. The template
// sees the JSON (as docker's sees its fields by their JSON names), so that
// {{.State.Status}} and {{.sandbox.config.memory_mib}} both work.
func printInspect(w io.Writer, info inspectInfo, tmpl *template.Template) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	if tmpl == nil {
		var out bytes.Buffer
		json.Indent(&out, b, "", "  ")
		out.WriteByte('\n')
		_, err := w.Write(out.Bytes())
		return err
	}
	var v map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // numbers print as they are, not as 2.68435456e+08
	if err := d.Decode(&v); err != nil {
		return err
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, v); err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}
