#!/usr/bin/env bash
# Starts a single-node Kubernetes cluster on this machine, on the project's
# containerd with two RuntimeClasses: `vc` (containerd-shim-vc-v2: each pod
# in a VM) and `runc`. Needs root, the binaries of hack/install-kube.sh and
# hack/install-containerd.sh, the vc shim (bin/, `make build`) and a guest
# image (`make image`); `make kube` does all that first.
#
#   hack/kube-up.sh                 # prints the KUBECONFIG
#   KUBECONFIG=/var/lib/vc-kube/admin.kubeconfig kubectl get nodes
#   hack/kube-down.sh               # stops it all, leaves nothing
#
# What runs: etcd, kube-apiserver (127.0.0.1 and the node's address, port
# 6443), kube-controller-manager, kube-scheduler, the kubelet (node vc-node)
# and kube-proxy (iptables), and a containerd of the cluster's own (socket
# in /run/vc-kube). The test images busybox:vc-test and pause:vc-test are
# imported, nothing is pulled. Certificates are made with openssl each run.
#
# The kubelet runs with protectKernelDefaults in a mount namespace of its
# own, where the /proc/sys entries it checks (kernel.panic,
# kernel.panic_on_oops, vm.overcommit_memory) read the values it expects:
# it changes none of the host's sysctls. Its root directory is a shared
# mount, so the volumes it mounts reach containerd and the shims.
#
# Settings (environment): VC_KUBE_SHIM_DIR (where containerd-shim-vc-v2
# is, default the repository's bin/), VC_DATA_ROOT (the guest image, default
# /var/lib/vc-test), VC_KUBE_KERNEL and VC_KUBE_INITRD (a guest image's
# files instead), VC_KUBE_ACCEL (auto, kvm or tcg), VC_KUBE_MAX_CPUS and
# VC_KUBE_MAX_MEMORY_MIB (the shim's max_cpus, default 4, and
# max_memory_mib, default 2048), VC_KUBE_FACTORY (the shim's factory),
# VC_KUBE_MEMORY_MIB (the shim's memory_mib: the guest's own memory beside
# the pod's limits, default the shim's 256), VC_KUBE_VM_CGROUP (the shim's
# vm_cgroup: off, account or all, default account), VC_KUBE_QEMU_MIB
# (QEMU's own memory beside the guest's, for the RuntimeClass's overhead,
# default 192) and VC_KUBE_OVERHEAD_CPU (its CPU overhead, default 50m);
# hack/kube-env.sh has the directories.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
. "$HERE/kube-env.sh"

SHIM_DIR=${VC_KUBE_SHIM_DIR:-$REPO/bin}
DATA_ROOT=${VC_DATA_ROOT:-/var/lib/vc-test}
ACCEL=${VC_KUBE_ACCEL:-auto}
GO=${GO:-go}

log() { echo "kube-up: $*"; }
die() { echo "kube-up: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "need root"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
	[ -x "$KUBE_BIN/$b" ] || die "$KUBE_BIN/$b is missing: run hack/install-kube.sh (make kube does)"
done
for b in containerd ctr containerd-shim-runc-v2 runc; do
	[ -x "$CTRD_BIN/$b" ] || die "$CTRD_BIN/$b is missing: run hack/install-containerd.sh (make kube does)"
done
[ -x "$SHIM_DIR/containerd-shim-vc-v2" ] || die "$SHIM_DIR/containerd-shim-vc-v2 is missing: make build"
for b in openssl unshare setsid curl ip iptables; do
	command -v $b >/dev/null || die "$b is not installed"
done
for d in "${KUBE_DAEMONS[@]}"; do
	[ -z "$(pid_of "$d")" ] || die "a cluster runs already ($d, pid $(pid_of "$d")): KUBECONFIG=$KUBECONFIG_ADMIN; stop it with hack/kube-down.sh"
done
if [ -e "$KUBE_DIR" ] || [ -e "$KUBE_RUN" ]; then
	log "removing what a previous cluster left"
	"$HERE/kube-down.sh" >/dev/null
fi

# The node's address: the source of the default route, else the first
# global IPv4 address (the kubelet refuses a loopback node IP).
NODE_IP=$(ip -4 -o route get 192.0.2.255 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
[ -n "$NODE_IP" ] || NODE_IP=$(ip -4 -o addr show scope global | awk '{sub("/.*", "", $4); print $4; exit}')
[ -n "$NODE_IP" ] || die "no IPv4 address on this machine for the node"

t0=$(date +%s.%N)
# Anything that fails from here on takes the cluster down again.
trap 'rc=$?; if [ $rc -ne 0 ]; then echo "kube-up: failed (exit $rc); logs in $KUBE_DIR/log; stopping what started" >&2; VC_KUBE_KEEP_LOGS=1 "$HERE/kube-down.sh" >&2 || true; fi' EXIT

mkdir -p "$KUBE_DIR"/{pki,log,etcd,kubelet,pod-logs,volume-plugins,sysctl,cni,containerd} "$KUBE_RUN/pids"
chmod 0700 "$KUBE_DIR" "$KUBE_RUN"
PKI=$KUBE_DIR/pki
LOG=$KUBE_DIR/log
# kube-proxy makes an (empty) filter chain KUBE-FIREWALL that its
# --cleanup leaves: kube-down removes it unless the host had it before.
for ipt in iptables ip6tables; do
	"$ipt" -w -S KUBE-FIREWALL >/dev/null 2>&1 && echo "$ipt"
done >"$KUBE_RUN/host-chains"

# --- certificates ---------------------------------------------------------------
log "certificates (openssl, P-256)"
ossl() { openssl "$@" 2>>"$LOG/openssl.log"; }
ossl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout "$PKI/ca.key" \
	-subj "/CN=vc-kube-ca" -days 3650 -out "$PKI/ca.crt" \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
# cert NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
cert() {
	local ext=$PKI/$1.ext
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$3"
		[ -z "${4:-}" ] || echo "subjectAltName=$4"
	} >"$ext"
	ossl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout "$PKI/$1.key" \
		-subj "$2" -out "$PKI/$1.csr"
	ossl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 365 -extfile "$ext" -out "$PKI/$1.crt"
	rm -f "$PKI/$1.csr" "$ext"
}
svc_ip=${KUBE_SVC_CIDR%.*}.1
cert apiserver "/CN=kube-apiserver" serverAuth \
	"IP:127.0.0.1,IP:$NODE_IP,IP:$svc_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
cert admin "/O=system:masters/CN=vc-kube-admin" clientAuth
cert kubelet "/O=system:nodes/CN=system:node:$KUBE_NODE" clientAuth
cert kubelet-serving "/CN=$KUBE_NODE" serverAuth "IP:127.0.0.1,IP:$NODE_IP,DNS:$KUBE_NODE,DNS:localhost"
cert controller-manager "/CN=system:kube-controller-manager" clientAuth
cert scheduler "/CN=system:kube-scheduler" clientAuth
cert kube-proxy "/CN=system:kube-proxy" clientAuth
ossl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:prime256v1 -out "$PKI/sa.key"
ossl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
chmod 0600 "$PKI"/*.key

# kubeconfig NAME (client certificate NAME.crt)
kubeconfig() {
	cat >"$KUBE_DIR/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vc-kube
  cluster:
    certificate-authority: $PKI/ca.crt
    server: https://127.0.0.1:$KUBE_API_PORT
users:
- name: $1
  user:
    client-certificate: $PKI/$1.crt
    client-key: $PKI/$1.key
contexts:
- name: vc-kube
  context:
    cluster: vc-kube
    user: $1
current-context: vc-kube
EOF
	chmod 0600 "$KUBE_DIR/$1.kubeconfig"
}
for k in admin kubelet controller-manager scheduler kube-proxy; do
	kubeconfig $k
done

# start NAME ARGS...: runs ARGS in a session of its own (it outlives this
# script), its output in log/NAME.log, its pid in pids/NAME.pid.
start() {
	local name=$1
	shift
	setsid "$@" >>"$LOG/$name.log" 2>&1 </dev/null &
	local pid=$! i=0
	echo $pid >"$KUBE_RUN/pids/$name.pid"
	# Until the wrappers (setsid, env, unshare, sh) exec the daemon,
	# pid_of would take it for exited.
	while [ $i -lt 100 ] && [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "${name:0:15}" ]; do
		sleep 0.05
		i=$((i + 1))
	done
}

# wait_for NAME SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds;
# fails with the daemon's log when it exits or the time is up.
wait_for() {
	local name=$1 secs=$2 what=$3 deadline
	shift 3
	deadline=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		if [ -z "$(pid_of "$name")" ]; then
			tail -n 30 "$LOG/$name.log" >&2
			die "$name exited before $what"
		fi
		if [ "$(date +%s)" -ge $deadline ]; then
			tail -n 30 "$LOG/$name.log" >&2
			die "$what: not after ${secs}s"
		fi
		sleep 0.3
	done
}

# --- containerd ---------------------------------------------------------------
log "containerd (handlers vc and runc), CNI bridge $KUBE_BRIDGE $KUBE_POD_CIDR"
shim_cfg=$KUBE_DIR/containerd/vc-shim.toml
{
	echo "state_root = \"$VM_STATE\""
	echo "data_root = \"$DATA_ROOT\""
	echo "accel = \"$ACCEL\""
	echo 'stop_timeout = "5s"'
	# A CPU resize may grow a VM past the host's 2 CPUs (TCG runs the
	# vCPUs as threads); memory stops at 2 GiB, so a resize past that is
	# refused (test/k8s TestPodResources).
	echo "max_cpus = ${VC_KUBE_MAX_CPUS:-4}"
	echo "max_memory_mib = ${VC_KUBE_MAX_MEMORY_MIB:-2048}"
	[ -z "${VC_KUBE_FACTORY:-}" ] || echo "factory = \"$VC_KUBE_FACTORY\""
	[ -z "${VC_KUBE_MEMORY_MIB:-}" ] || echo "memory_mib = $VC_KUBE_MEMORY_MIB"
	# QEMU runs in a cgroup of the sandbox's under the pod's, so the
	# pod's figures and limits cover it (docs/kubernetes.md).
	echo "vm_cgroup = \"${VC_KUBE_VM_CGROUP:-account}\""
	if [ -n "${VC_KUBE_KERNEL:-}" ]; then
		echo "kernel = \"$VC_KUBE_KERNEL\""
		echo "initrd = \"${VC_KUBE_INITRD:?VC_KUBE_KERNEL needs VC_KUBE_INITRD}\""
	fi
} >"$shim_cfg"
cat >"$KUBE_DIR/cni/10-vc-kube.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "vc-kube",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$KUBE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$KUBE_DIR/cni-ipam",
        "ranges": [[{"subnet": "$KUBE_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
cat >"$KUBE_DIR/containerd/config.toml" <<EOF
# Written by hack/kube-up.sh.
version = 3
root = '$KUBE_DIR/containerd/root'
state = '$KUBE_RUN/containerd'
disabled_plugins = ['io.containerd.snapshotter.v1.btrfs', 'io.containerd.snapshotter.v1.zfs',
  'io.containerd.snapshotter.v1.devmapper', 'io.containerd.snapshotter.v1.blockfile',
  'io.containerd.snapshotter.v1.erofs', 'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing', 'io.containerd.nri.v1.nri']

[grpc]
  address = '$CTRD_SOCK'

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = '$KUBE_DIR/containerd/opt'
  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = '$KUBE_RUN/s'
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'registry.k8s.io/pause:vc-test'
  [plugins.'io.containerd.cri.v1.runtime']
    netns_mounts_under_state_dir = true
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        sandboxer = 'podsandbox'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$CTRD_BIN/runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.vc]
        runtime_type = 'io.containerd.vc.v2'
        sandboxer = 'podsandbox'
        pod_annotations = ['io.virtcontainers.*']
        container_annotations = ['io.virtcontainers.*']
        # A privileged pod gets the VM's devices, not the host's (whose
        # block devices would otherwise be hotplugged into the VM).
        privileged_without_host_devices = true
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.vc.options]
          ConfigPath = '$shim_cfg'
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni']
      conf_dir = '$KUBE_DIR/cni'
      max_conf_num = 1
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
EOF
start containerd env PATH="$SHIM_DIR:$CTRD_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
	VC_SHIM_CONFIG="$shim_cfg" "$CTRD_BIN/containerd" --config "$KUBE_DIR/containerd/config.toml"
wait_for containerd 30 "containerd's socket" test -S "$CTRD_SOCK"
ctr() { "$CTRD_BIN/ctr" --address "$CTRD_SOCK" "$@"; }
wait_for containerd 30 "containerd answering" ctr version

log "importing the test images (busybox:vc-test, pause:vc-test)"
imgdir=$KUBE_DIR/images
mkdir -p "$imgdir"
(cd "$REPO" && "$GO" run ./hack/kubeimages "$imgdir") >"$imgdir/list"
while read -r tarball; do
	ctr -n k8s.io images import --platform "linux/$("$GO" env GOARCH)" "$tarball" >>"$LOG/images.log" 2>&1
done <"$imgdir/list"

# --- control plane ------------------------------------------------------------
log "etcd"
start etcd "$KUBE_BIN/etcd" --name vc-kube --data-dir "$KUBE_DIR/etcd" \
	--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
	--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	--initial-cluster vc-kube=http://127.0.0.1:2380 --listen-metrics-urls '' --log-level warn
wait_for etcd 60 "etcd healthy" curl -fsS http://127.0.0.1:2379/health

log "kube-apiserver on $NODE_IP:$KUBE_API_PORT"
start kube-apiserver "$KUBE_BIN/kube-apiserver" \
	--etcd-servers http://127.0.0.1:2379 \
	--bind-address 0.0.0.0 --secure-port "$KUBE_API_PORT" --advertise-address "$NODE_IP" \
	--tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
	--client-ca-file "$PKI/ca.crt" \
	--kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
	--kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
	--kubelet-preferred-address-types InternalIP \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
	--service-cluster-ip-range "$KUBE_SVC_CIDR" \
	--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
	--profiling=false --v=1
wait_for kube-apiserver 180 "kube-apiserver ready" kctl get --raw /readyz

log "kube-controller-manager, kube-scheduler"
start kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
	--kubeconfig "$KUBE_DIR/controller-manager.kubeconfig" \
	--authentication-kubeconfig "$KUBE_DIR/controller-manager.kubeconfig" \
	--authorization-kubeconfig "$KUBE_DIR/controller-manager.kubeconfig" \
	--bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
	--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
	--cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
	--profiling=false --v=1
start kube-scheduler "$KUBE_BIN/kube-scheduler" \
	--kubeconfig "$KUBE_DIR/scheduler.kubeconfig" \
	--authentication-kubeconfig "$KUBE_DIR/scheduler.kubeconfig" \
	--authorization-kubeconfig "$KUBE_DIR/scheduler.kubeconfig" \
	--bind-address 127.0.0.1 --leader-elect=false --profiling=false --v=1

# --- node -----------------------------------------------------------------------
log "kubelet (node $KUBE_NODE, $NODE_IP)"
cat >"$KUBE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 0.0.0.0
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$CTRD_SOCK
cgroupDriver: cgroupfs
# These hosts run cgroup v1 (hybrid).
failCgroupV1: false
failSwapOn: false
# Checked, never written: see the mount namespace below.
protectKernelDefaults: true
podLogsDir: $KUBE_DIR/pod-logs
volumePluginDir: $KUBE_DIR/volume-plugins
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
# ConfigMap and Secret updates reach the pods within this (default 1m).
syncFrequency: 10s
# Volume usage in the summary API (/stats/summary) within this (default 1m).
volumeStatsAggPeriod: 10s
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  imagefs.available: 2%
  nodefs.inodesFree: 2%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
# No iptables chains of the kubelet's on the host (KUBE-FIREWALL, canaries).
makeIPTablesUtilChains: false
EOF
# The /proc/sys values protectKernelDefaults wants, bound over the real
# entries in the kubelet's own mount namespace only.
sysctls=(kernel/panic:10 kernel/panic_on_oops:1 vm/overcommit_memory:1 kernel/keys/root_maxkeys:1000000 kernel/keys/root_maxbytes:25000000)
binds=""
for s in "${sysctls[@]}"; do
	key=${s%%:*}
	f=$KUBE_DIR/sysctl/${key//\//.}
	echo "${s#*:}" >"$f"
	binds+="mount --bind $f /proc/sys/$key && "
done
# The kubelet's root is a shared mount: what it mounts there (volumes)
# propagates out of its namespace to containerd and the shims.
mount --bind "$KUBE_DIR/kubelet" "$KUBE_DIR/kubelet"
mount --make-shared "$KUBE_DIR/kubelet"
start kubelet unshare --mount --propagation unchanged -- sh -c "mount --make-rprivate /proc && $binds exec \"\$0\" \"\$@\"" \
	"$KUBE_BIN/kubelet" --config "$KUBE_DIR/kubelet.yaml" --kubeconfig "$KUBE_DIR/kubelet.kubeconfig" \
	--root-dir "$KUBE_DIR/kubelet" --hostname-override "$KUBE_NODE" --node-ip "$NODE_IP" --v=1

log "kube-proxy (iptables)"
cat >"$KUBE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KUBE_DIR/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $KUBE_NODE
clusterCIDR: $KUBE_POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the host's conntrack and route_localnet sysctls as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
EOF
start kube-proxy "$KUBE_BIN/kube-proxy" --config "$KUBE_DIR/kube-proxy.yaml" --v=1

wait_for kubelet 120 "node $KUBE_NODE registered" kctl get node "$KUBE_NODE"
wait_for kubelet 120 "node $KUBE_NODE Ready" kctl wait --for=condition=Ready "node/$KUBE_NODE" --timeout=2s
wait_for kube-controller-manager 120 "the default service account" kctl get serviceaccount default
wait_for kube-controller-manager 120 "the cluster's CA config map" kctl get configmap kube-root-ca.crt

# The vc RuntimeClass's overhead: what a pod's VM costs beyond its
# containers' limits, from the shim's configuration. The VM has the
# shim's memory_mib (the guest kernel's, the agent's, its page cache)
# on top of the limits (pod_sizing) and QEMU has its own (device
# emulation, TCG's translated code: VC_KUBE_QEMU_MIB); QEMU runs in
# the pod's cgroup (vm_cgroup), whose memory limit the kubelet makes the
# limits plus this overhead, and the scheduler counts it.
vm_base_mib=$(sed -n 's/^memory_mib = //p' "$shim_cfg")
overhead_mem="$(( ${vm_base_mib:-256} + ${VC_KUBE_QEMU_MIB:-192} ))Mi"
overhead_cpu=${VC_KUBE_OVERHEAD_CPU:-50m}
kctl apply -f - >/dev/null <<EOF
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: vc}
handler: vc
overhead:
  podFixed: {cpu: "$overhead_cpu", memory: "$overhead_mem"}
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: runc}
handler: runc
EOF

trap - EXIT
log "up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s: node $KUBE_NODE Ready, RuntimeClasses vc (overhead $overhead_cpu, $overhead_mem) and runc, image docker.io/library/busybox:vc-test"
echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
echo "kubectl: $KUBE_BIN/kubectl"
echo "stop: $HERE/kube-down.sh (make kube-down)"
