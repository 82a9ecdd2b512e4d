package shim

import (
	"strconv"

	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/virtcontainers/vc/pkg/oci"
)

func init() {
	// The type URL containerd gives the OCI features (its core/runtime
	// and client packages register it so), under which
	// containerd-shim-runc-v2 answers Info and containerd's CRI and task
	// manager decode it. Registering it again under the same URL is a
	// no-op.
	typeurl.Register(&features.Features{}, "types.containerd.io", "opencontainers/runtime-spec", strconv.Itoa(specs.VersionMajor), "features", "Features")
}

// ociFeatures are the OCI runtime features of a container in a vc VM
// (pkg/oci.Features, which vc-runtime's features command prints too).
func ociFeatures() *features.Features { return oci.Features() }
