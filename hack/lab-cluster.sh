#!/usr/bin/env bash
# The seed plan on this machine: brings up the lab (master01, node01, node02), then on
# each host prepares it (`kubeforge preflight --fix`), runs `kubeforge init` on
# master01 and `kubeforge join ... --etcd` on node01 and node02 with the join command
# init printed, and shows the nodes. Idempotent: a second run finds everything in
# place and every phase reports "unchanged".
#
#   hack/lab-cluster.sh [--dir DIR] [--subnet 192.168.161.0/24]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${KUBEFORGE_LAB_DIR:-/var/lib/kubeforge/lab}
SUBNET=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=$2; shift 2 ;;
    --subnet) SUBNET=$2; shift 2 ;;
    *) echo "lab-cluster: unknown argument $1" >&2; exit 2 ;;
  esac
done
BIN=${KUBEFORGE_BIN:-_output/kubeforge}
BUNDLE=$(hack/build-bundle.sh | tail -n1)
[ -x "$BIN" ] || make -s build
t0=$(date +%s)
step() { printf '[lab-cluster] %s (+%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }

$BIN lab up --dir "$DIR" ${SUBNET:+--subnet "$SUBNET"} --bundle "$BUNDLE"
SSH="ssh -F $DIR/ssh_config -o BatchMode=yes"
for h in master01 node01 node02; do
  step "$h: install kubeforge and the cluster config, preflight --fix"
  $SSH "$h" 'mkdir -p /root/kf && cat > /usr/local/bin/kubeforge.tmp && chmod 0755 /usr/local/bin/kubeforge.tmp && mv /usr/local/bin/kubeforge.tmp /usr/local/bin/kubeforge' <"$BIN"
  $SSH "$h" 'cat > /root/kf/cluster.yaml' <"$DIR/cluster.yaml"
  # A host that is already part of the cluster has its ports taken and its state in
  # place by design; init and join run their own preflight phase, which knows that.
  if $SSH "$h" 'test -e /etc/kubernetes/kubelet.conf'; then
    echo "  $h is already a node: skipping the standalone preflight --fix"
  else
    $SSH "$h" "kubeforge preflight --config /root/kf/cluster.yaml --node-name $h --fix" | tail -n 3
  fi
done
step "master01: kubeforge init"
out=$($SSH master01 'kubeforge init --config /root/kf/cluster.yaml --node-name master01' 2>&1) || { echo "$out"; exit 1; }
echo "$out" | grep -E '^\[[a-z-]+\] (done|unchanged|skipped)' | sed 's/^/  /' | tail -n 25
join=$(echo "$out" | grep -oE 'KUBEFORGE_TOKEN=\S+ KUBEFORGE_CERTIFICATE_KEY=[0-9a-f]{64} kubeforge join \S+ --discovery-token-ca-cert-hash \S+ --etcd' | head -n1)
[ -n "$join" ] || { echo "init printed no join command:"; echo "$out"; exit 1; }
# The token and certificate key travel on stdin into the environment, never on a
# command line (they would show in ps on either side).
token=$(echo "$join" | awk '{print $1}'); token=${token#KUBEFORGE_TOKEN=}
key=$(echo "$join" | awk '{print $2}'); key=${key#KUBEFORGE_CERTIFICATE_KEY=}
endpoint=$(echo "$join" | awk '{print $5}'); hash=$(echo "$join" | awk '{print $7}')
for h in node01 node02; do
  step "$h: kubeforge join --etcd"
  printf '%s\n%s\n' "$token" "$key" | $SSH "$h" "read -r KUBEFORGE_TOKEN && read -r KUBEFORGE_CERTIFICATE_KEY && export KUBEFORGE_TOKEN KUBEFORGE_CERTIFICATE_KEY && exec kubeforge join $endpoint --discovery-token-ca-cert-hash $hash --etcd --node-name $h" 2>&1 | tail -n 4
done
step "cluster"
$SSH master01 'kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o wide; kubeforge etcd status'
echo "kubectl: ssh -F $DIR/ssh_config master01 kubectl --kubeconfig /etc/kubernetes/admin.conf get pods -A"
