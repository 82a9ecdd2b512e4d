#!/usr/bin/env bash
# Installs what the containerd and CRI tests need, when missing:
#
#   containerd, ctr, containerd-shim-runc-v2   v2.3.1, built with go install
#   runc                                        v1.4.3, built with go install
#                                               (cgo + seccomp; Debian's 1.1.5
#                                               fails CRI pod sandboxes)
#   CNI plugins                                 Debian's containernetworking-plugins
#                                               (/usr/lib/cni)
#   containerd 1.6                              Debian 12's package, unpacked (not
#                                               installed) into CONTAINERD16_DIR,
#                                               default /usr/local/lib/vc-test/containerd16,
#                                               for the shim's task API v2 test
#
# into a directory the project controls (VC_TEST_BIN, default
# /usr/local/lib/vc-test/bin), never onto the system PATH. Idempotent: a
# binary already there with the right version is left alone, so a second run
# takes well under a second. A build goes to a scratch directory first and
# is moved in only when it works, so a half-finished run never looks done.
set -euo pipefail

CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.3.1}
RUNC_VERSION=${RUNC_VERSION:-v1.4.3}
BIN_DIR=${VC_TEST_BIN:-/usr/local/lib/vc-test/bin}
CONTAINERD16_DIR=${CONTAINERD16_DIR:-$(dirname "$BIN_DIR")/containerd16}
GO=${GO:-go}

log() { echo "install-containerd: $*"; }
die() { echo "install-containerd: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "need root (installs into $BIN_DIR and apt packages)"
command -v "$GO" >/dev/null || die "no go toolchain ($GO) on PATH"

# version_of BIN ARGS... prints the binary's version output, or nothing.
version_of() {
	local bin=$1
	shift
	[ -x "$bin" ] || return 0
	"$bin" "$@" 2>/dev/null || true
}

# has_version BIN VERSION ARGS...: does BIN's version output name VERSION
# (with or without the leading v)? go install builds say "2.3.1+unknown".
has_version() {
	local bin=$1 want=${2#v}
	shift 2
	version_of "$bin" "$@" | grep -Eq "(^|[ v])${want//./\\.}([+ ]|$)"
}

mkdir -p "$BIN_DIR"
scratch=$(mktemp -d "$(dirname "$BIN_DIR")/.install-XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# --- containerd, ctr, containerd-shim-runc-v2 --------------------------------
need_ctrd=()
has_version "$BIN_DIR/containerd" "$CONTAINERD_VERSION" --version || need_ctrd+=(containerd)
has_version "$BIN_DIR/ctr" "$CONTAINERD_VERSION" --version || need_ctrd+=(ctr)
has_version "$BIN_DIR/containerd-shim-runc-v2" "$CONTAINERD_VERSION" -v || need_ctrd+=(containerd-shim-runc-v2)
if [ ${#need_ctrd[@]} -gt 0 ]; then
	log "building ${need_ctrd[*]} $CONTAINERD_VERSION with go install (takes a minute or three)"
	pkgs=()
	for c in "${need_ctrd[@]}"; do
		pkgs+=("github.com/containerd/containerd/v2/cmd/$c@$CONTAINERD_VERSION")
	done
	# Outside the repository, so its go.mod plays no part.
	(cd / && GOBIN="$scratch" GOFLAGS=-buildvcs=false "$GO" install "${pkgs[@]}")
	for c in "${need_ctrd[@]}"; do
		arg=--version
		[ "$c" = containerd-shim-runc-v2 ] && arg=-v
		has_version "$scratch/$c" "$CONTAINERD_VERSION" "$arg" ||
			die "$c built but does not report $CONTAINERD_VERSION: $(version_of "$scratch/$c" "$arg")"
		mv -f "$scratch/$c" "$BIN_DIR/$c"
	done
fi
log "$("$BIN_DIR/containerd" --version)"

# --- runc -------------------------------------------------------------------
# runc_works BIN: runs `true` in a throwaway busybox bundle.
runc_works() {
	local runc=$1 b
	b=$(mktemp -d /tmp/vc-runc-check-XXXXXX)
	mkdir -p "$b/rootfs/bin"
	cp /bin/busybox "$b/rootfs/bin/busybox"
	ln -s busybox "$b/rootfs/bin/true"
	(cd "$b" && "$runc" spec)
	sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"sh"/"true"/' "$b/config.json"
	local rc=0 out
	out=$("$runc" --root "$b/state" run --bundle "$b" "vc-runc-check-$$" 2>&1) || rc=$?
	"$runc" --root "$b/state" delete -f "vc-runc-check-$$" >/dev/null 2>&1 || true
	rm -rf "$b"
	if [ $rc -ne 0 ]; then
		echo "$out" >&2
		return 1
	fi
}

if ! has_version "$BIN_DIR/runc" "$RUNC_VERSION" --version; then
	[ -e /usr/include/seccomp.h ] || die "runc needs libseccomp-dev (run hack/install-deps.sh)"
	[ -x /bin/busybox ] || die "the runc check needs busybox-static (run hack/install-deps.sh)"
	log "building runc $RUNC_VERSION with go install (cgo, seccomp)"
	(cd / && CGO_ENABLED=1 GOBIN="$scratch" GOFLAGS=-buildvcs=false \
		"$GO" install -tags seccomp "github.com/opencontainers/runc@$RUNC_VERSION")
	has_version "$scratch/runc" "$RUNC_VERSION" --version ||
		die "runc built but does not report $RUNC_VERSION: $(version_of "$scratch/runc" --version)"
	runc_works "$scratch/runc" || die "runc $RUNC_VERSION built but cannot run a container"
	mv -f "$scratch/runc" "$BIN_DIR/runc"
fi
log "$("$BIN_DIR/runc" --version | head -1)"

# --- CNI plugins --------------------------------------------------------------
if [ ! -x /usr/lib/cni/bridge ] || [ ! -x /usr/lib/cni/host-local ] || [ ! -x /usr/lib/cni/loopback ]; then
	log "installing containernetworking-plugins (CNI plugins in /usr/lib/cni)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		containernetworking-plugins iptables >/dev/null
fi
log "CNI plugins: $(ls /usr/lib/cni | tr '\n' ' ')"

# --- Debian's containerd 1.6 --------------------------------------------------
if ! "$CONTAINERD16_DIR/usr/bin/containerd" --version 2>/dev/null | grep " 1\.6\." >/dev/null; then
	log "unpacking Debian's containerd 1.6 into $CONTAINERD16_DIR (not installed)"
	dl="$scratch/deb16"
	mkdir -p "$dl"
	# apt's sandbox user cannot write into the scratch directory.
	chmod 0777 "$dl"
	(cd "$dl" && { apt-get download -qq containerd 2>/dev/null ||
		{ apt-get update -qq && apt-get download -qq containerd; }; }) ||
		die "apt-get download containerd failed"
	rm -rf "$scratch/ctrd16"
	dpkg -x "$dl"/containerd_1.6*.deb "$scratch/ctrd16" || die "no containerd 1.6 package (got: $(ls "$dl"))"
	"$scratch/ctrd16/usr/bin/containerd" --version | grep " 1\.6\." >/dev/null ||
		die "the unpacked containerd is not 1.6: $("$scratch/ctrd16/usr/bin/containerd" --version)"
	rm -rf "$CONTAINERD16_DIR"
	mv "$scratch/ctrd16" "$CONTAINERD16_DIR"
fi
log "containerd 1.6: $("$CONTAINERD16_DIR/usr/bin/containerd" --version)"
