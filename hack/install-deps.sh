#!/usr/bin/env bash
# Installs what building and testing virtcontainers needs, when missing.
# Idempotent: a machine that has everything is left alone.
set -euo pipefail

pkgs=(
	protobuf-compiler   # make generate
	libprotobuf-dev     # google/protobuf/*.proto that agent.proto imports
	libseccomp-dev      # static vc-agent with seccomp
	qemu-system-x86     # the hypervisor
	qemu-system-common  # /usr/lib/qemu/virtiofsd: virtio-fs shares (shared_fs)
	passt               # user-mode NAT of sandboxes without a network namespace (no host loopback)
	busybox-static      # test and default container images
	kmod cpio           # guest image builder (depmod, modinfo)
	iproute2 iptables   # networking, agent tests
	tini                # tini-static: vc run --init (docker-init)
	nftables            # nft: the shim's loopback redirect for kubectl port-forward
	procps              # pgrep in the end-to-end tests
	xz-utils            # unpacking the guest kernel
	gcc make libc6-dev flex bison bc libelf-dev   # building the minimal guest kernel from linux-source
	e2fsprogs           # mkfs.ext4 for block volumes
	erofs-utils         # mkfs.erofs: containerd's erofs snapshotter (shim tests)
	prometheus          # scrapes vc monitor in test/e2e (monitor_test.go)
	podman              # podman --runtime bin/vc-runtime (test/runtime)
	docker.io           # docker 20.10 with vc-runtime (test/runtime); brings Debian's
	                    # containerd 1.6, containerd-shim-runc-v2, runc and tini into
	                    # /usr/bin: the containerd tests run theirs from
	                    # /usr/local/lib/vc-test (hack/install-containerd.sh), first
	                    # on the PATH they give containerd
)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		echo "need root to install ${missing[*]}" >&2
		exit 1
	fi
	# docker.io and containerd are services: where systemd runs, their
	# postinst would start a system dockerd (its bridge, iptables rules,
	# FORWARD policy: other tests' networks) and containerd. The tests
	# start their own daemons; nothing is started by the install.
	policy=/usr/sbin/policy-rc.d
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
		trap 'rm -f "$policy"' EXIT
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# QEMU's own user: a VM started by root runs as it, with no capabilities
# but those its 9p shares need, in a mount namespace of its own
# (pkg/hypervisor/qemu/confine.go). In the kvm group where there is one.
if ! id -u vc-qemu >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "need root to add the user vc-qemu" >&2
		exit 1
	fi
	groups=()
	getent group kvm >/dev/null && groups=(--groups kvm)
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --user-group "${groups[@]}" vc-qemu
	echo "added the system user vc-qemu (QEMU runs as it)"
fi
