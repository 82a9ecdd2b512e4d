// Package guestconfig finds what a sandbox boots: the static vc-agent
// installed beside the running program, and the guest image (kernel +
// initrd) built from it under a data root. The vc CLI and the containerd
// shim find them the same way.
package guestconfig

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/guestimage"
)

// DefaultDataRoot is where guest images (and the CLI's root filesystems)
// are kept unless configured otherwise.
const DefaultDataRoot = "/var/lib/vc"

// ImageRoot is the image directory under dataRoot.
func ImageRoot(dataRoot string) string { return filepath.Join(dataRoot, "images") }

// variant is a kind of guest image: its agent binary and the link to its
// current build under the image root.
type variant struct{ agent, link string }

var (
	// defaultVariant boots vc-agent.
	defaultVariant = variant{"vc-agent", "current"}
	// policyVariant boots vc-agent-policy, the agent with the policy
	// engine (OPA: 29 MB against 11.6, in every guest's memory), for
	// the sandboxes given a policy.
	policyVariant = variant{"vc-agent-policy", "current-policy"}
)

// FindAgent locates the static vc-agent: $VC_AGENT, beside the running
// program, or in libexec.
func FindAgent() (string, error) { return defaultVariant.find() }

// FindPolicyAgent locates vc-agent-policy: beside $VC_AGENT, beside the
// running program, or in libexec.
func FindPolicyAgent() (string, error) { return policyVariant.find() }

func (v variant) find() (string, error) {
	cands := []string{os.Getenv("VC_AGENT")}
	if v != defaultVariant && cands[0] != "" {
		cands[0] = filepath.Join(filepath.Dir(cands[0]), v.agent)
	}
	if self, err := os.Executable(); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(self), v.agent))
	}
	cands = append(cands, "/usr/local/libexec/vc/"+v.agent, "/usr/libexec/vc/"+v.agent)
	for _, c := range cands {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c, nil
		}
	}
	env := "at $VC_AGENT"
	if v != defaultVariant {
		env = "beside $VC_AGENT"
	}
	return "", fmt.Errorf("%s not found (looked %s, %s): %w", v.agent, env, strings.Join(cands[1:], ", "), errdefs.ErrNotFound)
}

// Build builds (or finds) the image for the installed agent under
// dataRoot and makes it the current one; with vc-agent-policy installed,
// the policy image too (the same kernel, its own initrd).
func Build(ctx context.Context, dataRoot string, o guestimage.Options) (*guestimage.Image, error) {
	img, err := defaultVariant.build(ctx, dataRoot, o)
	if err != nil {
		return nil, err
	}
	if _, err := FindPolicyAgent(); err == nil {
		if _, err := policyVariant.build(ctx, dataRoot, o); err != nil {
			return nil, fmt.Errorf("policy image: %w", err)
		}
	}
	return img, nil
}

func (v variant) build(ctx context.Context, dataRoot string, o guestimage.Options) (*guestimage.Image, error) {
	agent, err := v.find()
	if err != nil {
		return nil, err
	}
	o.Agent, o.Root = agent, ImageRoot(dataRoot)
	img, err := guestimage.Build(ctx, o)
	if err != nil {
		return nil, err
	}
	link := filepath.Join(o.Root, v.link)
	tmp := fmt.Sprintf("%s.tmp%d", link, os.Getpid())
	os.Remove(tmp)
	if err := os.Symlink(filepath.Base(img.Dir), tmp); err != nil {
		return nil, err
	}
	return img, os.Rename(tmp, link)
}

// Current returns the current image under dataRoot if it was built from
// the installed agent; ErrNotFound otherwise.
func Current(dataRoot string) (*guestimage.Image, error) { return defaultVariant.current(dataRoot) }

// CurrentPolicy is Current's policy image, built from vc-agent-policy.
func CurrentPolicy(dataRoot string) (*guestimage.Image, error) {
	return policyVariant.current(dataRoot)
}

func (v variant) current(dataRoot string) (*guestimage.Image, error) {
	img, err := guestimage.Load(filepath.Join(ImageRoot(dataRoot), v.link))
	if err != nil {
		return nil, fmt.Errorf("guest image (%s) under %s: %w", v.agent, ImageRoot(dataRoot), errdefs.ErrNotFound)
	}
	if err := v.builtFrom(img); err != nil {
		return nil, fmt.Errorf("guest image %s: %w", img.Dir, err)
	}
	return img, nil
}

// Resolve returns the kernel and initrd to boot: the ones given (both or
// neither), or the current image if it was built from the installed agent,
// or, if build is set, a new build.
func Resolve(ctx context.Context, dataRoot, kernel, initrd string, build bool) (string, string, error) {
	return defaultVariant.resolve(ctx, dataRoot, kernel, initrd, build)
}

// ResolvePolicy is Resolve for a sandbox given an agent policy: the
// policy image.
func ResolvePolicy(ctx context.Context, dataRoot, kernel, initrd string, build bool) (string, string, error) {
	return policyVariant.resolve(ctx, dataRoot, kernel, initrd, build)
}

func (v variant) resolve(ctx context.Context, dataRoot, kernel, initrd string, build bool) (string, string, error) {
	if kernel != "" || initrd != "" {
		if kernel == "" || initrd == "" {
			return "", "", fmt.Errorf("kernel %q and initrd %q go together: %w", kernel, initrd, errdefs.ErrInvalidArgument)
		}
		return kernel, initrd, nil
	}
	img, err := v.current(dataRoot)
	if err == nil {
		return img.Kernel, img.Initrd, nil
	}
	if !build {
		return "", "", fmt.Errorf("%w (build one with `vc --data-root %s image build`)", err, dataRoot)
	}
	if img, err = v.build(ctx, dataRoot, guestimage.Options{}); err != nil {
		return "", "", fmt.Errorf("guest image: %w", err)
	}
	return img.Kernel, img.Initrd, nil
}

// UpToDate tells whether img was built from the agent installed now (see
// BuiltFromAgent).
func UpToDate(img *guestimage.Image) bool { return BuiltFromAgent(img) == nil }

// BuiltFromAgent returns nil if img was built from the agent installed
// now: the agent's sha256 is the one img's manifest records. Content
// decides, never times: an agent rebuilt with the same bytes (a newer
// mtime, another inode) keeps the image current, and `vc image build`
// then finds that same image. A different size tells a different agent
// without hashing; otherwise the agent is hashed (about 7 ms for the
// 11 MB agent, against seconds for a sandbox's boot, so no digest cache).
// The error wraps ErrNotFound when the image is not the agent's.
func BuiltFromAgent(img *guestimage.Image) error { return defaultVariant.builtFrom(img) }

func (v variant) builtFrom(img *guestimage.Image) error {
	agent, err := v.find()
	if err != nil {
		return err
	}
	if img.AgentSHA256 == "" {
		return fmt.Errorf("%s image has no agent digest in its manifest: %w", img.Kind, errdefs.ErrNotFound)
	}
	st, err := os.Stat(agent)
	if err != nil {
		return fmt.Errorf("%s: %w", v.agent, err)
	}
	if st.Size() != img.AgentSize {
		return fmt.Errorf("was not built from the installed %s %s (%d bytes, the image's agent %d): %w", v.agent, agent, st.Size(), img.AgentSize, errdefs.ErrNotFound)
	}
	sum, err := guestimage.FileSHA256(agent)
	if err != nil {
		return fmt.Errorf("%s: %w", v.agent, err)
	}
	if sum != img.AgentSHA256 {
		return fmt.Errorf("was not built from the installed %s %s (sha256 %.12s, the image's agent %.12s): %w", v.agent, agent, sum, img.AgentSHA256, errdefs.ErrNotFound)
	}
	return nil
}
