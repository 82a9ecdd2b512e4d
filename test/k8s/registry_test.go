package k8s

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/virtcontainers/vc/internal/testutil/images"
)

// TestRegistryPullSecret: the kubelet pulls an image from a registry on
// the node's 127.0.0.1 that wants basic auth, with the credentials of an
// imagePullSecrets Secret (type kubernetes.io/dockerconfigjson) and
// imagePullPolicy Always; a pod without the Secret fails to pull
// (ErrImagePull or ImagePullBackOff), its message naming the image and
// the authorization failure. containerd speaks plain HTTP to 127.0.0.1:PORT by default
// (a loopback registry with a port: HTTP, with a fall-back from HTTPS),
// so the cluster's containerd needs no registry configuration.
func TestRegistryPullSecret(t *testing.T) {
	t.Parallel()
	getCluster(t)
	const user, pass = "vc", "s3cret"
	// pulls counts manifest requests with the right credentials: GET, or
	// HEAD alone when containerd has the content already (the other
	// runtime class's twin pulled it): a resolve with the Secret either way.
	var pulls atomic.Int64
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="vc-test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.URL.Path, "/manifests/") {
			pulls.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	host := u.Host // 127.0.0.1:PORT
	ref := host + "/vc/busybox:auth"

	// The test busybox with a marker file, so the pod proves which image
	// it runs.
	bb, err := images.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "busybox.tar")
	if err := bb.WriteDockerFile(tarPath); err != nil {
		t.Fatal(err)
	}
	base, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	marker := []byte("pulled from " + ref + "\n")
	if err := tw.WriteHeader(&tar.Header{Name: "pulled", Mode: 0o644, Size: int64(len(marker))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(marker)
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: user, Password: pass})); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	pulls.Store(0)

	forEachClass(t, "registry", func(t *testing.T, n *ns, rc string) {
		n.k("create", "secret", "docker-registry", "regcred", "--docker-server="+host,
			"--docker-username="+user, "--docker-password="+pass)
		pod := func(podName, secrets string) string {
			return podManifest(podName, rc, fmt.Sprintf(`%s  containers:
  - name: c
    image: %s
    imagePullPolicy: Always
    command: ["sh", "-c", "cat /pulled; sleep 3600"]
`, secrets, ref))
		}
		before := pulls.Load()
		n.apply(pod("with-secret", "  imagePullSecrets: [{name: regcred}]\n") + "---\n" + pod("without", ""))
		n.waitReady("with-secret")
		if got := strings.TrimSpace(n.exec("with-secret", "", "cat", "/pulled")); got != strings.TrimSpace(string(marker)) {
			t.Errorf("/pulled in the pod: %q, want %q", got, marker)
		}
		if p := pulls.Load() - before; p < 1 {
			t.Errorf("%d authorized manifest requests at the registry: want the kubelet's pull (imagePullPolicy Always)", p)
		}
		var reason, msg string
		n.waitFor("the pod without the secret failing to pull", 2*time.Minute, func() bool {
			reason = n.jsonpath("pod/without", "{.status.containerStatuses[0].state.waiting.reason}")
			msg = n.jsonpath("pod/without", "{.status.containerStatuses[0].state.waiting.message}")
			return (reason == "ErrImagePull" || reason == "ImagePullBackOff") && msg != ""
		})
		t.Logf("%s: without the secret: %s: %s", rc, reason, msg)
		// containerd's words: "pull access denied, ... authorization
		// failed: no basic auth credentials".
		if !strings.Contains(msg, "authorization failed") || !strings.Contains(msg, ref) {
			t.Errorf("the failed pull's message does not name the image and the auth failure: %q", msg)
		}
		if ph := n.jsonpath("pod/without", "{.status.phase}"); ph != "Pending" {
			t.Errorf("the pod without the secret is %s, want Pending", ph)
		}
	})
}
