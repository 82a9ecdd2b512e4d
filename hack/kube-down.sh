#!/usr/bin/env bash
# Stops the cluster hack/kube-up.sh started and removes everything it made:
# its pods (their VMs and containers), its daemons, shims, QEMU processes,
# mounts, network namespaces, the CNI bridge, kube-proxy's iptables rules,
# the kubelet's cgroups, its directories. Safe to run when nothing runs.
# VC_KUBE_KEEP_LOGS=1 keeps the logs (in $VC_KUBE_DIR/log) and nothing else.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/kube-env.sh"

log() { echo "kube-down: $*"; }
[ "$(id -u)" -eq 0 ] || { echo "kube-down: need root" >&2; exit 1; }
[ -e "$KUBE_DIR" ] || [ -e "$KUBE_RUN" ] || { log "no cluster"; exit 0; }

# stop NAME [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 10).
stop() {
	local pid
	pid=$(pid_of "$1")
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq $((${2:-10} * 10))); do
		[ -d "/proc/$pid" ] || return 0
		sleep 0.1
	done
	log "$1 (pid $pid) did not stop on SIGTERM: SIGKILL"
	kill -KILL "$pid" 2>/dev/null
	sleep 0.2
}

# Pods first, while the kubelet runs: it stops their containers and
# sandboxes (the VMs power off, CNI releases the addresses).
if [ -n "$(pid_of kube-apiserver)" ] && [ -n "$(pid_of kubelet)" ]; then
	log "deleting every workload and pod"
	kctl delete --all-namespaces --all --wait=false \
		deployments,replicasets,statefulsets,daemonsets,jobs,cronjobs >/dev/null 2>&1
	kctl delete --all-namespaces --all --grace-period=5 --timeout=120s pods >/dev/null 2>&1 ||
		log "pods still there after 120 s: they are removed below"
fi

for ((i = ${#KUBE_DAEMONS[@]} - 1; i >= 1; i--)); do
	stop "${KUBE_DAEMONS[$i]}"
done

# Sandboxes the kubelet did not stop: through CRI is not at hand here, so
# their tasks go through ctr; the shims and VMs left are killed below.
if [ -n "$(pid_of containerd)" ]; then
	ctr() { timeout 30 "$CTRD_BIN/ctr" --address "$CTRD_SOCK" -n k8s.io "$@" 2>/dev/null; }
	for id in $(ctr tasks list -q); do
		ctr tasks kill -a -s SIGKILL "$id" >/dev/null
		ctr tasks delete -f "$id" >/dev/null
	done
	for id in $(ctr containers list -q); do
		ctr containers delete "$id" >/dev/null
	done
fi
stop containerd 15

# pids_matching PATTERN: processes whose command line matches (ERE).
pids_matching() {
	local p
	for p in /proc/[0-9]*; do
		tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -Eq -- "$1" && echo "${p#/proc/}"
	done
}
left=$(pids_matching "^[^ ]*containerd-shim[^ ]* .*-address $CTRD_SOCK( |$)|^[^ ]*qemu-system[^ ]* .*$VM_STATE/")
if [ -n "$left" ]; then
	log "killing shims and VMs left: $(echo $left)"
	kill -KILL $left 2>/dev/null
	sleep 0.5
fi

# kube-proxy's iptables and nftables rules.
[ -x "$KUBE_BIN/kube-proxy" ] && "$KUBE_BIN/kube-proxy" --cleanup >/dev/null 2>&1
for ipt in iptables ip6tables; do
	grep -qx "$ipt" "$KUBE_RUN/host-chains" 2>/dev/null && continue
	"$ipt" -w -S KUBE-FIREWALL >/dev/null 2>&1 || continue
	"$ipt" -w -D INPUT -j KUBE-FIREWALL 2>/dev/null
	"$ipt" -w -D OUTPUT -j KUBE-FIREWALL 2>/dev/null
	"$ipt" -w -F KUBE-FIREWALL && "$ipt" -w -X KUBE-FIREWALL
done

# Mounts below the directories, deepest first (volumes, rootfs overlays,
# network namespaces, the kubelet's shared bind mount).
for dir in "$KUBE_DIR" "$KUBE_RUN" "$VM_STATE"; do
	awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print length($5), $5}' /proc/self/mountinfo |
		sort -rn | cut -d' ' -f2- | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
	done
done

ip link show "$KUBE_BRIDGE" >/dev/null 2>&1 && ip link del "$KUBE_BRIDGE"

# The kubelet's cgroups (kubepods and below), in every v1 hierarchy and
# the v2 one.
for root in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
	[ -d "$root/kubepods" ] || [ -d "$root/kubepods.slice" ] || continue
	find "$root"kubepods* -depth -type d -exec rmdir {} \; 2>/dev/null
done

# The kubelet links its containers' logs there, whatever podLogsDir says.
for l in /var/log/containers/*.log; do
	[ -L "$l" ] && case $(readlink "$l") in "$KUBE_DIR"/*) rm -f "$l" ;; esac
done
rmdir /var/log/containers 2>/dev/null

if [ -n "${VC_KUBE_KEEP_LOGS:-}" ] && [ -d "$KUBE_DIR/log" ]; then
	find "$KUBE_DIR" -mindepth 1 -maxdepth 1 ! -name log -exec rm -rf {} +
else
	rm -rf "$KUBE_DIR"
fi
rm -rf "$KUBE_RUN"
log "stopped; nothing left"
