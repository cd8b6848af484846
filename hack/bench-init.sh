#!/usr/bin/env bash
# Init benchmark: brings up a one-host lab (master01: control plane and a
# single etcd member), runs `kubeforge init` on it with the real binaries and
# prints the time of every phase, the total to a ready API server (/readyz,
# i.e. through wait-control-plane) and the whole run; then the same for a rerun
# on the converged host (the idempotent path), and the dry run's time.
#
#   hack/bench-init.sh [--subnet 192.168.181.0/24]
#
# Needs root, the lab prerequisites (hack/install-deps.sh) and a bundle
# (KUBEFORGE_BUNDLE or ~/.cache/kubeforge/bundles/v1.34.4-v3.6.16).
set -euo pipefail
cd "$(dirname "$0")/.."
SUBNET=192.168.181.0/24
[ "${1:-}" = --subnet ] && SUBNET=$2
BIN=${KUBEFORGE_BIN:-_output/kubeforge}
[ -x "$BIN" ] || make -s build
BUNDLE=${KUBEFORGE_BUNDLE:-$HOME/.cache/kubeforge/bundles/v1.34.4-v3.6.16}
[ -f "$BUNDLE/manifest.json" ] || { echo "no bundle at $BUNDLE (set KUBEFORGE_BUNDLE)" >&2; exit 1; }
DIR=$(mktemp -d /tmp/kubeforge-bench-init.XXXX)
trap '$BIN lab down --dir "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT

$BIN lab up --dir "$DIR" --subnet "$SUBNET" --hosts master01 --bundle "$BUNDLE" >/dev/null
SSH=(ssh -F "$DIR/ssh_config" -o BatchMode=yes master01)
"${SSH[@]}" 'mkdir -p /root/kf && cat > /root/kf/kubeforge && chmod 755 /root/kf/kubeforge' <"$BIN"
"${SSH[@]}" 'cat > /root/kf/cluster.yaml' <"$DIR/cluster.yaml"
KF='/root/kf/kubeforge'
ARGS='--config /root/kf/cluster.yaml --node-name master01 --skip-phases overlay'
# The documented order: prepare the host first (sysctls, chrony), then init.
"${SSH[@]}" "$KF preflight --config /root/kf/cluster.yaml --node-name master01 --fix" >/dev/null

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }

# table reads the runner's "[phase] done in 1.23s" lines: every phase with its
# status and time, then the sum of the top-level phases through
# wait-control-plane (the time to a ready API server).
table() {
	awk '
	function secs(d) {
		if (d ~ /ms$/) return substr(d, 1, length(d)-2) / 1000
		if (d ~ /µs$/) return substr(d, 1, length(d)-3) / 1000000
		if (d ~ /ns$/) return 0
		if (d ~ /s$/)  return substr(d, 1, length(d)-1)
		return 0
	}
	match($0, /^\[[a-z0-9\/-]+\] (done in|unchanged in|skipped)/) {
		name = substr($1, 2, length($1)-2); status = $2; t = ($2 == "skipped") ? "-" : $4
		sub(/:$/, "", t)
		printf "  %-36s %-10s %s\n", name, status, t
		if (name !~ /\//) { total += secs(t); if (!ready) toready = total }
		if (name == "wait-control-plane") ready = 1
	}
	END { printf "  %-36s %-10s %.2fs\n  %-36s %-10s %.2fs\n", "total to /readyz", "", toready, "total", "", total }'
}

t=$(now); "${SSH[@]}" "$KF init $ARGS --dry-run" >/dev/null; dry=$(secs "$t" "$(now)")
t=$(now); first=$("${SSH[@]}" "$KF init $ARGS" 2>&1); firstwall=$(secs "$t" "$(now)")
t=$(now); again=$("${SSH[@]}" "$KF init $ARGS" 2>&1); againwall=$(secs "$t" "$(now)")
"${SSH[@]}" 'kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz' | grep -qx ok

echo "init bench (lab host master01: control plane + one etcd member; overlay skipped)"
echo "first init, fresh host (wall clock over ssh ${firstwall}s):"
echo "$first" | table
echo "rerun on the converged host (wall clock ${againwall}s):"
echo "$again" | table
echo "dry run on a fresh host: ${dry}s"
