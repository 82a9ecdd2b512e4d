package containerd

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRIClient talks CRI (k8s.io/cri-api v1) to a daemon, as the kubelet does.
type CRIClient struct {
	Runtime runtimeapi.RuntimeServiceClient
	Image   runtimeapi.ImageServiceClient
	conn    *grpc.ClientConn
}

// Close closes the connection.
func (c *CRIClient) Close() error { return c.conn.Close() }

// DialCRI connects to the CRI service on containerd's socket.
func DialCRI(address string) (*CRIClient, error) {
	conn, err := grpc.NewClient("unix://"+address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return nil, fmt.Errorf("dial cri %s: %w", address, err)
	}
	return &CRIClient{
		Runtime: runtimeapi.NewRuntimeServiceClient(conn),
		Image:   runtimeapi.NewImageServiceClient(conn),
		conn:    conn,
	}, nil
}

// CRI returns a CRI client for the daemon, closed at the test's end.
func (c *Containerd) CRI(t testing.TB) *CRIClient {
	t.Helper()
	cli, err := DialCRI(c.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// PodNamespace is the Kubernetes namespace test pods claim.
const PodNamespace = "vc-test"

// PodConfig is a pod sandbox config as the kubelet would send: name and
// uid, hostname = name, pod network (CNI), container logs under the
// harness's pods/ directory.
func (c *Containerd) PodConfig(name, uid string) *runtimeapi.PodSandboxConfig {
	logDir := filepath.Join(c.Dir, "pods", uid)
	os.MkdirAll(logDir, 0o755)
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name:      name,
			Uid:       uid,
			Namespace: PodNamespace,
		},
		Hostname:     name,
		LogDirectory: logDir,
		Labels:       map[string]string{"vc-test": "1"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_POD,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
}

// ContainerConfig is a container config running image with args as its
// command (empty: the image's default), logging to <name>.log in the
// pod's log directory.
func ContainerConfig(name, image string, args ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Command:  args,
		LogPath:  name + ".log",
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}
