# virtcontainers: containers in lightweight VMs.
#
#   make demo    install what is missing, build, run a container in a VM
#   make test    install what is missing, run every test
#   make bench   performance figures beside their floors
#   make kube    a single-node Kubernetes cluster with RuntimeClasses vc and runc

GO        ?= go
BIN       := bin
CMDS      := $(filter-out vc-agent,$(notdir $(wildcard cmd/*)))
AGENT_TAGS := seccomp netgo osusergo
FUZZTIME  ?= 20s
TESTFLAGS ?=

export CGO_ENABLED := 1

.PHONY: all deps build agent generate check-generate lint test demo bench clean containerd image kube-bin kube-bin-bg kube kube-down

all: build

deps:
	@./hack/install-deps.sh

build: deps agent $(addprefix $(BIN)/,$(CMDS))

# The agent is PID 1 of the guest: fully static, seccomp included.
# vc-agent-policy is the same with the policy engine (OPA, which more than
# doubles the binary): only the policy image has it.
agent:
	$(GO) build -tags "$(AGENT_TAGS)" -ldflags '-extldflags "-static" -s -w' -o $(BIN)/vc-agent ./cmd/vc-agent
	$(GO) build -tags "$(AGENT_TAGS) policy" -ldflags '-extldflags "-static" -s -w' -o $(BIN)/vc-agent-policy ./cmd/vc-agent

GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null)

$(BIN)/%: FORCE
	$(GO) build -ldflags "-X main.gitCommit=$(GIT_COMMIT)" -o $@ ./cmd/$*

# The shim runs once per pod: no cgo (no libc mapped) and no gRPC tracing
# keep its memory down (about 16 MB RSS per pod).
$(BIN)/containerd-shim-vc-v2: FORCE
	CGO_ENABLED=0 $(GO) build -tags grpcnotrace -o $@ ./cmd/containerd-shim-vc-v2

# The benchmark floor's /init must be static.
$(BIN)/vc-floor-init: export CGO_ENABLED := 0

FORCE:

generate: deps
	./hack/generate.sh

check-generate: deps
	./hack/check-generate.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# containerd v2.3.1, ctr, containerd-shim-runc-v2 and runc v1.4.3 built with
# go install into /usr/local/lib/vc-test/bin; Debian's CNI plugins.
containerd:
	@./hack/install-containerd.sh

# Kubernetes v1.37.2 (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy, kubectl) and etcd v3.7.3 built from
# the Go module proxy into /var/cache/vc/kube, once (20-40 min on 2 cores
# the first time, nothing afterwards).
kube-bin:
	@./hack/install-kube.sh

# The same in the background, for make test: on a fresh machine the build
# runs while the rest is set up and the other suites run (they leave most
# of the CPU idle, waiting on their VMs); test/k8s waits for it (the
# script's lock) before it starts its cluster. Its output:
# bin/install-kube.log. At nice 15: the guest kernel's build, which every
# suite waits for, runs beside it (measured on a fresh 2-core machine: the
# kernel compiled about 33 files a minute beside the Kubernetes build at
# the same priority, about 100 with it niced: some 45 minutes against 15).
kube-bin-bg:
	@mkdir -p $(BIN) && nice -n 15 ./hack/install-kube.sh > $(BIN)/install-kube.log 2>&1 &

# A single-node cluster on the project's containerd (docs/kubernetes.md).
kube: build containerd image kube-bin
	./hack/kube-up.sh

kube-down:
	./hack/kube-down.sh

# Every test, including those that boot real VMs under TCG and run real
# containerd and a real Kubernetes node (test/k8s); needs root.
# VC_TEST_STRICT=1: a test missing what this target set up (root, a tool
# of hack/install-deps.sh, containerd) fails instead of skipping
# (internal/testenv); only what no run here can have still skips.
test: kube-bin-bg build containerd check-generate lint image
	VC_TEST_STRICT=1 VC_AGENT_BIN=$(CURDIR)/$(BIN)/vc-agent $(GO) test -count=1 -timeout 55m $(TESTFLAGS) ./...
	$(GO) test -count=1 -tags policy $(TESTFLAGS) ./internal/guest/...
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./hack/fuzz.sh

demo: build
	./hack/demo.sh

# The tests' guest image (and the minimal kernel, built once into
# /var/cache/vc, a few minutes the first time): built before the tests so
# that none of them waits for it.
image: build
	$(BIN)/vc --data-root /var/lib/vc-test image build

bench: build containerd
	VC_AGENT_BIN=$(CURDIR)/$(BIN)/vc-agent $(GO) run ./test/bench

clean:
	rm -rf $(BIN)
