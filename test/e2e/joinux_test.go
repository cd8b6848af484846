package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/images"
)

// TestJoinUX is issue 14's join experience on real lab hosts: node03 and
// node04, which the cluster configuration does not list, join with exactly the
// command `kubeforge token create --print-join-command` printed, run right
// after it; the preflight problems they have are fixed by the one command the
// failure names; the control plane records them. node03 is a plain worker: its
// overlay agent works through the Kubernetes API with the node's own identity,
// it holds no etcd credential, cannot change node04's Node, and its pods reach
// pods on every node and Services by ClusterIP, 20 MiB intact. Joining node03
// again changes nothing. Then node02 (an etcd member) and node04 are powered
// off and `kubeforge node remove` takes each out (Node, etcd member, record, and
// every peer's route, FDB and neighbour entries), and a reset of node03 leaves
// nothing behind.
func TestJoinUX(t *testing.T) {
	requireE2E(t)
	t.Parallel()
	bdir := requireBundle(t, "bin/containerd", "bin/runc", "cni/bin/bridge", "images/pause.tar", "images/httpecho.tar")
	hosts := []string{"master01", "node01", "node02", "node03", "node04"}
	unlisted := map[string]bool{"node03": true, "node04": true}
	podtool := buildPodtool(t)
	s := labFor(t, "joinux", "192.168.185.0/24", bdir, hosts...)
	l := &nodesLab{t: t, s: s, addr: map[string]string{}}
	for _, h := range s.Hosts {
		l.addr[h.Name] = h.Address
	}
	ctx := context.Background()
	waitFor := func(what string, timeout time.Duration, cond func() (string, bool)) {
		t.Helper()
		var last string
		err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(context.Context) (bool, error) {
			var ok bool
			last, ok = cond()
			return ok, nil
		})
		if err != nil {
			t.Fatalf("waiting %s for %s: last saw %s", timeout, what, last)
		}
	}

	// The configuration lists master01, node01 and node02 only.
	data, err := os.ReadFile(s.Paths().ClusterConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	var listed []config.Host
	for _, h := range cfg.Spec.Hosts {
		if !unlisted[h.Name] {
			listed = append(listed, h)
		}
	}
	cfg.Spec.Hosts = listed
	data, err = config.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(kubeforgeBin)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if out, err := l.ssh(h, "cat > /usr/local/bin/kubeforge.tmp && chmod 0755 /usr/local/bin/kubeforge.tmp && mv /usr/local/bin/kubeforge.tmp /usr/local/bin/kubeforge", bin); err != nil {
			t.Fatalf("copying kubeforge to %s: %v\n%s", h, err, out)
		}
		if out, err := l.ssh(h, "mkdir -p /root/e2e && cat > /root/e2e/podtool && chmod 0755 /root/e2e/podtool", podtool); err != nil {
			t.Fatalf("copying podtool to %s: %v\n%s", h, err, out)
		}
		if unlisted[h] {
			continue // a new host: the binary and nothing else
		}
		if out, err := l.ssh(h, "mkdir -p /root/kf && cat > /root/kf/cluster.yaml", data); err != nil {
			t.Fatalf("copying the cluster config to %s: %v\n%s", h, err, out)
		}
		l.must(h, "kubeforge preflight --config /root/kf/cluster.yaml --node-name "+h+" --fix")
	}
	initOut := l.must("master01", "kubeforge init --config /root/kf/cluster.yaml --node-name master01")
	m := regexp.MustCompile(`KUBEFORGE_TOKEN=(\S+) KUBEFORGE_CERTIFICATE_KEY=([0-9a-f]{64}) kubeforge join (\S+) --discovery-token-ca-cert-hash (\S+) --etcd`).FindStringSubmatch(initOut)
	if m == nil {
		t.Fatalf("init printed no etcd join command:\n%s", initOut)
	}
	for _, h := range []string{"node01", "node02"} {
		out, err := l.ssh(h, fmt.Sprintf("kubeforge join %s --discovery-token-ca-cert-hash %s --etcd", m[3], m[4]), nil,
			"KUBEFORGE_TOKEN="+m[1], "KUBEFORGE_CERTIFICATE_KEY="+m[2])
		if err != nil {
			t.Fatalf("join %s: %v\n%s\n%s", h, err, out, l.controlPlaneJournals())
		}
	}

	// --- node03 and node04: the printed command, right after token create ------------
	joinPrinted := func(h string) {
		t.Helper()
		printed := l.must("master01", "kubeforge token create --print-join-command")
		if !strings.HasPrefix(printed, "KUBEFORGE_TOKEN=") || strings.Contains(printed, "\n") {
			t.Fatalf("token create printed %q, want one join command line", printed)
		}
		start := time.Now()
		out, err := l.ssh(h, printed, nil)
		if err == nil {
			t.Logf("%s needed no preflight fix:\n%s", h, out)
		} else {
			// The first failure must be preflight's (discovery found the token at
			// once) and must name the fix that works on this host.
			if !strings.Contains(out, "[discovery] unchanged") || !strings.Contains(out, "[preflight] failed") {
				t.Fatalf("%s's first join failed elsewhere than preflight:\n%s", h, out)
			}
			if !strings.Contains(out, "re-running the join command with `--fix` can fix") || strings.Contains(out, "kubeforge preflight --fix") {
				t.Errorf("%s's preflight failure does not name the fix that works there:\n%s", h, out)
			}
			t.Logf("%s, the printed command as is (%s): %s", h, time.Since(start).Round(time.Second), finalLine(out))
			out, err = l.ssh(h, printed+" --fix", nil)
			if strings.Contains(out, "[preflight] failed") {
				t.Fatalf("%s with --fix still fails preflight:\n%s", h, out)
			}
			if !strings.Contains(out, "[preflight] done") {
				t.Errorf("%s with --fix: preflight did not report a change:\n%s", h, out)
			}
		}
		if err != nil {
			t.Fatalf("join %s: %v\n%s\n%s", h, err, out, l.controlPlaneJournals())
		}
		t.Logf("join %s with the printed command took %s", h, time.Since(start).Round(time.Second))
	}
	joinPrinted("node03")
	joinPrinted("node04")
	t.Run("node03 and node04 are registered and recorded; every node Ready", func(t *testing.T) {
		for _, h := range []string{"node03", "node04"} {
			waitFor(h+" in kube-system/kubeforge-joined-hosts", 2*time.Minute, func() (string, bool) {
				out, _ := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl -n kube-system get configmap kubeforge-joined-hosts -o jsonpath='{.data."+h+"}'", nil)
				return out, strings.Contains(out, `"address":"`+l.addr[h]+`"`)
			})
		}
		waitFor("all five nodes Ready", 3*time.Minute, func() (string, bool) {
			ready, _, _ := l.readyNodes()
			r := strings.Join(ready, ",")
			return "ready " + r, r == strings.Join(hosts, ",")
		})
		// node03's own identity (its kubelet's client certificate) cannot
		// rewrite the record, nor the cluster configuration.
		for _, cm := range []string{"kubeforge-joined-hosts", "kubeforge-config"} {
			out := l.must("node03", `curl -sS --cacert /etc/kubernetes/pki/ca.crt --cert /var/lib/kubelet/pki/kubelet-client-current.pem --key /var/lib/kubelet/pki/kubelet-client-current.pem `+
				`-X PATCH -H 'Content-Type: application/merge-patch+json' -d '{"data":{"node01":"{}"}}' https://`+m[3]+`/api/v1/namespaces/kube-system/configmaps/`+cm)
			if !strings.Contains(out, `"code": 403`) {
				t.Errorf("node03's kubelet identity patching %s: %s", cm, out)
			}
		}
	})

	// node03 holds nothing the etcd CA signed, publishes its VTEP on its own
	// Node, cannot change node04's, and its pods reach node01's.
	t.Run("node03 is a plain worker that cannot change node04", func(t *testing.T) { l.plainWorker(t, m[3], "node04", 4) })

	t.Run("pods on node03 reach pods on every node and Services by ClusterIP, 20 MiB intact", func(t *testing.T) {
		l.toolPods(t, hosts, waitFor)
	})

	// The overlay entries node02 and node04 have on every peer, to check after
	// their removal that none is left.
	vtep := map[string][3]string{} // name -> podCIDR, VTEP MAC, public IP
	for _, h := range []string{"node02", "node04"} {
		f := strings.Fields(l.kubectl("get node " + h + ` -o jsonpath='{.spec.podCIDR} {.metadata.annotations.overlay\.kubeforge\.io/vtep-mac} {.metadata.annotations.overlay\.kubeforge\.io/public-ip}'`))
		if len(f) != 3 {
			t.Fatalf("%s's podCIDR and VTEP: %v", h, f)
		}
		vtep[h] = [3]string{f[0], f[1], f[2]}
	}
	overlayEntries := func(peer, gone string) string {
		v := vtep[gone]
		vtepIP := strings.TrimSuffix(v[0], "/24") // the VTEP address is the subnet's .0
		out, _ := l.ssh(peer, `dev=$(ip -o link show type vxlan | awk -F': ' '{print $2}' | cut -d@ -f1); [ -n "$dev" ] || { echo "no vxlan device"; exit 0; }; `+
			"ip route show "+v[0]+"; bridge fdb show dev $dev | grep -iF -e "+v[1]+" -e ' "+v[2]+" '; ip neigh show dev $dev | grep -iF -e '"+vtepIP+" ' -e "+v[1], nil)
		return strings.TrimSpace(out)
	}
	for _, peer := range []string{"master01", "node01", "node03"} {
		if out := overlayEntries(peer, "node04"); !strings.Contains(out, vtep["node04"][1]) {
			t.Fatalf("the check for %s's overlay entries on %s finds none before the removal: %q", "node04", peer, out)
		}
	}

	// --- node02 and node04 powered off; join node03 again meanwhile ------------------
	for _, h := range []string{"node02", "node04"} {
		_, _ = l.ssh(h, "systemctl --no-block poweroff", nil)
	}
	t.Run("joining node03 again changes nothing", func(t *testing.T) {
		printed := l.must("master01", "kubeforge token create --print-join-command")
		out, err := l.ssh("node03", printed, nil)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		phases := 0
		for _, line := range strings.Split(out, "\n") {
			mm := regexp.MustCompile(`^\[([a-z-]+)\] (done|unchanged|failed|skipped)`).FindStringSubmatch(line)
			if mm == nil {
				continue
			}
			phases++
			if mm[2] == "done" || mm[2] == "failed" {
				t.Errorf("second join of node03: %s", line)
			}
		}
		if phases < 8 {
			t.Errorf("second join of node03 reported %d phases:\n%s", phases, out)
		}
		t.Logf("second join of node03:\n%s", out)
	})
	waitFor("node02 and node04 NotReady after their poweroff", 3*time.Minute, func() (string, bool) {
		ready, _, _ := l.readyNodes()
		r := strings.Join(ready, ",")
		return "ready " + r, !strings.Contains(r, "node02") && !strings.Contains(r, "node04")
	})
	t.Run("node remove node02: Node and etcd member", func(t *testing.T) {
		out := l.must("master01", "kubeforge node remove node02")
		t.Logf("node remove node02:\n%s", out)
		for _, want := range []string{"etcd member node02", "deleted Node node02", "still in the hosts table"} {
			if !strings.Contains(out, want) {
				t.Errorf("report lacks %q", want)
			}
		}
		if got := l.etcdMembers(); got != "master01:voter node01:voter" {
			t.Errorf("etcd members after the removal: %s", got)
		}
		if _, all, _ := l.readyNodes(); strings.Contains(strings.Join(all, ","), "node02") {
			t.Errorf("Node node02 is still there: %v", all)
		}
	})
	joinedRecord := func() []string {
		rec := l.must("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl -n kube-system get configmap kubeforge-joined-hosts -o yaml")
		var cm struct{ Data map[string]string }
		if err := yaml.Unmarshal([]byte(rec), &cm); err != nil {
			t.Fatalf("record: %v\n%s", err, rec)
		}
		var names []string
		for n := range cm.Data {
			names = append(names, n)
		}
		sort.Strings(names)
		return names
	}
	t.Run("node remove node04: Node, record, and every peer's overlay entries", func(t *testing.T) {
		out := l.must("master01", "kubeforge node remove node04")
		t.Logf("node remove node04:\n%s", out)
		if !strings.Contains(out, "deleted Node node04") || !strings.Contains(out, "removed node04 from kube-system/kubeforge-joined-hosts") ||
			strings.Contains(out, "etcd member node04") || strings.Contains(out, "still in the hosts table") {
			t.Errorf("report:\n%s", out)
		}
		if _, all, _ := l.readyNodes(); strings.Join(all, ",") != "master01,node01,node03" {
			t.Errorf("Nodes after the removals: %v", all)
		}
		// Right after the command, and still a while later: node03's entry
		// alone, node04's not written back by the approver.
		if got := strings.Join(joinedRecord(), ","); got != "node03" {
			t.Errorf("record right after the removal: %s, want node03", got)
		}
		// With the Nodes gone, no peer keeps a route, FDB or neighbour entry
		// for node02 or node04.
		for _, peer := range []string{"master01", "node01", "node03"} {
			for _, gone := range []string{"node02", "node04"} {
				waitFor(peer+" forgets "+gone+"'s overlay entries", time.Minute, func() (string, bool) {
					out := overlayEntries(peer, gone)
					return out, out == ""
				})
			}
		}
		if got := strings.Join(joinedRecord(), ","); got != "node03" {
			t.Errorf("record a while after the removal: %s, want node03", got)
		}
		// A second run finds nothing and says so.
		if again := l.must("master01", "kubeforge node remove node04"); !strings.Contains(again, "nothing of node04 was left") {
			t.Errorf("rerun:\n%s", again)
		}
	})

	t.Run("reset of node03 leaves nothing behind", func(t *testing.T) {
		start := time.Now()
		out, err := l.ssh("node03", "kubeforge reset --force", nil)
		if err != nil {
			t.Fatalf("reset: %v\n%s", err, out)
		}
		t.Logf("reset node03 (%s):\n%s", time.Since(start).Round(time.Second), out)
		l.resetLeftovers(t, "node03")
		// Its Node goes (the approver deletes it on reset's request), and
		// with it its entry in the record and the peers' overlay entries.
		waitFor("Node node03 gone and the record empty", time.Minute, func() (string, bool) {
			_, all, _ := l.readyNodes()
			rec := joinedRecord()
			return fmt.Sprintf("nodes %v, record %v", all, rec), strings.Join(all, ",") == "master01,node01" && len(rec) == 0
		})
		if again := l.must("master01", "kubeforge node remove node03"); !strings.Contains(again, "nothing of node03 was left") {
			t.Errorf("node remove after the reset:\n%s", again)
		}
	})
}

// buildPodtool builds test/e2e/podtool static, for pods of the bundled
// httpecho image (a hostPath volume; the image has no shell, curl or sha256sum).
func buildPodtool(t *testing.T) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "podtool")
	c := exec.Command("go", "build", "-o", p, "github.com/kubeforge/kubeforge/test/e2e/podtool")
	c.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("building podtool: %v\n%s", err, out)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// blobSHA256 is the sha256 of podtool's Blob(seed) of size bytes.
func blobSHA256(seed string, size int64) string {
	h := sha256.New()
	var idx [8]byte
	for i, n := uint64(0), int64(0); n < size; i++ {
		binary.BigEndian.PutUint64(idx[:], i)
		b := sha256.Sum256(append([]byte(seed), idx[:]...))
		k := min(int64(len(b)), size-n)
		h.Write(b[:k])
		n += k
	}
	return hex.EncodeToString(h.Sum(nil))
}

// toolPods runs a pod on every host (httpecho on 8080, podtool serve on 9090,
// pinned by nodeName), a Service over their httpecho, and from inside the pod
// on node03: each other pod by its address, the Service by its ClusterIP, and
// 20 MiB from node01's pod (and back), checked against its sha256.
func (l *nodesLab) toolPods(t *testing.T, hosts []string, waitFor func(string, time.Duration, func() (string, bool))) {
	var manifest strings.Builder
	for _, n := range hosts {
		fmt.Fprintf(&manifest, `apiVersion: v1
kind: Pod
metadata: {name: tool-%s, namespace: default, labels: {e2e: joinux-tool}}
spec:
  nodeName: %s
  tolerations: [{operator: Exists}]
  volumes: [{name: e2e, hostPath: {path: /root/e2e, type: Directory}}]
  containers:
  - {name: httpecho, image: %s, imagePullPolicy: Never, ports: [{containerPort: 8080}]}
  - name: podtool
    image: %s
    imagePullPolicy: Never
    command: [/e2e/podtool, serve, -listen, ":9090"]
    volumeMounts: [{name: e2e, mountPath: /e2e, readOnly: true}]
---
`, n, n, images.TestServerImage, images.TestServerImage)
	}
	manifest.WriteString(`apiVersion: v1
kind: Service
metadata: {name: tool, namespace: default}
spec:
  selector: {e2e: joinux-tool}
  ports: [{port: 80, targetPort: 8080}]
`)
	if out, err := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl apply -f -", []byte(manifest.String())); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	defer l.kubectl("delete pod -l e2e=joinux-tool --wait=false")
	ips := map[string]string{}
	waitFor("a tool pod Running on every node", 3*time.Minute, func() (string, bool) {
		for _, n := range hosts {
			out, _ := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl get pod tool-"+n+" -o jsonpath='{.status.phase} {.status.podIP}'", nil)
			f := strings.Fields(out)
			if len(f) != 2 || f[0] != "Running" {
				return "tool-" + n + ": " + out, false
			}
			ips[n] = f[1]
		}
		return "", true
	})
	exec := func(pod, args string) (string, error) {
		return l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl exec "+pod+" -c podtool -- /e2e/podtool get "+args, nil)
	}
	for _, n := range hosts {
		if n == "node03" {
			continue
		}
		out, err := exec("tool-node03", "-body http://"+ips[n]+":8080/")
		if err != nil || !strings.HasPrefix(out, "httpecho tool-"+n+" ") {
			t.Errorf("pod on node03 -> pod on %s (%s): %v %q", n, ips[n], err, out)
		}
	}
	clusterIP := l.kubectl("get svc tool -o jsonpath={.spec.clusterIP}")
	waitFor("the tool Service's five endpoints", time.Minute, func() (string, bool) {
		out, _ := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl get endpointslices -l kubernetes.io/service-name=tool -o jsonpath='{.items[*].endpoints[*].conditions.ready}'", nil)
		return out, strings.Count(out, "true") == len(hosts)
	})
	served := map[string]int{}
	for i := 0; i < 20; i++ {
		out, err := exec("tool-node03", "-body http://"+clusterIP+"/")
		f := strings.Fields(out)
		if err != nil || len(f) < 2 || f[0] != "httpecho" {
			t.Errorf("request %d from the pod on node03 to ClusterIP %s: %v %q", i, clusterIP, err, out)
			continue
		}
		served[f[1]]++
	}
	if len(served) < 2 {
		t.Errorf("ClusterIP %s from node03's pod was answered by %v: want several pods", clusterIP, served)
	}
	t.Logf("ClusterIP %s from node03's pod answered by %v", clusterIP, served)
	const size = 20 << 20
	want := fmt.Sprintf("%d %s", size, blobSHA256("joinux", size))
	for _, c := range [][2]string{{"node03", "node01"}, {"node01", "node03"}} {
		start := time.Now()
		out, err := exec("tool-"+c[0], fmt.Sprintf("'http://%s:9090/blob?size=%d&seed=joinux'", ips[c[1]], size))
		if err != nil || strings.TrimSpace(out) != want {
			t.Errorf("20 MiB from the pod on %s to the pod on %s: %v %q, want %q", c[1], c[0], err, out, want)
			continue
		}
		t.Logf("20 MiB from the pod on %s to the pod on %s in %s, sha256 matches", c[1], c[0], time.Since(start).Round(time.Millisecond))
	}
}
