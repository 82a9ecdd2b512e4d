# Guest image targets (pkg/guestimage). Standalone:
#
#	make -f pkg/guestimage/image.mk image         # agent image, prints its manifest
#	make -f pkg/guestimage/image.mk floor-image   # benchmark floor image
#	make -f pkg/guestimage/image.mk image-ls
#
# or `include pkg/guestimage/image.mk` from the top-level Makefile.
# Images go to $(IMAGE_ROOT) (content addressed: rebuilding with the same
# inputs does nothing); the kernel .deb and its unpacked tree are cached
# in $(IMAGE_CACHE). Building needs root for the default directories.

GO                ?= go
IMAGE_ROOT        ?= /var/lib/vc/images
IMAGE_CACHE       ?= /var/cache/vc
IMAGE_COMPRESSION ?= gzip
# e.g. IMAGE_FLAGS="-busybox" or "-kernel-package linux-image-6.1.0-56-amd64"
IMAGE_FLAGS       ?=
VC_AGENT_BIN      ?= bin/vc-agent
VC_FLOOR_INIT_BIN ?= bin/vc-floor-init

MKIMAGE = $(GO) run ./pkg/guestimage/internal/mkimage -root $(IMAGE_ROOT) -cache $(IMAGE_CACHE) -compression $(IMAGE_COMPRESSION) $(IMAGE_FLAGS)

.PHONY: image floor-image image-ls image-agent-bin image-floor-init-bin

# The agent is built exactly as internal/testutil.AgentBinary builds it.
image-agent-bin:
	CGO_ENABLED=1 $(GO) build -tags "seccomp netgo osusergo" -ldflags '-extldflags "-static"' -o $(VC_AGENT_BIN) ./cmd/vc-agent

image-floor-init-bin:
	CGO_ENABLED=0 $(GO) build -ldflags "-s -w" -o $(VC_FLOOR_INIT_BIN) ./cmd/vc-floor-init

image: image-agent-bin
	$(MKIMAGE) -agent $(VC_AGENT_BIN)

floor-image: image-floor-init-bin
	$(MKIMAGE) -floor-init $(VC_FLOOR_INIT_BIN)

image-ls:
	$(GO) run ./pkg/guestimage/internal/mkimage -root $(IMAGE_ROOT) -ls
