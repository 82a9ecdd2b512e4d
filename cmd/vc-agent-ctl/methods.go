package main

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	pb "github.com/virtcontainers/vc/api/agent"
)

// method is one RPC of the agent's services.
type method struct {
	service string // full service name: grpc.AgentService
	name    string // CreateContainer
	input   protoreflect.MessageType
	output  protoreflect.MessageType
}

// services are the files whose services vc-agent serves.
var services = []protoreflect.FileDescriptor{pb.File_agent_proto, pb.File_health_proto, pb.File_portforward_proto}

// methods lists every RPC of the agent, from the generated descriptors.
func methods() ([]method, error) {
	var ms []method
	for _, fd := range services {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
				if err != nil {
					return nil, fmt.Errorf("%s: input %s: %w", md.FullName(), md.Input().FullName(), err)
				}
				out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
				if err != nil {
					return nil, fmt.Errorf("%s: output %s: %w", md.FullName(), md.Output().FullName(), err)
				}
				ms = append(ms, method{service: string(sd.FullName()), name: string(md.Name()), input: in, output: out})
			}
		}
	}
	return ms, nil
}

// findMethod finds a method by name: "Check", "Health.Check" or
// "grpc.Health.Check" (and the same with a slash before the method).
func findMethod(ms []method, name string) (method, error) {
	name = strings.TrimPrefix(strings.ReplaceAll(name, "/", "."), ".")
	var found []method
	for _, m := range ms {
		short := m.service[strings.LastIndexByte(m.service, '.')+1:]
		if name == m.name || name == short+"."+m.name || name == m.service+"."+m.name {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		var near []string
		for _, m := range ms {
			if strings.EqualFold(m.name, name) || strings.EqualFold(m.name, name[strings.LastIndexByte(name, '.')+1:]) {
				near = append(near, m.name)
			}
		}
		if len(near) > 0 {
			return method{}, fmt.Errorf("unknown method %q; did you mean %s?", name, strings.Join(near, " or "))
		}
		return method{}, fmt.Errorf("unknown method %q (`vc-agent-ctl list` shows them all)", name)
	default:
		var qual []string
		for _, m := range found {
			qual = append(qual, m.service+"."+m.name)
		}
		sort.Strings(qual)
		return method{}, fmt.Errorf("method %q is ambiguous: say %s", name, strings.Join(qual, " or "))
	}
}
