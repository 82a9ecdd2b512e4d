package vc

import (
	"cmp"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/persist"
)

// Docker writes /etc/hosts, /etc/hostname and /etc/resolv.conf for every
// container; a front end that plays docker's part (vc run, vc-runtime
// when the engine above it did not) asks for them with BindEtcFiles.
// Engines (podman, docker, containerd's CRI) bind files of their own,
// which are never overridden.

// etcFilesDir is where a container's files live in the sandbox's
// directory: they go with the container (Delete) or the sandbox.
func (s *Sandbox) etcFilesDir(cid string) string { return filepath.Join(s.Dir(), "etc", cid) }

// EtcFile is where BindEtcFiles writes container cid's /etc/NAME
// (hosts, hostname, resolv.conf) on the host; the file is there only if
// BindEtcFiles bound it.
func (s *Sandbox) EtcFile(cid, name string) string {
	return filepath.Join(s.etcFilesDir(cid), name)
}

// noHostAddr is the address a container's hostname maps to in its
// /etc/hosts when the guest has no address of its own (Debian's
// convention for a host without a permanent address).
var noHostAddr = netip.MustParseAddr("127.0.1.1")

// BindEtcFiles gives the container ccfg describes the /etc/hosts and
// /etc/hostname docker gives its containers and, behind the NAT, the
// /etc/resolv.conf naming the NAT's resolver: files written in the
// sandbox's directory, bound read-only over the container's. A file the
// spec already mounts (a user's -v, an engine's) is left alone. Call it
// before CreateContainer; Container.Delete removes the files.
func (s *Sandbox) BindEtcFiles(ccfg *ContainerConfig) error {
	if err := persist.ValidateID("container id", ccfg.ID); err != nil {
		return err
	}
	if ccfg.Spec == nil {
		return fmt.Errorf("container %s: spec: missing: %w", ccfg.ID, errdefs.ErrInvalidArgument)
	}
	st := s.Status()
	hostname := containerHostname(ccfg, st)
	files := map[string]string{
		"/etc/hosts":    etcHosts(hostname, guestAddr(st)),
		"/etc/hostname": hostname + "\n",
	}
	if st.Config.NATEnabled() {
		files["/etc/resolv.conf"] = "nameserver " + NATDNS.String() + "\n"
	}
	for _, m := range ccfg.Spec.Mounts {
		delete(files, filepath.Clean(m.Destination))
	}
	// In a user namespace of its own the mountpoint would be made by the
	// container's root, which need not own the root filesystem (runc's
	// linux_uid_mappings validation maps it to an unprivileged uid): a
	// file the root filesystem lacks is not added.
	if hasUserNS(ccfg.Spec) && ccfg.Rootfs != "" {
		for dst := range files {
			if _, err := os.Lstat(filepath.Join(ccfg.Rootfs, dst)); err != nil {
				delete(files, dst)
			}
		}
	}
	if len(files) == 0 {
		return nil
	}
	dir := s.etcFilesDir(ccfg.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("container %s: /etc files: %w", ccfg.ID, err)
	}
	// In a fixed order: the spec's mounts are applied in order.
	for _, dst := range []string{"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"} {
		body, ok := files[dst]
		if !ok {
			continue
		}
		src := s.EtcFile(ccfg.ID, filepath.Base(dst))
		if err := os.WriteFile(src, []byte(body), 0o644); err != nil {
			return fmt.Errorf("container %s: %s: %w", ccfg.ID, dst, err)
		}
		ccfg.Spec.Mounts = append(ccfg.Spec.Mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", "ro"}})
	}
	return nil
}

func hasUserNS(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.UserNamespace {
			return true
		}
	}
	return false
}

// containerHostname is the hostname the container will have: its spec's
// in a UTS namespace of its own; else the guest's (a new UTS namespace
// starts as a copy of it; the sandbox's shared one, which a pod's
// containers join, has it).
func containerHostname(ccfg *ContainerConfig, st SandboxStatus) string {
	if ccfg.Spec.Hostname != "" && !ccfg.PodInfra && ccfg.Spec.Linux != nil {
		for _, ns := range ccfg.Spec.Linux.Namespaces {
			if ns.Type == specs.UTSNamespace && ns.Path == "" {
				return ccfg.Spec.Hostname
			}
		}
	}
	return cmp.Or(st.Config.Hostname, shortID(st.ID))
}

// etcHosts is docker's /etc/hosts of a container named hostname at addr.
func etcHosts(hostname string, addr netip.Addr) string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("ff00::0\tip6-mcastprefix\n")
	b.WriteString("ff02::1\tip6-allnodes\n")
	b.WriteString("ff02::2\tip6-allrouters\n")
	fmt.Fprintf(&b, "%s\t%s\n", addr, hostname)
	return b.String()
}

// guestAddr is the guest's own address: the first address of a link of
// the network namespace or of a bridge (IPv4 first), else the NAT's, else
// noHostAddr.
func guestAddr(st SandboxStatus) netip.Addr {
	if st.Config.NATEnabled() && len(st.Endpoints) == 0 {
		return NATGuestAddr
	}
	var v6 netip.Addr
	for _, ep := range st.Endpoints {
		for _, p := range ep.Addrs {
			switch a := p.Addr(); {
			case a.Is4():
				return a
			case !v6.IsValid():
				v6 = a
			}
		}
	}
	if v6.IsValid() {
		return v6
	}
	return noHostAddr
}
