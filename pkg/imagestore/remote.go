package imagestore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// PullOptions are a pull's.
type PullOptions struct {
	// Keychain finds credentials for a registry (default:
	// authn.DefaultKeychain, docker's config.json under $DOCKER_CONFIG or
	// ~/.docker, and its credential helpers).
	Keychain authn.Keychain
	// Transport is the HTTP transport (default: http.DefaultTransport).
	Transport http.RoundTripper
	// Platform is the image to pick from an index (default linux/amd64).
	Platform *v1.Platform
	// Progress hears of each layer.
	Progress func(Progress)
}

// Pull fetches ref from its registry into the store (see Put). Registries
// on a loopback address (localhost, 127.0.0.0/8, ::1) are spoken to in
// plain HTTP; every other one only in HTTPS.
func (s *Store) Pull(ctx context.Context, ref string, o PullOptions) (*Image, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	if o.Transport == nil {
		o.Transport = http.DefaultTransport
	}
	if o.Platform == nil {
		o.Platform = &v1.Platform{OS: "linux", Architecture: "amd64"}
	}
	img, err := remote.Image(r,
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(o.Keychain),
		remote.WithTransport(loopbackOnlyHTTP{o.Transport}),
		remote.WithPlatform(*o.Platform),
		remote.WithUserAgent("vc"),
	)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, remoteError(err))
	}
	return s.Put(ctx, r.Name(), img, o.Progress)
}

// remoteError marks a registry's "no such image" and "unauthorized" with
// errdefs' kinds, keeping the registry's words.
func remoteError(err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w (credentials come from docker's config.json: $DOCKER_CONFIG or ~/.docker): %w", err, errdefs.ErrUnauthenticated)
		}
	}
	return err
}

// loopbackOnlyHTTP refuses plain HTTP to anything but a loopback address:
// go-containerregistry falls back to it for private (RFC 1918) addresses
// too, where a man in the middle could serve anything.
type loopbackOnlyHTTP struct{ next http.RoundTripper }

func (t loopbackOnlyHTTP) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !isLoopback(req.URL.Hostname()) {
		return nil, fmt.Errorf("registry %s: plain HTTP is only allowed to a loopback address (localhost, 127.0.0.1, ::1): %w", req.URL.Host, errdefs.ErrPermissionDenied)
	}
	return t.next.RoundTrip(req)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckLogin tells whether user and password open registry (host[:port]),
// as docker login checks them: GET /v2/ with them (through the
// registry's token service when it has one) must succeed.
func CheckLogin(ctx context.Context, registry, user, password string, t http.RoundTripper) error {
	reg, err := name.NewRegistry(registry)
	if err != nil {
		return fmt.Errorf("registry %q: %w: %w", registry, err, errdefs.ErrInvalidArgument)
	}
	if t == nil {
		t = http.DefaultTransport
	}
	t = loopbackOnlyHTTP{t}
	auth := &authn.Basic{Username: user, Password: password}
	rt, err := transport.NewWithContext(ctx, reg, auth, t, []string{reg.Scope(transport.PullScope)})
	if err != nil {
		return fmt.Errorf("login to %s: %w", registry, remoteError(err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return fmt.Errorf("login to %s: %w", registry, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("login to %s as %s: %s: %w", registry, user, resp.Status, errdefs.ErrUnauthenticated)
	}
	return nil
}
