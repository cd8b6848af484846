#!/usr/bin/env bash
# Builds a kubeforge bundle (upstream Kubernetes + etcd binaries and a manifest) from
# source through the Go module proxy, and caches it outside the repository.
#
#   hack/build-bundle.sh [--k8s v1.34.4] [--etcd v3.6.16] [--out DIR] [--no-tarball]
#
# Prints the bundle directory on the last line of stdout. A second run with the same
# versions reuses the cache and takes seconds.
#
# Why wrapper modules: k8s.io/kubernetes replaces every k8s.io staging module with
# ./staging/..., so `go install k8s.io/kubernetes/cmd/x@v` refuses to build. A module of
# our own that requires k8s.io/kubernetes and replaces each staging module with its
# published v0.Y.Z builds the very same sources. etcd has the same problem.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CACHE=${KUBEFORGE_CACHE:-$HOME/.cache/kubeforge}
TARBALL=1
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --k8s) K8S_VERSION=$2; shift 2 ;;
    --etcd) ETCD_VERSION=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-tarball) TARBALL=0; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build-bundle: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $K8S_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "build-bundle: --k8s $K8S_VERSION is not of the form v1.Y.Z" >&2; exit 2; }
K8S_MINOR=${BASH_REMATCH[1]}
STAGING_VERSION="v0.${K8S_MINOR}.${BASH_REMATCH[2]}"
[[ $ETCD_VERSION =~ ^v3\.[0-9]+\.[0-9]+$ ]] || { echo "build-bundle: --etcd $ETCD_VERSION is not of the form v3.Y.Z" >&2; exit 2; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$CACHE/bundles/$K8S_VERSION-$ETCD_VERSION}
BUILD=$CACHE/build
mkdir -p "$OUT/bin" "$BUILD"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

log() { printf '[bundle] %s\n' "$*" >&2; }
t0=$(date +%s)

# Each binary is stamped with the version it was built from; a stamp that matches skips it.
stamp_ok() { [ -x "$OUT/bin/$1" ] && [ "$(cat "$OUT/bin/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$OUT/bin/.$1.version"; }

# ---- Kubernetes -----------------------------------------------------------------------
K8S_BINS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
need_k8s=0
for b in $K8S_BINS; do stamp_ok "$b" "$K8S_VERSION" || need_k8s=1; done
if [ $need_k8s = 1 ]; then
  W=$BUILD/k8s-$K8S_VERSION
  mkdir -p "$W"
  if [ ! -f "$W/.ready" ]; then
    log "wrapper module for k8s.io/kubernetes $K8S_VERSION (staging modules at $STAGING_VERSION)"
    modfile=$(cd "$W" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [ -f "$modfile" ] || { echo "build-bundle: could not fetch go.mod of k8s.io/kubernetes@$K8S_VERSION" >&2; exit 1; }
    {
      echo "module kubeforge.local/k8s-build"
      echo
      echo "go 1.24.0"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      echo "replace ("
      grep -E '=> \./staging/src/' "$modfile" | awk -v v="$STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
      echo ")"
    } >"$W/go.mod"
    (cd "$W" && for b in $K8S_BINS; do go get -tool "k8s.io/kubernetes/cmd/$b@$K8S_VERSION"; done) >&2
    touch "$W/.ready"
  fi
  build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR"
    ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  for b in $K8S_BINS; do
    stamp_ok "$b" "$K8S_VERSION" && continue
    s=$(date +%s)
    (cd "$W" && go build -trimpath -ldflags "$ld" -o "$OUT/bin/$b.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "$OUT/bin/$b.tmp" "$OUT/bin/$b"; stamp "$b" "$K8S_VERSION"
    log "built $b $K8S_VERSION in $(( $(date +%s) - s ))s"
  done
fi

# ---- etcd -----------------------------------------------------------------------------
if ! stamp_ok etcd "$ETCD_VERSION" || ! stamp_ok etcdctl "$ETCD_VERSION"; then
  W=$BUILD/etcd-$ETCD_VERSION
  mkdir -p "$W"
  if [ ! -f "$W/.ready" ]; then
    log "wrapper module for etcd $ETCD_VERSION"
    printf 'module kubeforge.local/etcd-build\n\ngo 1.24\n' >"$W/go.mod"
    (cd "$W" && go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION") >&2
    touch "$W/.ready"
  fi
  for pair in etcd:go.etcd.io/etcd/server/v3 etcdctl:go.etcd.io/etcd/etcdctl/v3; do
    b=${pair%%:*}; pkg=${pair#*:}
    stamp_ok "$b" "$ETCD_VERSION" && continue
    s=$(date +%s)
    (cd "$W" && go build -trimpath -ldflags "-s -w" -o "$OUT/bin/$b.tmp" "$pkg")
    mv "$OUT/bin/$b.tmp" "$OUT/bin/$b"; stamp "$b" "$ETCD_VERSION"
    log "built $b $ETCD_VERSION in $(( $(date +%s) - s ))s"
  done
fi

# ---- manifest and tarball -------------------------------------------------------------
(cd "$REPO" && go run ./hack/bundle-manifest --dir "$OUT" --kubernetes "$K8S_VERSION" --etcd "$ETCD_VERSION") >&2
if [ $TARBALL = 1 ]; then
  tgz="$OUT.tar.gz"
  if [ ! -f "$tgz" ] || [ "$OUT/manifest.json" -nt "$tgz" ]; then
    s=$(date +%s)
    gz=gzip; command -v pigz >/dev/null && gz=pigz
    tar -C "$(dirname "$OUT")" --exclude='.*.version' -cf - "$(basename "$OUT")" | $gz -1 >"$tgz.tmp"
    mv "$tgz.tmp" "$tgz"
    log "wrote $tgz in $(( $(date +%s) - s ))s"
  fi
fi
log "bundle ready in $(( $(date +%s) - t0 ))s: $OUT"
echo "$OUT"
