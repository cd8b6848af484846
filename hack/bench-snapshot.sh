#!/usr/bin/env bash
# Bench: `kubeforge etcd snapshot save` against `etcdctl snapshot save` of the same
# ~100 MB database (wall time and peak RSS, side by side in one run), and
# `kubeforge etcd snapshot verify` of both files. Runs on this machine: one etcd
# from the bundle on loopback with mutual TLS, in a temporary directory that is
# removed afterwards.
#
#   hack/bench-snapshot.sh [--mb 100] [--bundle DIR]
set -euo pipefail

MB=100
BUNDLE=${KUBEFORGE_BUNDLE:-$(ls -d ~/.cache/kubeforge/bundles/v1.34.4-v3.6.16 2>/dev/null || true)}
while [ $# -gt 0 ]; do
	case $1 in
	--mb) MB=$2; shift 2 ;;
	--bundle) BUNDLE=$2; shift 2 ;;
	*) echo "unknown argument $1 (want --mb N, --bundle DIR)" >&2; exit 2 ;;
	esac
done
ETCD=$BUNDLE/bin/etcd
ETCDCTL=$BUNDLE/bin/etcdctl
[ -x "$ETCD" ] && [ -x "$ETCDCTL" ] || { echo "no etcd/etcdctl in $BUNDLE/bin (set KUBEFORGE_BUNDLE or --bundle)" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /var/tmp/kubeforge-bench-snapshot.XXXXXX)
chmod 700 "$W"
ETCD_PID=
cleanup() {
	[ -n "$ETCD_PID" ] && kill "$ETCD_PID" 2>/dev/null && wait "$ETCD_PID" 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT

echo "[bench] building kubeforge"
(cd "$ROOT" && go build -o "$W/kubeforge" ./cmd/kubeforge)
KF=$W/kubeforge

echo "[bench] PKI (openssl, throwaway)"
cd "$W"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=bench-ca \
	-keyout ca.key -out ca.crt 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >ext.cnf
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=bench -keyout tls.key -out tls.csr 2>/dev/null
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out tls.crt 2>/dev/null
TLS=(--cacert "$W/ca.crt" --cert "$W/tls.crt" --key "$W/tls.key")

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CP=$(port); PP=$(port)
EP=https://127.0.0.1:$CP
"$ETCD" --name bench --data-dir "$W/data" --quota-backend-bytes $((4 << 30)) \
	--listen-client-urls "$EP" --advertise-client-urls "$EP" \
	--listen-peer-urls "https://127.0.0.1:$PP" --initial-advertise-peer-urls "https://127.0.0.1:$PP" \
	--initial-cluster "bench=https://127.0.0.1:$PP" \
	--cert-file tls.crt --key-file tls.key --trusted-ca-file ca.crt --client-cert-auth \
	--peer-cert-file tls.crt --peer-key-file tls.key --peer-trusted-ca-file ca.crt --peer-client-cert-auth \
	--log-level error >"$W/etcd.log" 2>&1 &
ETCD_PID=$!
for _ in $(seq 100); do
	"$ETCDCTL" --endpoints "$EP" "${TLS[@]}" endpoint health >/dev/null 2>&1 && break
	sleep 0.1
done

echo "[bench] writing ~$MB MB (1 MB values)"
head -c 786432 /dev/urandom | base64 -w0 >"$W/value" # 1 MiB of text
for i in $(seq "$MB"); do
	"$ETCDCTL" --endpoints "$EP" "${TLS[@]}" put "/registry/bench/$i" <"$W/value" >/dev/null
done
DB=$("$ETCDCTL" --endpoints "$EP" "${TLS[@]}" endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"])')
echo "[bench] database: $((DB / 1048576)) MiB"

"$KF" config print-defaults >"$W/cluster.yaml"
mkdir -m 700 "$W/kf" "$W/ctl"

# measure NAME CMD...: wall seconds and peak RSS (GNU time), output kept in $W/NAME.out.
declare -A WALL RSS
measure() {
	local name=$1; shift
	/usr/bin/time -f '%e %M' -o "$W/$name.time" "$@" >"$W/$name.out" 2>&1 || { cat "$W/$name.out"; echo "[bench] $name failed" >&2; exit 1; }
	read -r WALL[$name] RSS[$name] <"$W/$name.time"
}

# Alternate the two, twice each, so neither gets a warmer page cache.
for r in 1 2; do
	measure "etcdctl-$r" "$ETCDCTL" --endpoints "$EP" "${TLS[@]}" snapshot save "$W/ctl/etcdctl-$r.db"
	measure "kubeforge-$r" "$KF" etcd snapshot save --config "$W/cluster.yaml" --dir "$W/kf" --endpoint "$EP" "${TLS[@]}"
	sleep 1 # snapshot names are per second
done
KFFILE=$(ls "$W"/kf/*.db | head -1)
measure verify-kubeforge "$KF" etcd snapshot verify --etcd-binary "$ETCD" "$KFFILE"
measure verify-etcdctl "$KF" etcd snapshot verify --no-sidecar --etcd-binary "$ETCD" "$W/ctl/etcdctl-1.db"

echo
printf '%-34s %10s %14s\n' "command ($((DB / 1048576)) MiB database)" "wall s" "peak RSS MiB"
for r in 1 2; do
	printf '%-34s %10s %14d\n' "etcdctl snapshot save (run $r)" "${WALL[etcdctl-$r]}" $((RSS[etcdctl-$r] / 1024))
	printf '%-34s %10s %14d\n' "kubeforge etcd snapshot save ($r)" "${WALL[kubeforge-$r]}" $((RSS[kubeforge-$r] / 1024))
done
printf '%-34s %10s %14d\n' "kubeforge verify (kubeforge file)" "${WALL[verify-kubeforge]}" $((RSS[verify-kubeforge] / 1024))
printf '%-34s %10s %14d\n' "kubeforge verify (etcdctl file)" "${WALL[verify-etcdctl]}" $((RSS[verify-etcdctl] / 1024))
echo
grep '^\[verify\] OK' "$W/verify-kubeforge.out" "$W/verify-etcdctl.out" | sed "s|$W/||"
echo "(peak RSS of verify is kubeforge's own; the throwaway etcd is a child process: GNU time counts the largest of them)"
