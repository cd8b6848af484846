#!/usr/bin/env bash
# Overlay benchmarks.
#
#   hack/bench-overlay.sh                 netlink and agent benchmarks (root: they make
#                                         network namespaces; etcd from the bundle), and
#                                         the agent side by side with flanneld v0.26.7
#                                         (built by hack/build-flanneld.sh, cached; the
#                                         first build takes a few minutes)
#   KUBEFORGE_E2E=1 hack/bench-overlay.sh  plus the lab numbers: 500 simulated leases on
#                                         a real host (programming time, agent RSS), a new
#                                         node's route convergence, iperf3 pod-to-pod vs
#                                         host-to-host across VXLAN
#
# The lab numbers come from TestOverlay's "BENCH" lines; the e2e run takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
if [ "$(id -u)" != 0 ]; then
  echo "bench-overlay: needs root (network namespaces, VXLAN devices)" >&2
  exit 1
fi
echo "== BenchmarkSync500: 500 peers (1500 route/neigh/fdb entries) onto a fresh device"
echo "== BenchmarkAgentStart500: agent from start to ready in a 500-lease cluster (real etcd)"
go test -count=1 -run '^$' -bench 'Sync500|AgentStart500|KubeAgent500' -benchtime 10x -benchmem \
  ./components/overlay/vxlan/ ./components/overlay/
echo "== BenchmarkFlanneldSideBySide500: kubeforge overlay run vs flanneld (kube-subnet-mgr), 500 Nodes, one real loopback control plane"
KUBEFORGE_FLANNELD=$(hack/build-flanneld.sh | tail -n 1)
export KUBEFORGE_FLANNELD
# One run is one sample set (50 new Nodes): -benchtime 1x.
go test -count=1 -run '^$' -bench 'FlanneldSideBySide500' -benchtime 1x -timeout 30m ./components/overlay/
if [ "${KUBEFORGE_E2E:-}" = 1 ]; then
  echo "== lab (TestOverlay)"
  go test -count=1 -run '^TestOverlay$' -v -timeout 30m ./test/e2e/ | grep -E 'BENCH|^(ok|FAIL|--- )' || true
else
  echo "(set KUBEFORGE_E2E=1 for the lab numbers: 500 leases on a real host, agent RSS, convergence, iperf3 ratio)"
fi
