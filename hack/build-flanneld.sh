#!/usr/bin/env bash
# Builds flanneld from the Go module proxy for the side-by-side overlay bench
# (components/overlay BenchmarkFlanneldSideBySide500), and caches it outside the
# repository. Prints the binary's path on the last line of stdout.
#
#   hack/build-flanneld.sh                   flanneld v0.26.7
#   FLANNEL_VERSION=v0.x.y hack/build-flanneld.sh
#   KUBEFORGE_BENCH_CACHE=DIR hack/build-flanneld.sh   (default ~/.cache/kubeforge-bench)
#
# A cached binary whose build information (`go version -m`: module version, ldflags,
# CGO_ENABLED) is what this script would produce is kept and the script does nothing
# else; building takes a few minutes.
#
# How: `go install github.com/flannel-io/flannel@VERSION` (the module's go.mod has no
# replace directives, so it builds as released), with flannel's own release flags
# (its Makefile: -s -w, the version stamp, -extldflags "-static"). On amd64 flannel
# needs cgo: its UDP backend is C (pkg/backend/udp/proxy_amd64.c) and with
# CGO_ENABLED=0 the package does not compile (undefined: runCProxy), so amd64 builds
# with CGO_ENABLED=1 linked statically against glibc, as flannel's Makefile does;
# other architectures build with CGO_ENABLED=0. The linker's warnings about getaddrinfo
# and getpwnam in a static glibc binary are expected (flannel's releases link the same way).
#
# Built on 2026-12-04 into an empty cache, this reproduced the earlier build byte for byte
# (sha256 d80b9d03...a729ad, go1.26.8).
set -euo pipefail

VERSION=${FLANNEL_VERSION:-v0.26.7}
CACHE=${KUBEFORGE_BENCH_CACHE:-$HOME/.cache/kubeforge-bench}
MOD=github.com/flannel-io/flannel
[[ $VERSION =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "build-flanneld: FLANNEL_VERSION $VERSION is not of the form vX.Y.Z" >&2; exit 2; }
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
case "$(go env GOARCH)" in
  amd64) export CGO_ENABLED=1 ;;
  *) export CGO_ENABLED=0 ;;
esac
LDFLAGS="-s -w -X $MOD/pkg/version.Version=$VERSION -extldflags \"-static\""
DIR=$CACHE/flanneld-$VERSION
OUT=$DIR/flanneld

log() { printf '[build-flanneld] %s\n' "$*" >&2; }

# matches BIN: the build information says it is this module at this version, built
# with these ldflags and this CGO_ENABLED.
matches() {
  local info
  info=$(go version -m "$1" 2>/dev/null) || return 1
  grep -qxF "$(printf '\tmod\t%s\t%s' "$MOD" "$VERSION")" <<<"$(cut -f1-4 <<<"$info")" &&
    grep -qxF "$(printf '\tbuild\t-ldflags=%s' "$(quote "$LDFLAGS")")" <<<"$info" &&
    grep -qxF "$(printf '\tbuild\tCGO_ENABLED=%s' "$CGO_ENABLED")" <<<"$info"
}

# quote is how `go version -m` prints a flag value with spaces or quotes: Go's
# strconv.Quote.
quote() {
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}

if [ -x "$OUT" ] && matches "$OUT"; then
  log "cached: $OUT ($VERSION)"
  echo "$OUT"
  exit 0
fi
[ -e "$OUT" ] && log "$OUT is not a build of $MOD@$VERSION with these flags; rebuilding"

mkdir -p "$DIR"
tmp=$(mktemp -d "$DIR/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "building $MOD@$VERSION (CGO_ENABLED=$CGO_ENABLED, static); this takes a few minutes"
t0=$(date +%s)
GOBIN=$tmp nice -n 10 go install -ldflags="$LDFLAGS" "$MOD@$VERSION"
bin=$tmp/flannel # go install names the binary after the module path
matches "$bin" || { echo "build-flanneld: $bin: unexpected build information:" >&2; go version -m "$bin" >&2; exit 1; }
if readelf -l "$bin" 2>/dev/null | grep -q 'program interpreter'; then
  echo "build-flanneld: $bin is dynamically linked (is the static libc, libc6-dev / glibc-static, installed?)" >&2
  exit 1
fi
got=$("$bin" --version 2>&1 || true)
[ "$got" = "$VERSION" ] || { echo "build-flanneld: $bin --version printed \"$got\", want $VERSION" >&2; exit 1; }
mv -f "$bin" "$OUT"
log "built $OUT in $(($(date +%s) - t0))s"
echo "$OUT"
