#!/usr/bin/env bash
# Runs the upstream Kubernetes conformance suite, offline, against the `make lab`
# cluster (or any kubeforge lab cluster given with --dir):
#
#   1. builds e2e.test (k8s.io/kubernetes/test/e2e, `go test -c`), the ginkgo CLI and
#      the test images the conformance specs use, under their upstream names
#      (agnhost from k8s.io/kubernetes/test/images/agnhost plus Debian's bash, curl,
#      netcat-openbsd, dig, iproute2; busybox from Debian's busybox-static; pause;
#      jessie-dnsutils from Debian's dnsutils), all cached under
#      ~/.cache/kubeforge/conformance/<k8s version>/ so a rerun takes seconds;
#   2. imports the images on every lab node (`kubeforge images import`), so no test
#      pod ever pulls (the lab has no way out);
#   3. runs the specs matching --focus with ginkgo, keeps the junit XML and the log in
#      a run directory, and prints a per-SIG table and `N passed, N failed, N skipped`.
#
#   hack/conformance.sh [--dir LABDIR] [--focus RE] [--skip RE] [--nodes N]
#                       [--timeout 2h] [--runs DIR] [--build-only] [--dry-run]
#   hack/conformance.sh --cached   # exit 0 if e2e.test and the images are already built
#
# Exit status: 0 when every spec that ran passed, 1 otherwise.
set -euo pipefail
# The whole script is one compound command, read before it runs: editing the file
# during a long run does not change what the run executes.
{
cd "$(dirname "$0")/.."
REPO=$(pwd)

K8S_VERSION=${K8S_VERSION:-v1.34.4}
CACHE=${KUBEFORGE_CACHE:-$HOME/.cache/kubeforge}
DIR=${KUBEFORGE_LAB_DIR:-/var/lib/kubeforge/lab}
FOCUS='\[Conformance\]'
SKIP=''
NODES=${CONFORMANCE_NODES:-3}
TIMEOUT=2h
RUNS=""
BUILD_ONLY=0
CACHED=0
DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=$2; shift 2 ;;
    --focus) FOCUS=$2; shift 2 ;;
    --skip) SKIP=$2; shift 2 ;;
    --nodes) NODES=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --build-only) BUILD_ONLY=1; shift ;;
    --cached) CACHED=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "conformance: unknown argument $1 (see hack/conformance.sh --help)" >&2; exit 2 ;;
  esac
done
[[ $K8S_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "conformance: K8S_VERSION=$K8S_VERSION is not of the form v1.Y.Z" >&2; exit 2; }
K8S_MINOR=${BASH_REMATCH[1]}
STAGING_VERSION="v0.${K8S_MINOR}.${BASH_REMATCH[2]}"
[[ $NODES =~ ^[1-9][0-9]*$ ]] || { echo "conformance: --nodes $NODES is not a positive number" >&2; exit 2; }

C=$CACHE/conformance/$K8S_VERSION
W=$C/build
IMG=$C/images
RUNS=${RUNS:-$CACHE/conformance/runs}
if [ $CACHED = 1 ]; then
  [ -x "$C/e2e.test" ] && [ -f "$C/e2e.test.key" ] && [ -f "$IMG/agnhost.tar" ] && exit 0
  exit 1
fi
mkdir -p "$W" "$IMG" "$C/debs" "$RUNS"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
t0=$(date +%s)
log() { printf '[conformance] %s (+%ss)\n' "$*" "$(( $(date +%s) - t0 ))" >&2; }
# A stamp file next to each product holds the key of the inputs it was built from.
fresh() { [ -f "$1" ] && [ "$(cat "$1.key" 2>/dev/null)" = "$2" ]; }
seal() { echo "$2" >"$1.key"; }

# ---- e2e.test, ginkgo, agnhost --------------------------------------------------------
# The same wrapper module as the bundle's (hack/build-bundle.sh): k8s.io/kubernetes
# replaces its staging modules with ./staging/..., so a module of our own requires it
# and replaces each staging module with its published v0.Y.Z.
if [ ! -f "$W/.ready" ]; then
  log "wrapper module for k8s.io/kubernetes $K8S_VERSION test/e2e (staging modules at $STAGING_VERSION)"
  modfile=$(cd "$W" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$modfile" ] || { echo "conformance: could not fetch go.mod of k8s.io/kubernetes@$K8S_VERSION" >&2; exit 1; }
  {
    printf 'module kubeforge.local/conformance-build\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    grep -E '=> \./staging/src/' "$modfile" | awk -v v="$STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$W/go.mod"
  (cd "$W" && go get -t "k8s.io/kubernetes/test/e2e@$K8S_VERSION" "k8s.io/kubernetes/test/images/agnhost@$K8S_VERSION") >&2
  # The ginkgo CLI at the version k8s.io/kubernetes pins runs specs in parallel.
  gv=$(cd "$W" && go list -m -f '{{.Version}}' github.com/onsi/ginkgo/v2)
  (cd "$W" && go get -tool "github.com/onsi/ginkgo/v2/ginkgo@$gv") >&2
  touch "$W/.ready"
fi
ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR -X $pkg.gitTreeState=clean"
done
if ! fresh "$C/e2e.test" "$K8S_VERSION"; then
  log "building e2e.test $K8S_VERSION (go test -c; several minutes cold)"
  s=$(date +%s)
  (cd "$W" && nice -n 10 go test -c -vet=off -trimpath -ldflags "$ld" -o "$C/e2e.test.tmp" k8s.io/kubernetes/test/e2e)
  mv "$C/e2e.test.tmp" "$C/e2e.test"; seal "$C/e2e.test" "$K8S_VERSION"
  log "built e2e.test in $(( $(date +%s) - s ))s"
fi
if ! fresh "$C/ginkgo" "$K8S_VERSION"; then
  (cd "$W" && nice -n 10 go build -trimpath -ldflags "-s -w" -o "$C/ginkgo.tmp" github.com/onsi/ginkgo/v2/ginkgo)
  mv "$C/ginkgo.tmp" "$C/ginkgo"; seal "$C/ginkgo" "$K8S_VERSION"
  log "built ginkgo"
fi
if ! fresh "$C/agnhost" "$K8S_VERSION"; then
  (cd "$W" && nice -n 10 go build -trimpath -ldflags "-s -w" -o "$C/agnhost.tmp" k8s.io/kubernetes/test/images/agnhost)
  mv "$C/agnhost.tmp" "$C/agnhost"; seal "$C/agnhost" "$K8S_VERSION"
  log "built agnhost"
fi
KSRC=$(cd "$W" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
MANIFEST=$KSRC/test/utils/image/manifest.go
# upstream_tag NAME: the tag test/utils/image/manifest.go gives image NAME.
upstream_tag() { sed -n "s/.*\"$1\", \"\([^\"]*\)\"}.*/\1/p" "$MANIFEST" | head -n1; }
E2E=registry.k8s.io/e2e-test-images

# ---- test images ------------------------------------------------------------------------
# Root file systems are assembled from Debian packages (apt-get download + dpkg -x:
# the binaries and every shared library they need, with the loader), never from a
# registry. The packer is kubeforge's own (hack/rootfs-image, components/images/oci).
# debs PKG...: downloads PKG and what it depends on (recursively, no recommends) into
# $C/debs, minus the packaging machinery a container never runs (and minus the
# extended regular expression $DEB_EXCLUDE).
debs() {
  local list
  list=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "$@" | grep -E '^[a-z0-9]' | sort -u |
    grep -vxE 'debconf|cdebconf|dpkg|install-info|tar|libdebian-installer4|libnewt0\.52|libslang2|libtextwrap1|gawk|original-awk|libsigsegv2|libmpfr6|perl-base|init-system-helpers|adduser|passwd|login|libpam.*|libaudit.*|libsemanage.*' |
    grep -vxE "${DEB_EXCLUDE:-^$}")
  # apt-get download refuses to write as _apt into root's cache; it falls back with a warning.
  (cd "$C/debs" && apt-get download $list 2>&1 | grep -vE '^(Get:|Fetched|W: Download is performed unsandboxed)' >&2 || true)
  for p in $list; do ls "$C/debs/${p}_"*.deb >/dev/null 2>&1 || { echo "conformance: Debian package $p did not download" >&2; exit 1; }; done
  echo "$list"
}
# rootfs DIR PKG...: a fresh root file system of PKG and their libraries.
rootfs() {
  local d=$1; shift
  rm -rf "$d"; mkdir -p "$d"
  for p in $(debs "$@"); do dpkg-deb -x "$(ls "$C/debs/${p}_"*.deb | tail -n1)" "$d"; done
  # Documentation and locales are a third of the bytes and nothing runs them.
  rm -rf "$d"/usr/share/{doc,man,info,locale,lintian,bash-completion,zsh} "$d"/etc/cron.*
  mkdir -p "$d/tmp" "$d/etc" "$d/root" "$d/proc" "$d/sys" "$d/dev"; chmod 1777 "$d/tmp"
  # dpkg -x runs no maintainer scripts: make the alternatives they would have made.
  [ -x "$d/bin/nc.openbsd" ] && ln -sf nc.openbsd "$d/bin/nc"
  [ -x "$d/usr/bin/mawk" ] && ln -sf mawk "$d/usr/bin/awk"
  # busybox supplies the small tools (cat, ls, sleep, wget, ...) as symlinks, but only
  # where no real tool of that name exists: scripts get bash, Debian's nc, curl and ip.
  if [ -x "$d/bin/busybox" ]; then
    for a in $("$d/bin/busybox" --list-full); do
      [ -e "$d/$a" ] || [ -e "$d/usr/$a" ] || [ -e "$d/bin/${a##*/}" ] || [ -e "$d/usr/bin/${a##*/}" ] || { mkdir -p "$d/$(dirname "$a")"; ln -s /bin/busybox "$d/$a"; }
    done
    rm -f "$d/linuxrc"
  fi
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$d/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$d/etc/group"
  printf 'hosts: files dns\n' >"$d/etc/nsswitch.conf"
}
# check DIR CMD...: the tools run inside the root file system (as a container would).
check() { local d=$1; shift; chroot "$d" /bin/sh -c "$*" >/dev/null 2>&1 || { echo "conformance: in $d, '$*' fails" >&2; chroot "$d" /bin/sh -c "$*" >&2 || true; exit 1; }; }
# pack NAME REF ROOTFS ARGS...: packs ROOTFS as image REF into $IMG/NAME.tar.
pack() {
  local name=$1 ref=$2 d=$3; shift 3
  (cd "$REPO" && nice -n 10 go run ./hack/rootfs-image --dir "$d" --name "$ref" --out "$IMG/$name.tar" "$@")
}
# The key of an image: its recipe (the lines from `# ---- image NAME` to the next
# `# ---- `), the helpers above, the packer, and the Debian package versions;
# editing another part of the script repacks nothing.
packer_sum=$( (sed -n '/^# ---- test images/,/^# ---- image /p' "$0"; cat "$REPO/hack/rootfs-image/main.go" "$REPO/components/images/oci/oci.go") | sha256sum | cut -c1-16)
recipe() { echo "$packer_sum-$(sed -n "/^# ---- image $1\$/,/^# ---- /p" "$0" | sed '$d' | sha256sum | cut -c1-16)"; }
# ---- image agnhost
TOOLS="bash netcat-openbsd curl bind9-dnsutils iproute2 libc-bin busybox-static mawk"
AGNHOST_REF=$E2E/agnhost:$(upstream_tag agnhost)
key="$AGNHOST_REF-$K8S_VERSION-$(recipe agnhost)-$(apt-cache policy $TOOLS | sha256sum | cut -c1-16)"
if ! fresh "$IMG/agnhost.tar" "$key"; then
  s=$(date +%s)
  d=$C/rootfs/agnhost
  rootfs "$d" $TOOLS
  ln -sf bash "$d/bin/sh"
  install -m 0755 "$C/agnhost" "$d/agnhost"; ln -s agnhost "$d/agnhost-2"
  cp "$KSRC/test/images/agnhost/porter/localhost.crt" "$KSRC/test/images/agnhost/porter/localhost.key" "$d/"
  mkdir -p "$d/uploads"
  # The user and group a SupplementalGroups spec expects the image to define.
  echo 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh' >>"$d/etc/passwd"
  printf 'user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n' >>"$d/etc/group"
  check "$d" 'nc -h 2>&1 | grep -q -- -v && curl --version && dig -v && ip -V && ss -V && getent passwd user-defined-in-image && /agnhost --help'
  pack agnhost "$AGNHOST_REF" "$d" --entrypoint /agnhost --cmd pause \
    --port 80/tcp --port 8080/tcp --port 8081/tcp --port 9376/tcp --port 5000/tcp
  seal "$IMG/agnhost.tar" "$key"; log "packed $AGNHOST_REF in $(( $(date +%s) - s ))s"
fi
# ---- image update-demo
# nautilus and kitten (kubectl's Update Demo specs): upstream builds them FROM agnhost,
# adding a picture and data.json from test/images/<name>/html, CMD test-webserver.
for name in nautilus kitten; do
  ref=$E2E/$name:$(upstream_tag $name)
  key="$ref-$(recipe update-demo)-$(cat "$IMG/agnhost.tar.key")"
  fresh "$IMG/$name.tar" "$key" && continue
  [ -d "$C/rootfs/agnhost" ] || { rm -f "$IMG/agnhost.tar.key"; echo "conformance: $C/rootfs/agnhost is gone; rerun to rebuild agnhost first" >&2; exit 1; }
  d=$C/rootfs/$name
  rm -rf "$d"; cp -a "$C/rootfs/agnhost" "$d"
  cp "$KSRC/test/images/$name/html/"* "$d/"; chmod 0644 "$d"/*.jpg "$d/data.json"
  pack "$name" "$ref" "$d" --entrypoint /agnhost --cmd test-webserver --port 80/tcp
  rm -rf "$d"
  seal "$IMG/$name.tar" "$key"; log "packed $ref"
done
# ---- image sample-apiserver
# The Aggregator spec runs k8s.io/sample-apiserver (built here at the staging version,
# static, as upstream's image: ENTRYPOINT /sample-apiserver) beside an etcd image whose
# /usr/local/bin/etcd is the bundle's etcd (3.6 like upstream's 3.6.4-0 image, but the
# bundle's patch release).
SAMPLE_REF=$E2E/sample-apiserver:$(upstream_tag sample-apiserver)
if ! fresh "$C/sample-apiserver" "$STAGING_VERSION"; then
  (cd "$W" && go get "k8s.io/sample-apiserver@$STAGING_VERSION" >&2 && nice -n 10 go build -trimpath -ldflags "$ld" -o "$C/sample-apiserver.tmp" k8s.io/sample-apiserver)
  mv "$C/sample-apiserver.tmp" "$C/sample-apiserver"; seal "$C/sample-apiserver" "$STAGING_VERSION"
  log "built sample-apiserver $STAGING_VERSION"
fi
key="$SAMPLE_REF-$(recipe sample-apiserver)-$STAGING_VERSION"
if ! fresh "$IMG/sample-apiserver.tar" "$key"; then
  d=$C/rootfs/sample-apiserver; rm -rf "$d"; mkdir -p "$d/tmp"; chmod 1777 "$d/tmp"
  install -m 0755 "$C/sample-apiserver" "$d/sample-apiserver"
  pack sample-apiserver "$SAMPLE_REF" "$d" --entrypoint /sample-apiserver
  seal "$IMG/sample-apiserver.tar" "$key"; log "packed $SAMPLE_REF"
fi
ETCD_REF=registry.k8s.io/etcd:$(sed -n 's/.*configs\[Etcd\] = Config{[^,]*, "etcd", "\([^"]*\)"}.*/\1/p' "$MANIFEST")
# The bundle: $KUBEFORGE_BUNDLE, else the cached one of this Kubernetes version, else built.
bundle=${KUBEFORGE_BUNDLE:-$(ls -d "$CACHE/bundles/$K8S_VERSION-"*/ 2>/dev/null | head -n1)}
[ -x "${bundle%/}/bin/etcd" ] || bundle=$(hack/build-bundle.sh 2>/dev/null | tail -n1)
ETCD_BIN=${bundle%/}/bin/etcd
[ -x "$ETCD_BIN" ] || { echo "conformance: no etcd in the bundle ($ETCD_BIN); hack/build-bundle.sh" >&2; exit 1; }
key="$ETCD_REF-$(recipe sample-apiserver)-$(sha256sum "$ETCD_BIN" | cut -c1-16)"
if ! fresh "$IMG/etcd.tar" "$key"; then
  d=$C/rootfs/etcd; rm -rf "$d"; mkdir -p "$d/usr/local/bin" "$d/var/lib/etcd" "$d/tmp"; chmod 1777 "$d/tmp"
  install -m 0755 "$ETCD_BIN" "$d/usr/local/bin/etcd"
  pack etcd "$ETCD_REF" "$d" --entrypoint /usr/local/bin/etcd
  seal "$IMG/etcd.tar" "$key"; log "packed $ETCD_REF (the bundle's etcd)"
fi
# ---- image nonewprivs
# nonewprivs: k8s.io/kubernetes/test/images/nonewprivs (prints its effective uid),
# setuid root at /usr/local/bin/nnp as upstream; the AllowPrivilegeEscalation specs.
NNP_REF=$E2E/nonewprivs:$(upstream_tag nonewprivs)
key="$NNP_REF-$(recipe nonewprivs)-$K8S_VERSION"
if ! fresh "$IMG/nonewprivs.tar" "$key"; then
  d=$C/rootfs/nonewprivs; rm -rf "$d"; mkdir -p "$d/usr/local/bin" "$d/tmp"; chmod 1777 "$d/tmp"
  (cd "$W" && go build -trimpath -ldflags "-s -w" -o "$d/usr/local/bin/nnp" k8s.io/kubernetes/test/images/nonewprivs)
  chmod 06755 "$d/usr/local/bin/nnp"
  pack nonewprivs "$NNP_REF" "$d" --cmd nnp
  seal "$IMG/nonewprivs.tar" "$key"; log "packed $NNP_REF"
fi
# ---- image jessie-dnsutils
# jessie-dnsutils: the DNS specs' second prober (dig, getent in a bash script).
JESSIE_REF=$E2E/jessie-dnsutils:$(upstream_tag jessie-dnsutils)
key="$JESSIE_REF-$(recipe jessie-dnsutils)-$(apt-cache policy $TOOLS | sha256sum | cut -c1-16)"
if ! fresh "$IMG/jessie-dnsutils.tar" "$key"; then
  s=$(date +%s)
  d=$C/rootfs/jessie-dnsutils
  rootfs "$d" bash bind9-dnsutils libc-bin busybox-static
  ln -sf bash "$d/bin/sh"
  check "$d" 'dig -v && getent passwd root && seq 1 2 && sleep 0'
  pack jessie-dnsutils "$JESSIE_REF" "$d" --cmd /bin/sh
  seal "$IMG/jessie-dnsutils.tar" "$key"; log "packed $JESSIE_REF in $(( $(date +%s) - s ))s"
fi
# ---- image busybox
# busybox: Debian's static busybox, its applets as links. /bin/sh is Debian's static
# bash, not busybox's ash: Debian's busybox is 1.35, whose ash drops environment
# variables whose names are not shell identifiers ("data-1", "1-x"), which busybox
# 1.37 (the upstream image) passes on; the ConfigMap/Secret envFrom specs check them.
BUSYBOX_REF=$E2E/busybox:$(upstream_tag busybox)
key="$BUSYBOX_REF-$(recipe busybox)-$(apt-cache policy busybox-static bash-static | sha256sum | cut -c1-16)"
if ! fresh "$IMG/busybox.tar" "$key"; then
  d=$C/rootfs/busybox
  rm -rf "$d"; mkdir -p "$d/bin" "$d/tmp" "$d/etc"
  (cd "$C/debs" && apt-get download busybox-static bash-static 2>&1 | grep -vE '^(Get:|Fetched|W: Download)' >&2 || true)
  x=$(mktemp -d)
  dpkg-deb -x "$(ls "$C/debs/busybox-static_"*.deb | tail -n1)" "$x"
  dpkg-deb -x "$(ls "$C/debs/bash-static_"*.deb | tail -n1)" "$x"
  install -m 0755 "$x/bin/busybox" "$d/bin/busybox"; install -m 0755 "$x/bin/bash-static" "$d/bin/bash"; rm -rf "$x"
  for a in $("$d/bin/busybox" --list); do [ "$a" = busybox ] || [ "$a" = sh ] || [ "$a" = bash ] || ln -s busybox "$d/bin/$a"; done
  ln -s bash "$d/bin/sh"
  chmod 1777 "$d/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$d/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$d/etc/group"
  check "$d" 'ls / && wget --help 2>&1 | grep -q Usage && nslookup --help 2>&1 | grep -qi usage && env data-1=x sh -c env | grep -q data-1'
  pack busybox "$BUSYBOX_REF" "$d" --cmd sh --env PATH=/usr/sbin:/usr/bin:/sbin:/bin
  seal "$IMG/busybox.tar" "$key"; log "packed $BUSYBOX_REF"
fi
# ---- image httpd
# httpd: Apache httpd from Debian's apache2-bin, laid out as the upstream httpd image
# (/usr/local/apache2/htdocs/index.html on port 80, `httpd-foreground`); the
# StatefulSet specs break and heal its readiness by moving that index.html. Both
# upstream tags (2.4.38-4, 2.4.39-4; the specs roll from one to the other) carry
# Debian's 2.4 release.
HTTPD_DEBS="apache2-bin busybox-static bash"
key="httpd-$(recipe httpd)-$(apt-cache policy $HTTPD_DEBS | sha256sum | cut -c1-16)"
for tag in $(upstream_tag httpd) $(sed -n 's/.*configs\[HttpdNew\] = Config{[^,]*, "httpd", "\([^"]*\)"}.*/\1/p' "$MANIFEST"); do
  fresh "$IMG/httpd-$tag.tar" "$key" && continue
  s=$(date +%s)
  d=$C/rootfs/httpd
  if [ ! -f "$d/.ready-$key" ]; then
    DEB_EXCLUDE='perl.*|libperl.*|libaprutil1-dbd-(mysql|odbc|pgsql)|libmariadb3|mariadb-common|mysql-common|libpq5|libodbc2|libltdl7|iproute2|libbpf1|libelf1|libmnl0|libxtables12|libcap2-bin' rootfs "$d" $HTTPD_DEBS
    ln -sf bash "$d/bin/sh"
    echo 'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin' >>"$d/etc/passwd"; echo 'daemon:x:1:' >>"$d/etc/group"
    mkdir -p "$d/usr/local/apache2/htdocs" "$d/usr/local/apache2/conf" "$d/usr/local/apache2/logs" "$d/usr/local/apache2/bin"
    echo '<html><body><h1>It works!</h1></body></html>' >"$d/usr/local/apache2/htdocs/index.html"
    m=/usr/lib/apache2/modules
    cat >"$d/usr/local/apache2/conf/httpd.conf" <<CONF
ServerRoot "/usr/local/apache2"
Listen 80
LoadModule mpm_event_module $m/mod_mpm_event.so
LoadModule authz_core_module $m/mod_authz_core.so
LoadModule mime_module $m/mod_mime.so
LoadModule dir_module $m/mod_dir.so
User daemon
Group daemon
ServerName localhost
DocumentRoot "/usr/local/apache2/htdocs"
<Directory />
    Require all granted
</Directory>
DirectoryIndex index.html
TypesConfig conf/mime.types
ErrorLog /dev/stderr
LogLevel warn
PidFile logs/httpd.pid
Mutex file:logs default
CONF
    printf 'text/html\t\t\t\t\thtml htm\ntext/plain\t\t\t\t\ttxt\n' >"$d/usr/local/apache2/conf/mime.types"
    printf '#!/bin/sh\nset -e\nrm -f /usr/local/apache2/logs/httpd.pid\nexec /usr/sbin/apache2 -DFOREGROUND -f /usr/local/apache2/conf/httpd.conf "$@"\n' >"$d/usr/local/apache2/bin/httpd-foreground"
    chmod 0755 "$d/usr/local/apache2/bin/httpd-foreground"
    check "$d" '/usr/sbin/apache2 -t -f /usr/local/apache2/conf/httpd.conf && mv --help 2>&1 | grep -qi usage'
    touch "$d/.ready-$key"
  fi
  pack "httpd-$tag" "$E2E/httpd:$tag" "$d" --cmd httpd-foreground --port 80/tcp \
    --env PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  seal "$IMG/httpd-$tag.tar" "$key"; log "packed $E2E/httpd:$tag in $(( $(date +%s) - s ))s"
done
# ---- image nginx
# nginx: Debian's nginx, laid out as the upstream image (nginx -g 'daemon off;',
# /usr/share/nginx/html/index.html on port 80); both upstream tags (1.14-4, 1.15-4).
NGINX_DEBS="nginx busybox-static bash"
key="nginx-$(recipe nginx)-$(apt-cache policy $NGINX_DEBS | sha256sum | cut -c1-16)"
for tag in $(upstream_tag nginx) $(sed -n 's/.*configs\[NginxNew\] = Config{[^,]*, "nginx", "\([^"]*\)"}.*/\1/p' "$MANIFEST"); do
  fresh "$IMG/nginx-$tag.tar" "$key" && continue
  s=$(date +%s)
  d=$C/rootfs/nginx
  if [ ! -f "$d/.ready-$key" ]; then
    DEB_EXCLUDE='nginx-common|libnginx-mod-.*|iproute2|libbpf1|libelf1|libmnl0|libxtables12|libcap2-bin' rootfs "$d" $NGINX_DEBS
    ln -sf bash "$d/bin/sh"
    echo 'nginx:x:101:101:nginx:/nonexistent:/usr/sbin/nologin' >>"$d/etc/passwd"; echo 'nginx:x:101:' >>"$d/etc/group"
    mkdir -p "$d/etc/nginx" "$d/usr/share/nginx/html" "$d/var/log/nginx" "$d/var/lib/nginx" "$d/run"
    echo '<html><body><h1>Welcome to nginx!</h1></body></html>' >"$d/usr/share/nginx/html/index.html"
    cat >"$d/etc/nginx/nginx.conf" <<'CONF'
user nginx;
worker_processes 1;
error_log /dev/stderr warn;
pid /run/nginx.pid;
events { worker_connections 1024; }
http {
    access_log /dev/stdout;
    types { text/html html; }
    server {
        listen 80;
        root /usr/share/nginx/html;
        index index.html;
    }
}
CONF
    check "$d" 'nginx -t'
    touch "$d/.ready-$key"
  fi
  pack "nginx-$tag" "$E2E/nginx:$tag" "$d" --cmd nginx --cmd -g --cmd 'daemon off;' --port 80/tcp
  seal "$IMG/nginx-$tag.tar" "$key"; log "packed $E2E/nginx:$tag in $(( $(date +%s) - s ))s"
done
# ---- image pause
# pause: the bundle's own pause program (hack/pause), under the name the specs use.
PAUSE_REF=registry.k8s.io/pause:$(upstream_tag pause)
key="$PAUSE_REF-$(recipe pause)-$(cat "$REPO"/hack/pause/*.go | sha256sum | cut -c1-16)"
if ! fresh "$IMG/pause.tar" "$key"; then
  d=$C/rootfs/pause; rm -rf "$d"; mkdir -p "$d"
  (cd "$REPO" && go build -trimpath -ldflags "-s -w" -o "$d/pause" ./hack/pause)
  pack pause "$PAUSE_REF" "$d" --entrypoint /pause --user 65535:65535
  seal "$IMG/pause.tar" "$key"; log "packed $PAUSE_REF"
fi
# ---- end of images
log "built: $C/e2e.test, images $(cd "$IMG" && ls *.tar | tr '\n' ' ')"
[ $BUILD_ONLY = 1 ] && exit 0

# ---- import on every node ---------------------------------------------------------------
[ -f "$DIR/ssh_config" ] || { echo "conformance: no lab at $DIR (make lab, or --dir)" >&2; exit 1; }
SSH="ssh -F $DIR/ssh_config -o BatchMode=yes"
nodes=$($SSH master01 'kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o name' | sed 's#node/##')
[ -n "$nodes" ] || { echo "conformance: the cluster in $DIR lists no nodes" >&2; exit 1; }
images_sum=$(cat "$IMG"/*.tar.key | sha256sum | cut -c1-16)
for n in $nodes; do
  if [ "$($SSH "$n" 'cat /var/lib/kubeforge/conformance-images.sum 2>/dev/null' || true)" = "$images_sum" ]; then
    continue
  fi
  s=$(date +%s)
  $SSH "$n" 'mkdir -p /var/tmp/kubeforge-conformance'
  for t in "$IMG"/*.tar; do
    $SSH "$n" "cat > /var/tmp/kubeforge-conformance/$(basename "$t")" <"$t"
  done
  $SSH "$n" "kubeforge images import /var/tmp/kubeforge-conformance/*.tar && rm -rf /var/tmp/kubeforge-conformance && mkdir -p /var/lib/kubeforge && echo $images_sum > /var/lib/kubeforge/conformance-images.sum" | sed "s/^/  $n: /"
  log "$n: images imported in $(( $(date +%s) - s ))s"
done

# ---- run ----------------------------------------------------------------------------------
RUN=$RUNS/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN"
$SSH master01 'cat /etc/kubernetes/admin.conf' >"$RUN/admin.conf"; chmod 0600 "$RUN/admin.conf"
KUBECTL=$(sed -n 's/.*"bundleDir": "\(.*\)".*/\1/p' "$DIR/state.json")/bin/kubectl
[ -x "$KUBECTL" ] || KUBECTL=$(hack/build-bundle.sh | tail -n1)/bin/kubectl
echo "focus: $FOCUS" >"$RUN/params"; echo "skip: $SKIP" >>"$RUN/params"
log "running e2e.test (focus '$FOCUS'${SKIP:+, skip '$SKIP'}, $NODES ginkgo processes, timeout $TIMEOUT) into $RUN"
dry=""; [ $DRY_RUN = 1 ] && dry="--dry-run"
set +e
# --provider=skeleton: a cluster with no cloud. Test pods use the upstream image
# names; they are present on every node, so the default IfNotPresent never pulls.
(cd "$RUN" && "$C/ginkgo" --nodes="$NODES" --timeout="$TIMEOUT" --focus="$FOCUS" ${SKIP:+--skip="$SKIP"} $dry \
  --junit-report=junit.xml --output-dir="$RUN" --no-color --silence-skips \
  "$C/e2e.test" -- --provider=skeleton --kubeconfig="$RUN/admin.conf" --kubectl-path="$KUBECTL" \
  --report-dir="$RUN" --disable-log-dump 2>&1) >"$RUN/e2e.log"
rc=$?
set -e
rm -f "$RUN/admin.conf"
grep -E '^(Ran |FAIL!|SUCCESS!|PASS|\[FAIL\]|Ginkgo ran)' "$RUN/e2e.log" | tail -n 40 >&2 || true
[ -f "$RUN/junit.xml" ] || { echo "conformance: no junit report (ginkgo exit $rc); see $RUN/e2e.log" >&2; exit 1; }
(cd "$REPO" && go run ./hack/junit-summary "$RUN/junit.xml") | tee "$RUN/summary.txt"
log "run directory: $RUN"
[ $rc = 0 ]
exit
}
