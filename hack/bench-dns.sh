#!/usr/bin/env bash
# Cluster DNS benchmark on two lab hosts with the real bundle: runs the DNS
# end-to-end test (test/e2e/dns_test.go: init on master01, node01 joining,
# CoreDNS with 2 replicas) whose bench step sends 20000 bounded UDP queries
# (8 in flight) from a pod on node01 to the cluster DNS Service with the
# bundle's dnsquery program, and prints the query latency p50/p90/p99, the
# queries per second and the memory (RSS) of each CoreDNS replica. Needs root
# and a built bundle with images/coredns.tar (hack/build-bundle.sh).
#
#   hack/bench-dns.sh [--subnet 192.168.183.0/24]
set -euo pipefail
cd "$(dirname "$0")/.."
SUBNET=192.168.183.0/24
[ "${1:-}" = --subnet ] && SUBNET=$2
OUT=$(mktemp /tmp/kubeforge-bench-dns.XXXX.json)
LOG=${OUT%.json}.log
trap 'rm -f "$OUT"' EXIT
echo "[bench] running the DNS e2e on $SUBNET (log: $LOG)" >&2
if ! KUBEFORGE_E2E=1 KUBEFORGE_E2E_DNS_SUBNET=$SUBNET KUBEFORGE_BENCH_OUT=$OUT GOTOOLCHAIN=local \
    go test -count=1 -run '^TestDNS$' -v -timeout 30m ./test/e2e/ >"$LOG" 2>&1; then
  echo "[bench] the e2e failed; see $LOG" >&2
  grep -E -- '--- FAIL|Error|failed' "$LOG" | head -20 >&2
  exit 1
fi
python3 - "$OUT" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
f = dict(kv.split("=", 1) for kv in b["bench"].splitlines()[0].split() if "=" in kv)
print("cluster DNS bench (2 nspawn hosts, CoreDNS from the bundle, 2 replicas; client pod on node01 -> Service kube-dns)")
print("  queries %s (ok %s, errors %s) in %ss, 8 in flight" % (f["queries"], f["ok"], f["errors"], f["seconds"]))
print("  queries/s:     %s" % f["qps"])
print("  latency p50:   %.3f ms" % (int(f["p50_us"]) / 1000))
print("  latency p90:   %.3f ms" % (int(f["p90_us"]) / 1000))
print("  latency p99:   %.3f ms" % (int(f["p99_us"]) / 1000))
print("  CoreDNS memory per replica (RSS, after the bench):")
for h, kib in sorted(b["corednsRSSKiB"].items()):
    for k in kib.split():
        print("    %-9s %6.1f MiB" % (h, int(k) / 1024))
PY
