#!/usr/bin/env bash
# Builds a kubeforge bundle from source through the Go module proxy, and caches it
# outside the repository: upstream Kubernetes and etcd binaries (bin/), the container
# runtime (containerd, its runc shim, runc) in bin/, CNI plugins in cni/bin/, the
# images nodes need without a registry (images/*.tar, OCI layouts) and a manifest.
#
#   hack/build-bundle.sh [--k8s v1.34.4] [--etcd v3.6.16] [--out DIR] [--no-tarball]
#   (runtime versions: CONTAINERD_VERSION, RUNC_VERSION, CNI_VERSION, PAUSE_VERSION;
#    add-ons: COREDNS_VERSION)
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
# containerd 2.2 is the line Kubernetes 1.34 was released against; runc 1.3 is the
# runc that containerd 2.2 is tested with.
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.2.9}
RUNC_VERSION=${RUNC_VERSION:-v1.3.6}
CNI_VERSION=${CNI_VERSION:-v1.9.1}
PAUSE_VERSION=${PAUSE_VERSION:-3.10}
HTTPECHO_VERSION=${HTTPECHO_VERSION:-1.0}
DNSQUERY_VERSION=${DNSQUERY_VERSION:-1.0}
# The CoreDNS kubeadm v1.34 deploys.
COREDNS_VERSION=${COREDNS_VERSION:-v1.12.1}
CACHE=${KUBEFORGE_CACHE:-$HOME/.cache/kubeforge}
TARBALL=1
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --k8s) K8S_VERSION=$2; shift 2 ;;
    --etcd) ETCD_VERSION=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-tarball) TARBALL=0; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
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
mkdir -p "$OUT/bin" "$OUT/cni/bin" "$OUT/images" "$BUILD"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

log() { printf '[bundle] %s\n' "$*" >&2; }
t0=$(date +%s)

# Each binary is stamped with the version it was built from; a stamp that matches skips it.
# A name with a directory (cni/bin/bridge, images/pause.tar) is relative to $OUT;
# a bare name lives in bin/.
bpath() { case "$1" in */*) echo "$OUT/$1" ;; *) echo "$OUT/bin/$1" ;; esac; }
stamp_ok() { local p; p=$(bpath "$1"); [ -f "$p" ] && [ "$(cat "$(dirname "$p")/.$(basename "$p").version" 2>/dev/null)" = "$2" ]; }
stamp() { local p; p=$(bpath "$1"); echo "$2" >"$(dirname "$p")/.$(basename "$p").version"; }

# wrapper DIR MODULE PKG@VERSION... prepares a wrapper module that pins the given
# main packages as tools (once; .ready marks a finished one).
wrapper() {
  local w=$1 mod=$2; shift 2
  mkdir -p "$w"
  [ -f "$w/.ready" ] && return 0
  log "wrapper module $mod for $*"
  printf 'module %s\n\ngo 1.24\n' "$mod" >"$w/go.mod"
  (cd "$w" && go get -tool "$@") >&2
  touch "$w/.ready"
}

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

# ---- container runtime: containerd, its runc shim, runc --------------------------------
# containerd and the shim build without cgo (btrfs, the one cgo plugin, is left out),
# which keeps them static like upstream's release shim.
CTD_PKG=github.com/containerd/containerd/v2
if ! stamp_ok containerd "$CONTAINERD_VERSION" || ! stamp_ok containerd-shim-runc-v2 "$CONTAINERD_VERSION"; then
  W=$BUILD/containerd-$CONTAINERD_VERSION
  wrapper "$W" kubeforge.local/containerd-build "$CTD_PKG/cmd/containerd@$CONTAINERD_VERSION" "$CTD_PKG/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
  ld="-s -w -X $CTD_PKG/version.Version=$CONTAINERD_VERSION -X $CTD_PKG/version.Revision=kubeforge"
  for b in containerd containerd-shim-runc-v2; do
    stamp_ok "$b" "$CONTAINERD_VERSION" && continue
    s=$(date +%s)
    (cd "$W" && go build -trimpath -tags no_btrfs -ldflags "$ld" -o "$OUT/bin/$b.tmp" "$CTD_PKG/cmd/$b")
    mv "$OUT/bin/$b.tmp" "$OUT/bin/$b"; stamp "$b" "$CONTAINERD_VERSION"
    log "built $b $CONTAINERD_VERSION in $(( $(date +%s) - s ))s"
  done
fi
# runc needs cgo for libseccomp (seccomp profiles are enforced by it). Linked
# statically against Debian's libseccomp.a (libseccomp-dev) and with Go's own
# resolver and user lookup (netgo, osusergo), so it does not depend on the build
# machine's glibc at run time.
if ! stamp_ok runc "$RUNC_VERSION"; then
  pkg-config --exists libseccomp || { echo "build-bundle: runc needs libseccomp-dev and pkg-config (hack/install-deps.sh)" >&2; exit 1; }
  W=$BUILD/runc-$RUNC_VERSION
  wrapper "$W" kubeforge.local/runc-build "github.com/opencontainers/runc@$RUNC_VERSION"
  s=$(date +%s)
  (cd "$W" && CGO_ENABLED=1 go build -trimpath -tags "seccomp netgo osusergo urfave_cli_no_docs" \
    -ldflags "-s -w -X main.version=${RUNC_VERSION#v} -X main.gitCommit=kubeforge -extldflags -static" \
    -o "$OUT/bin/runc.tmp" github.com/opencontainers/runc) 2> >(grep -v 'statically linked applications requires at runtime' >&2)
  mv "$OUT/bin/runc.tmp" "$OUT/bin/runc"; stamp runc "$RUNC_VERSION"
  log "built runc $RUNC_VERSION in $(( $(date +%s) - s ))s"
fi

# ---- CNI plugins (cni/bin/, installed to /opt/cni/bin) --------------------------------
CNI_PLUGINS="main/bridge ipam/host-local main/loopback meta/portmap"
need_cni=0
for p in $CNI_PLUGINS; do stamp_ok "cni/bin/${p#*/}" "$CNI_VERSION" || need_cni=1; done
if [ $need_cni = 1 ]; then
  W=$BUILD/cni-$CNI_VERSION
  CNI_PKG=github.com/containernetworking/plugins
  wrapper "$W" kubeforge.local/cni-build $(for p in $CNI_PLUGINS; do echo "$CNI_PKG/plugins/$p@$CNI_VERSION"; done)
  for p in $CNI_PLUGINS; do
    b=${p#*/}
    stamp_ok "cni/bin/$b" "$CNI_VERSION" && continue
    s=$(date +%s)
    (cd "$W" && go build -trimpath -ldflags "-s -w -X $CNI_PKG/pkg/utils/buildversion.BuildVersion=$CNI_VERSION" \
      -o "$OUT/cni/bin/$b.tmp" "$CNI_PKG/plugins/$p")
    mv "$OUT/cni/bin/$b.tmp" "$OUT/cni/bin/$b"; stamp "cni/bin/$b" "$CNI_VERSION"
    log "built CNI plugin $b $CNI_VERSION in $(( $(date +%s) - s ))s"
  done
fi

# ---- images (images/*.tar, OCI image layouts) -----------------------------------------
# Nodes never pull: the sandbox image and the e2e test server are static programs of
# this repository, packed into OCI archives by kubeforge's own code (components/images).
# The stamp includes the source's hash, so an edited program is rebuilt.
image() { # image NAME VERSION REF PORT...
  local name=$1 ver=$2 ref=$3; shift 3
  local src_sum key
  src_sum=$(cat "$REPO/hack/$name"/*.go "$REPO/components/images/oci/oci.go" | sha256sum | cut -c1-16)
  key="$ver-$src_sum"
  stamp_ok "images/$name.tar" "$key" && return 0
  s=$(date +%s)
  (cd "$REPO" && go build -trimpath -ldflags "-s -w -X main.version=$ver" -o "$BUILD/$name" "./hack/$name")
  (cd "$REPO" && go run ./hack/bundle-manifest pack-image --name "$ref" --binary "$BUILD/$name" \
    --version "$ver" --out "$OUT/images/$name.tar.tmp" "$@")
  mv "$OUT/images/$name.tar.tmp" "$OUT/images/$name.tar"; stamp "images/$name.tar" "$key"
  log "packed image $ref (images/$name.tar) in $(( $(date +%s) - s ))s"
}
image pause "$PAUSE_VERSION" "kubeforge.local/pause:$PAUSE_VERSION"
image httpecho "$HTTPECHO_VERSION" "kubeforge.local/httpecho:$HTTPECHO_VERSION" --port 8080/tcp --user 65534:65534
image dnsquery "$DNSQUERY_VERSION" "kubeforge.local/dnsquery:$DNSQUERY_VERSION" --user 65534:65534

# ---- CoreDNS (images/coredns.tar) -----------------------------------------------------
# The cluster DNS add-on (`kubeforge init phase addon coredns`) runs CoreDNS built
# here from source, packed as an image by the same packer. coredns's main package
# is its module root, so a wrapper module pins it as a tool like etcd's.
# It runs as 65532 (upstream image's nonroot user) with no capabilities: the pod
# lowers net.ipv4.ip_unprivileged_port_start for its own network namespace.
cd_key="$COREDNS_VERSION-$(cat "$REPO/components/images/oci/oci.go" "$REPO/hack/bundle-manifest/main.go" | sha256sum | cut -c1-16)"
if ! stamp_ok images/coredns.tar "$cd_key"; then
  W=$BUILD/coredns-$COREDNS_VERSION
  wrapper "$W" kubeforge.local/coredns-build "github.com/coredns/coredns@$COREDNS_VERSION"
  if [ "$(cat "$W/.coredns.built" 2>/dev/null)" != "$COREDNS_VERSION" ]; then
    s=$(date +%s)
    (cd "$W" && go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=kubeforge" \
      -o "$W/coredns.tmp" github.com/coredns/coredns)
    mv "$W/coredns.tmp" "$W/coredns"; echo "$COREDNS_VERSION" >"$W/.coredns.built"
    log "built coredns $COREDNS_VERSION in $(( $(date +%s) - s ))s"
  fi
  s=$(date +%s)
  (cd "$REPO" && go run ./hack/bundle-manifest pack-image --name "kubeforge.local/coredns:$COREDNS_VERSION" \
    --binary "$W/coredns" --version "$COREDNS_VERSION" --out "$OUT/images/coredns.tar.tmp" \
    --port 53/udp --port 53/tcp --port 9153/tcp --user 65532:65532)
  mv "$OUT/images/coredns.tar.tmp" "$OUT/images/coredns.tar"; stamp images/coredns.tar "$cd_key"
  log "packed image kubeforge.local/coredns:$COREDNS_VERSION (images/coredns.tar) in $(( $(date +%s) - s ))s"
fi

# ---- manifest and tarball -------------------------------------------------------------
(cd "$REPO" && go run ./hack/bundle-manifest --dir "$OUT" --kubernetes "$K8S_VERSION" --etcd "$ETCD_VERSION" \
  --containerd "$CONTAINERD_VERSION" --runc "$RUNC_VERSION" --cni "$CNI_VERSION" \
  --image "pause=$PAUSE_VERSION" --image "httpecho=$HTTPECHO_VERSION" --image "dnsquery=$DNSQUERY_VERSION" \
  --image "coredns=$COREDNS_VERSION") >&2
if [ $TARBALL = 1 ]; then
  tgz="$OUT.tar.gz"
  if [ ! -f "$tgz" ] || [ "$OUT/manifest.json" -nt "$tgz" ]; then
    s=$(date +%s)
    gz=gzip; command -v pigz >/dev/null && gz=pigz
    tar -C "$(dirname "$OUT")" --exclude='.*.version' --exclude='*.tmp' -cf - "$(basename "$OUT")" | $gz -1 >"$tgz.tmp"
    mv "$tgz.tmp" "$tgz"
    log "wrote $tgz in $(( $(date +%s) - s ))s"
  fi
fi
log "bundle ready in $(( $(date +%s) - t0 ))s: $OUT"
echo "$OUT"
