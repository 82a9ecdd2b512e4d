# Sourced by hack/kube-up.sh and hack/kube-down.sh: where the single-node
# cluster keeps its things. Every setting may be overridden from the
# environment.

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
# Binaries: hack/install-kube.sh and hack/install-containerd.sh.
KUBE_BIN=${VC_KUBE_BIN:-/var/cache/vc/kube/$KUBE_VERSION/bin}
CTRD_BIN=${VC_TEST_BIN:-/usr/local/lib/vc-test/bin}
# Certificates, kubeconfigs, etcd's data, containerd's root, the kubelet's
# root, logs.
KUBE_DIR=${VC_KUBE_DIR:-/var/lib/vc-kube}
# Sockets, containerd's state, the VMs' state (short: QEMU's socket paths
# are limited), pid files.
KUBE_RUN=${VC_KUBE_RUN:-/run/vc-kube}

KUBE_NODE=vc-node
KUBE_POD_CIDR=10.88.78.0/24
KUBE_BRIDGE=vckube0
KUBE_SVC_CIDR=10.96.0.0/24
KUBE_API_PORT=6443

KUBECONFIG_ADMIN=$KUBE_DIR/admin.kubeconfig
CTRD_SOCK=$KUBE_RUN/containerd.sock
VM_STATE=$KUBE_RUN/vm

# In the order they start; kube-down stops them in reverse.
KUBE_DAEMONS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

# pid_of NAME: the daemon's pid when it still runs it, else nothing.
pid_of() {
	local f=$KUBE_RUN/pids/$1.pid pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	[ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "${1:0:15}" ] && echo "$pid"
	return 0
}

kctl() { "$KUBE_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
