#!/usr/bin/env bash
# Builds what the single-node Kubernetes cluster (hack/kube-up.sh, test/k8s)
# runs, once, from the Go module proxy:
#
#   kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
#   kubectl                      KUBE_VERSION, default v1.37.2
#   etcd                         ETCD_VERSION, default v3.7.3
#
# into VC_KUBE_CACHE/KUBE_VERSION/bin (default /var/cache/vc/kube/v1.37.2/bin),
# as the guest kernel is cached in /var/cache/vc. A stamp names the versions
# and the build's format: a second run finds it and costs nothing.
#
# The module zip of k8s.io/kubernetes has an empty staging/ directory while
# its go.mod replaces every k8s.io/* library with ./staging/src/k8s.io/*:
# those replaces are pointed at the published k8s.io/* v0.X.Y modules
# instead, and vendor/, go.work and go.work.sum are dropped. The six
# binaries build in one `go build` so that the packages they share compile
# once. etcd's server module has replaces of its own (go install refuses
# it): it builds from a small wrapper module.
#
# KUBE_ACTIONGRAPH=FILE writes go's action graph (per-package timings) there.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
CACHE=${VC_KUBE_CACHE:-/var/cache/vc/kube}
GO=${GO:-go}
# Bump when the build steps change what comes out.
FORMAT=1

OUT=$CACHE/$KUBE_VERSION
BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
STAMP="kubernetes=$KUBE_VERSION etcd=$ETCD_VERSION format=$FORMAT"

log() { echo "install-kube: $*"; }
die() { echo "install-kube: $*" >&2; exit 1; }

built() {
	[ "$(cat "$OUT/stamp" 2>/dev/null)" = "$STAMP" ] || return 1
	local b
	for b in "${BINS[@]}" etcd; do
		[ -x "$OUT/bin/$b" ] || return 1
	done
}

if built; then
	log "$STAMP in $OUT/bin (cached)"
	exit 0
fi

command -v "$GO" >/dev/null || die "no go toolchain ($GO) on PATH"
mkdir -p "$CACHE"
# One build at a time: a second caller waits for the first's result.
exec 9>"$CACHE/.lock"
flock 9
if built; then
	log "$STAMP in $OUT/bin (built by another run)"
	exit 0
fi

scratch=$(mktemp -d "$CACHE/.build-XXXXXX")
trap 'chmod -R u+w "$scratch" 2>/dev/null; rm -rf "$scratch"' EXIT
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local

secs() { echo $(($(date +%s) - $1)); }

# --- Kubernetes ---------------------------------------------------------------
t0=$(date +%s)
log "downloading k8s.io/kubernetes@$KUBE_VERSION from the module proxy"
dir=$(cd / && "$GO" mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] && [ -f "$dir/go.mod" ] || die "go mod download k8s.io/kubernetes@$KUBE_VERSION gave no module directory"
src=$scratch/kubernetes
cp -r "$dir" "$src"
chmod -R u+w "$src"
rm -rf "$src/vendor" "$src/go.work" "$src/go.work.sum"
# k8s.io/X => ./staging/src/k8s.io/X  becomes  k8s.io/X => k8s.io/X v0.MINOR.PATCH
lib=v0.${KUBE_VERSION#v1.}
sed -i -E "s#^([[:space:]]*(replace[[:space:]]+)?)(k8s\.io/[^[:space:]]+) => \./staging/src/k8s\.io/[^[:space:]]+\$#\1\3 => \3 $lib#" "$src/go.mod"
! grep -q 'staging/src' "$src/go.mod" || die "go.mod still names staging/: $(grep staging/src "$src/go.mod")"
log "source ready in $(secs "$t0") s"

# What `kubectl version` and the apiserver report (hack/lib/version.sh's
# variables): without them the binaries say v0.0.0-master.
minor=${KUBE_VERSION#v1.}
minor=${minor%%.*}
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
	ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
ag=()
[ -n "${KUBE_ACTIONGRAPH:-}" ] && ag=(-debug-actiongraph="$KUBE_ACTIONGRAPH")

t1=$(date +%s)
log "building ${BINS[*]} (one go build; 20-40 min on 2 cores the first time)"
mkdir -p "$scratch/bin"
pkgs=()
for b in "${BINS[@]}"; do
	pkgs+=("./cmd/$b")
done
(cd "$src" && "$GO" build -trimpath -buildvcs=false "${ag[@]}" -ldflags "$ldflags" -o "$scratch/bin/" "${pkgs[@]}")
log "kubernetes built in $(secs "$t1") s"

# --- etcd -----------------------------------------------------------------------
t2=$(date +%s)
log "building etcd $ETCD_VERSION from a wrapper module"
w=$scratch/etcd
mkdir -p "$w"
(
	cd "$w"
	"$GO" mod init vc.local/etcd >/dev/null 2>&1
	"$GO" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/api/v3@$ETCD_VERSION" \
		"go.etcd.io/etcd/client/pkg/v3@$ETCD_VERSION" "go.etcd.io/etcd/client/v3@$ETCD_VERSION" \
		"go.etcd.io/etcd/pkg/v3@$ETCD_VERSION" >/dev/null 2>&1 ||
		"$GO" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
	"$GO" build -trimpath -buildvcs=false -ldflags "-s -w" -o "$scratch/bin/etcd" go.etcd.io/etcd/server/v3
)
log "etcd built in $(secs "$t2") s"

# Whole outputs to grep: with pipefail, grep -q leaving early makes the
# writer die of SIGPIPE and the check fail (it threw a 50-minute build away).
"$scratch/bin/kubectl" version --client 2>/dev/null | grep "$KUBE_VERSION" >/dev/null ||
	die "kubectl does not report $KUBE_VERSION: $("$scratch/bin/kubectl" version --client 2>&1)"
"$scratch/bin/etcd" --version | grep "${ETCD_VERSION#v}" >/dev/null ||
	die "etcd does not report $ETCD_VERSION: $("$scratch/bin/etcd" --version 2>&1)"

rm -rf "$OUT.old"
[ -e "$OUT" ] && mv "$OUT" "$OUT.old"
mkdir -p "$OUT"
mv "$scratch/bin" "$OUT/bin"
echo "$STAMP" >"$OUT/stamp"
rm -rf "$OUT.old"
log "$STAMP in $OUT/bin, $(secs "$t0") s in all"
