#!/usr/bin/env bash
# etcd benchmark: how long a member takes to become useful.
#   - loopback: JoinMember (learner add, start, catch-up, promotion) against real
#     etcd processes on 127.0.0.x, as a Go benchmark (no root needed);
#   - lab (root): `kubeforge init phase etcd` start to healthy member, and
#     `kubeforge join phase etcd` start to promoted voting member, on nspawn hosts,
#     as measured by the TestEtcd end-to-end test.
#
#   hack/bench-etcd.sh [--no-lab]        BENCHTIME=5x by default
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
LAB=1
[ "${1:-}" = --no-lab ] && LAB=0
KUBEFORGE_BUNDLE=${KUBEFORGE_BUNDLE:-$(hack/build-bundle.sh | tail -n1)}
export KUBEFORGE_BUNDLE

echo "etcd bench (etcd from $KUBEFORGE_BUNDLE)"
echo "  loopback, join to promoted member:"
go test -count=1 -run '^$' -bench BenchmarkLoopbackJoin -benchtime "${BENCHTIME:-5x}" ./components/etcd/ \
  | awk '/^BenchmarkLoopbackJoin/ {printf "    %.2fs per join (%s ms until the member ran), %s joins\n", $3/1e9, $5, $2}'

if [ $LAB = 1 ]; then
  if [ "$(id -u)" != 0 ]; then echo "  lab: skipped (needs root)"; exit 0; fi
  echo "  lab hosts (master01, node01, node02), wall time of the phase commands over ssh:"
  KUBEFORGE_E2E=1 go test -count=1 -timeout 30m -run 'TestEtcd$' -v ./test/e2e/ \
    | sed -n 's/.*BENCH etcd \(.*\)/    \1/p'
fi
