package oci

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	pb "github.com/virtcontainers/vc/api/agent"
)

// anyDevice is a device cgroup rule's major or minor as the rule means
// it: -1 for any.
func anyDevice(p *int64) int64 {
	if p == nil || *p < 0 {
		return -1
	}
	return *p
}

// FuzzSpecCodec decodes a config.json as the runtimes do, encodes it for
// the agent, marshals and unmarshals it as the wire does, and decodes it
// as the agent does. What confines the container reaches the agent
// unchanged: the process (its arguments, environment, user,
// capabilities, no_new_privileges, rlimits), the root, mounts,
// namespaces, masked and read-only paths, sysctls, id mappings, seccomp
// and the device cgroup rules (each matching the same devices). A second
// pass changes nothing more.
func FuzzSpecCodec(f *testing.F) {
	full, _ := json.Marshal(fullSpec())
	f.Add(full)
	def, _ := json.Marshal(DefaultSpec([]string{"sh", "-c", "true"}, []string{"A=b"}, "/", true))
	f.Add(def)
	f.Add([]byte(`{"ociVersion":"1.2.0","process":{"args":["a"],"user":{"uid":0,"gid":0}},"root":{"path":"rootfs"},"linux":{"resources":{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"b","major":-1,"minor":3,"access":"r"}]}}}`))
	f.Add([]byte(`{"process":{"args":["a"],"oomScoreAdj":0,"rlimits":[{"type":"RLIMIT_STACK","hard":18446744073709551615,"soft":8388608}]},"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["kill"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var in specs.Spec
		if err := json.Unmarshal(data, &in); err != nil {
			return
		}
		wire := func(s *specs.Spec) *specs.Spec {
			b, err := proto.Marshal(ToProto(s))
			if err != nil {
				t.Fatalf("the encoded spec does not marshal: %v", err)
			}
			var p pb.Spec
			if err := proto.Unmarshal(b, &p); err != nil {
				t.Fatalf("the marshalled spec does not unmarshal: %v", err)
			}
			return FromProto(&p)
		}
		out := wire(&in)
		same := func(field string, a, b any) {
			t.Helper()
			ja, jb := canon(t, a), canon(t, b)
			if !bytes.Equal(ja, jb) {
				t.Errorf("%s changed on the way to the agent:\n in  %s\n out %s", field, ja, jb)
			}
		}
		same("root", in.Root, out.Root)
		same("hostname", in.Hostname, out.Hostname)
		same("mounts", in.Mounts, out.Mounts)
		if (in.Process == nil) != (out.Process == nil) {
			t.Fatalf("process: %v, decoded %v", in.Process, out.Process)
		}
		if p, q := in.Process, out.Process; p != nil {
			same("process.args", p.Args, q.Args)
			same("process.env", p.Env, q.Env)
			same("process.cwd", p.Cwd, q.Cwd)
			same("process.user", p.User, q.User)
			same("process.capabilities", p.Capabilities, q.Capabilities)
			same("process.noNewPrivileges", p.NoNewPrivileges, q.NoNewPrivileges)
			same("process.rlimits", p.Rlimits, q.Rlimits)
			same("process.apparmorProfile", p.ApparmorProfile, q.ApparmorProfile)
			same("process.selinuxLabel", p.SelinuxLabel, q.SelinuxLabel)
		}
		if l, m := in.Linux, out.Linux; l != nil {
			if m == nil {
				t.Fatal("linux: dropped")
			}
			same("linux.namespaces", l.Namespaces, m.Namespaces)
			same("linux.maskedPaths", l.MaskedPaths, m.MaskedPaths)
			same("linux.readonlyPaths", l.ReadonlyPaths, m.ReadonlyPaths)
			same("linux.sysctl", l.Sysctl, m.Sysctl)
			same("linux.uidMappings", l.UIDMappings, m.UIDMappings)
			same("linux.gidMappings", l.GIDMappings, m.GIDMappings)
			same("linux.seccomp", l.Seccomp, m.Seccomp)
			if r := l.Resources; r != nil {
				// A rule for device 0:0 (none) matches nothing: it
				// need not be sent.
				var devs []specs.LinuxDeviceCgroup
				for _, d := range r.Devices {
					if anyDevice(d.Major) != 0 || anyDevice(d.Minor) != 0 {
						devs = append(devs, d)
					}
				}
				if m.Resources == nil || len(m.Resources.Devices) != len(devs) {
					t.Fatalf("linux.resources.devices: %+v, decoded %+v", r, m.Resources)
				}
				for i, d := range devs {
					e := m.Resources.Devices[i]
					if d.Allow != e.Allow || d.Type != e.Type || d.Access != e.Access ||
						anyDevice(d.Major) != anyDevice(e.Major) || anyDevice(d.Minor) != anyDevice(e.Minor) {
						t.Errorf("linux.resources.devices (but 0:0) [%d] %s %v:%v (allow %v) decoded as %s %v:%v (allow %v)", i,
							d.Type, anyDevice(d.Major), anyDevice(d.Minor), d.Allow, e.Type, anyDevice(e.Major), anyDevice(e.Minor), e.Allow)
					}
				}
			}
		}
		if again := wire(out); !reflect.DeepEqual(again, out) {
			t.Errorf("a second pass changed the spec:\n once  %+v\n twice %+v", out, again)
		}
	})
}

// canon is v's JSON without empty lists and objects, at any depth: the
// wire does not tell an empty list from none (a zero, which may mean
// something, stays).
func canon(t *testing.T, v any) []byte {
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var x any
	if err := json.Unmarshal(j, &x); err != nil {
		t.Fatal(err)
	}
	var prune func(any) any
	prune = func(x any) any {
		switch x := x.(type) {
		case map[string]any:
			for k, v := range x {
				if v = prune(v); v == nil {
					delete(x, k)
				} else {
					x[k] = v
				}
			}
			if len(x) == 0 {
				return nil
			}
		case []any:
			for i := range x {
				x[i] = prune(x[i])
			}
			if len(x) == 0 {
				return nil
			}
		}
		return x
	}
	out, _ := json.Marshal(prune(x))
	return out
}
