#!/usr/bin/env bash
# Cluster benchmark on three lab hosts with the real bundle: runs the nodes
# end-to-end test (test/e2e/nodes_test.go: init on master01, node01 and node02
# joining with --etcd, a 3-replica Deployment, reset and rejoin of node02) and
# prints what it measured: init time, each join's time, time from the start of
# init until all three nodes are Ready, time until the Deployment is Running,
# reset and rejoin times, and the memory (RSS) of the kubeforge-managed units of
# every node. Needs root and a built bundle (hack/build-bundle.sh).
#
#   hack/bench-cluster.sh [--subnet 192.168.177.0/24]
set -euo pipefail
cd "$(dirname "$0")/.."
SUBNET=192.168.177.0/24
[ "${1:-}" = --subnet ] && SUBNET=$2
OUT=$(mktemp /tmp/kubeforge-bench-cluster.XXXX.json)
LOG=${OUT%.json}.log
trap 'rm -f "$OUT"' EXIT
echo "[bench] running the nodes e2e on $SUBNET (log: $LOG)" >&2
if ! KUBEFORGE_E2E=1 KUBEFORGE_E2E_NODES_SUBNET=$SUBNET KUBEFORGE_BENCH_OUT=$OUT GOTOOLCHAIN=local \
    go test -count=1 -run '^TestNodes$' -v -timeout 30m ./test/e2e/ >"$LOG" 2>&1; then
  echo "[bench] the e2e failed; see $LOG" >&2
  grep -E -- '--- FAIL|Error|failed' "$LOG" | head -20 >&2
  exit 1
fi
python3 - "$OUT" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
s = lambda ns: "%.2fs" % (ns / 1e9)
print("cluster bench (3 nspawn hosts, real binaries: master01 control plane + etcd, node01/node02 workers + etcd)")
print("  init on master01:                 %s" % s(b["init"]))
for h, d in sorted(b["joins"].items()):
    print("  join %-8s (--etcd):          %s" % (h, s(d)))
print("  init + joins + wait, all 3 Ready: %s" % s(b["allReady"]))
print("  Deployment 3/3 Running (apply):   %s" % s(b["deploymentRunning"]))
print("  reset node02:                     %s" % s(b["reset"]))
print("  rejoin node02:                    %s" % s(b["rejoin"]))
print("  memory of kubeforge-managed units (RSS, pods not included):")
for h, units in sorted(b["unitMemoryKiB"].items()):
    total = sum(units.values())
    detail = ", ".join("%s %.0f" % (u.replace(".service", ""), kb / 1024) for u, kb in sorted(units.items(), key=lambda x: -x[1]))
    print("    %-9s %6.1f MiB  (%s MiB)" % (h, total / 1024, detail))
PY
