package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

// TestJoinUX is issue 14's join experience on real lab hosts: node03, which the
// cluster configuration does not list, joins with exactly the command
// `kubeforge token create --print-join-command` printed, run right after it;
// the preflight problems it has are fixed by the one command the failure
// names; the control plane records it. Then node02 (an etcd member) and node03
// are powered off and `kubeforge node remove` takes each out: Node, etcd
// member, overlay lease, record.
//
// node03 is a plain worker: its overlay agent works through the Kubernetes
// API with the node's own identity, and it holds no etcd credential.
func TestJoinUX(t *testing.T) {
	requireE2E(t)
	bdir := requireBundle(t, "bin/containerd", "bin/runc", "cni/bin/bridge", "images/pause.tar")
	hosts := []string{"master01", "node01", "node02", "node03"}
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
		if h.Name != "node03" {
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
		if h == "node03" {
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

	// --- node03: the printed command, right after token create ------------------------
	printed := l.must("master01", "kubeforge token create --print-join-command")
	if !strings.HasPrefix(printed, "KUBEFORGE_TOKEN=") || strings.Contains(printed, "\n") {
		t.Fatalf("token create printed %q, want one join command line", printed)
	}
	start := time.Now()
	out, err := l.ssh("node03", printed, nil)
	if err == nil {
		t.Logf("node03 needed no preflight fix:\n%s", out)
	} else {
		// The first failure must be preflight's (discovery found the token at
		// once) and must name the fix that works on this host.
		if !strings.Contains(out, "[discovery] unchanged") || !strings.Contains(out, "[preflight] failed") {
			t.Fatalf("node03's first join failed elsewhere than preflight:\n%s", out)
		}
		if !strings.Contains(out, "re-running the join command with `--fix` can fix") || strings.Contains(out, "kubeforge preflight --fix") {
			t.Errorf("node03's preflight failure does not name the fix that works there:\n%s", out)
		}
		t.Logf("node03, the printed command as is (%s): %s", time.Since(start).Round(time.Second), finalLine(out))
		out, err = l.ssh("node03", printed+" --fix", nil)
		if strings.Contains(out, "[preflight] failed") {
			t.Fatalf("node03 with --fix still fails preflight:\n%s", out)
		}
		if !strings.Contains(out, "[preflight] done") {
			t.Errorf("node03 with --fix: preflight did not report a change:\n%s", out)
		}
	}
	if err != nil {
		t.Fatalf("join node03: %v\n%s\n%s", err, out, l.controlPlaneJournals())
	}
	t.Run("node03 is registered and recorded by the control plane", func(t *testing.T) {
		waitFor("Node node03", 2*time.Minute, func() (string, bool) {
			_, all, _ := l.readyNodes()
			return strings.Join(all, ","), strings.Contains(strings.Join(all, ","), "node03")
		})
		waitFor("node03 in kube-system/kubeforge-joined-hosts", time.Minute, func() (string, bool) {
			out, _ := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl -n kube-system get configmap kubeforge-joined-hosts -o jsonpath='{.data.node03}'", nil)
			return out, strings.Contains(out, `"address":"`+l.addr["node03"]+`"`)
		})
		waitFor("node03 Ready", 2*time.Minute, func() (string, bool) {
			ready, _, _ := l.readyNodes()
			return strings.Join(ready, ","), strings.Contains(strings.Join(ready, ","), "node03")
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

	// node03's pod subnet, to check below that no peer keeps a route to it.
	node03CIDR := strings.TrimSpace(l.must("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl get node node03 -o jsonpath='{.spec.podCIDR}'"))
	if node03CIDR == "" {
		t.Fatal("node03 has no podCIDR")
	}
	waitFor("master01's route to node03's pods ("+node03CIDR+")", time.Minute, func() (string, bool) {
		out, _ := l.ssh("master01", "ip route show "+node03CIDR, nil)
		return out, strings.TrimSpace(out) != ""
	})

	// --- node remove of powered-off hosts ----------------------------------------------
	for _, h := range []string{"node02", "node03"} {
		_, _ = l.ssh(h, "systemctl --no-block poweroff", nil)
	}
	waitFor("node02 and node03 NotReady after their poweroff", 3*time.Minute, func() (string, bool) {
		ready, _, _ := l.readyNodes()
		r := strings.Join(ready, ",")
		return "ready " + r, !strings.Contains(r, "node02") && !strings.Contains(r, "node03")
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
	t.Run("node remove node03: Node and record", func(t *testing.T) {
		out := l.must("master01", "kubeforge node remove node03")
		t.Logf("node remove node03:\n%s", out)
		if !strings.Contains(out, "deleted Node node03") || !strings.Contains(out, "removed node03 from kube-system/kubeforge-joined-hosts") ||
			strings.Contains(out, "etcd member node03") {
			t.Errorf("report:\n%s", out)
		}
		rec := l.must("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl -n kube-system get configmap kubeforge-joined-hosts -o yaml")
		var cm struct{ Data map[string]string }
		if err := yaml.Unmarshal([]byte(rec), &cm); err != nil || len(cm.Data) != 0 {
			t.Errorf("record after the removal (%v):\n%s", err, rec)
		}
		// With the Node gone, no peer keeps a route, FDB or neighbour entry
		// for node03.
		for _, peer := range []string{"master01", "node01"} {
			waitFor(peer+" forgets node03's overlay entries", time.Minute, func() (string, bool) {
				out, _ := l.ssh(peer, "ip route show "+node03CIDR+"; bridge fdb show | grep -F "+l.addr["node03"]+"; ip neigh show | grep -F "+strings.TrimSuffix(node03CIDR, ".0/24")+".0", nil)
				return out, strings.TrimSpace(out) == ""
			})
		}
		// A second run finds nothing and says so.
		if again := l.must("master01", "kubeforge node remove node03"); !strings.Contains(again, "nothing of node03 was left") {
			t.Errorf("rerun:\n%s", again)
		}
	})
}
