#!/usr/bin/env bash
# Lab benchmark: prints how long `kubeforge lab up` takes for 3 hosts with the base
# image cached (fresh hosts) and warm (hosts already up: the idempotent path), how
# long `down` takes, and the memory of each idle host.
#
#   hack/bench-lab.sh [--subnet 192.168.179.0/24]
set -euo pipefail
cd "$(dirname "$0")/.."
SUBNET=192.168.179.0/24
[ "${1:-}" = --subnet ] && SUBNET=$2
BIN=${KUBEFORGE_BIN:-_output/kubeforge}
[ -x "$BIN" ] || make -s build
DIR=$(mktemp -d /tmp/kubeforge-bench-lab.XXXX)
trap '$BIN lab down --dir "$DIR" >/dev/null 2>&1 || true' EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }

# Make sure the base exists so "cold" measures hosts, not debootstrap.
t=$(now); $BIN lab up --dir "$DIR" --subnet "$SUBNET" >/dev/null; first=$(secs "$t" "$(now)")
t=$(now); $BIN lab up --dir "$DIR" --subnet "$SUBNET" >/dev/null; warm=$(secs "$t" "$(now)")
t=$(now); $BIN lab down --dir "$DIR" >/dev/null; down=$(secs "$t" "$(now)")
t=$(now); $BIN lab up --dir "$DIR" --subnet "$SUBNET" >/dev/null; cold=$(secs "$t" "$(now)")
sleep "${IDLE_SETTLE:-10}"
echo "lab bench (3 hosts: master01 node01 node02)"
printf '  first up (builds the base if not cached): %ss\n' "$first"
printf '  up, base cached, fresh hosts (cold):      %ss\n' "$cold"
printf '  up, hosts already running (warm):         %ss\n' "$warm"
printf '  down (poweroff + cleanup):                %ss\n' "$down"
$BIN lab status --dir "$DIR" -o json | python3 -c '
import json,sys
st=json.load(sys.stdin)
for h in st["hosts"]:
    print("  idle host %-9s memory %6.1f MiB (systemd: %s)" % (h["name"], h["memoryBytes"]/1048576, h["systemState"]))
'
