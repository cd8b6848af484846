package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/components/etcd/snapshot"
)

// TestRestore is issue 17's disaster recovery on three real hosts: master01
// (init) and node01/node02 (join --etcd) form a three-member etcd cluster; 500
// ConfigMaps and a Deployment in a namespace; a snapshot; the namespace deleted;
// the snapshot restored on all three members with `etcd snapshot restore`:
// the objects are back, the Deployment's pods run, all members are healthy
// voters, the API answers. A copy with one flipped byte fails verify and is
// refused by restore with nothing changed; so is a restore while the API
// server runs without --stop-control-plane.
func TestRestore(t *testing.T) {
	requireE2E(t)
	t.Parallel()
	bdir := requireBundle(t, "bin/containerd", "bin/runc", "cni/bin/bridge", "images/pause.tar", "images/httpecho.tar")
	hosts := []string{"master01", "node01", "node02"}
	s := labFor(t, "restore", "192.168.186.0/24", bdir, hosts...)
	l := &nodesLab{t: t, s: s, addr: map[string]string{}}
	l.prepare(hosts...)
	ctx := context.Background()
	poll := func(what string, timeout time.Duration, cond func() string) {
		t.Helper()
		var last string
		err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(context.Context) (bool, error) {
			last = cond()
			return last == "", nil
		})
		if err != nil {
			t.Fatalf("waiting for %s: %v; still %s", what, err, last)
		}
	}

	initOut, err := l.ssh("master01", "kubeforge init --config /root/kf/cluster.yaml --node-name master01", nil)
	if err != nil {
		j, _ := l.ssh("master01", "systemctl status kube-controller-manager --no-pager; journalctl --no-pager -o cat -n 30 -u kube-controller-manager", nil)
		t.Fatalf("init: %v\n%s\n--- kube-controller-manager ---\n%s", err, initOut, j)
	}
	m := regexp.MustCompile(`KUBEFORGE_TOKEN=(\S+) KUBEFORGE_CERTIFICATE_KEY=([0-9a-f]{64}) kubeforge join (\S+) --discovery-token-ca-cert-hash (\S+) --etcd`).FindStringSubmatch(initOut)
	if m == nil {
		t.Fatalf("init printed no etcd join command:\n%s", initOut)
	}
	for _, h := range hosts[1:] {
		out, err := l.ssh(h, fmt.Sprintf("kubeforge join %s --discovery-token-ca-cert-hash %s --etcd", m[3], m[4]), nil,
			"KUBEFORGE_TOKEN="+m[1], "KUBEFORGE_CERTIFICATE_KEY="+m[2])
		if err != nil {
			t.Fatalf("join %s: %v\n%s\n%s", h, err, out, l.controlPlaneJournals())
		}
	}
	poll("three Ready nodes", 3*time.Minute, func() string {
		if ready, _, _ := l.readyNodes(); strings.Join(ready, ",") != "master01,node01,node02" {
			return fmt.Sprintf("ready %v", ready)
		}
		return ""
	})
	if got := l.etcdMembers(); got != "master01:voter node01:voter node02:voter" {
		t.Fatalf("etcd members %s, want three voters", got)
	}

	// The objects: 500 ConfigMaps and a Deployment of two pods.
	var items []string
	for i := range 500 {
		items = append(items, fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm-%03d","namespace":"restore"},"data":{"i":"%d"}}`, i, i))
	}
	l.kubectl("create namespace restore")
	if out, err := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl create -f - -o name >/dev/null", []byte(`{"apiVersion":"v1","kind":"List","items":[`+strings.Join(items, ",")+`]}`)); err != nil {
		t.Fatalf("creating the ConfigMaps: %v\n%s", err, out)
	}
	deploy := strings.NewReplacer("namespace: default", "namespace: restore", "replicas: 3", "replicas: 2").Replace(strings.SplitN(httpechoManifest, "---", 2)[0])
	if out, err := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl apply -f -", []byte(deploy)); err != nil {
		t.Fatalf("the Deployment: %v\n%s", err, out)
	}
	available := func() string {
		out, _ := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl -n restore get deploy httpecho -o jsonpath='{.status.availableReplicas}'; echo; KUBECONFIG=/etc/kubernetes/admin.conf kubectl -n restore get pods -l app=httpecho --field-selector=status.phase=Running --no-headers | wc -l", nil)
		if strings.Fields(out) == nil || strings.Join(strings.Fields(out), " ") != "2 2" {
			return "available replicas and running pods: " + strings.Join(strings.Fields(out), " ")
		}
		return ""
	}
	poll("the Deployment's two pods available", 4*time.Minute, available)

	// The snapshot, on every member host.
	l.must("master01", "kubeforge etcd snapshot save")
	var ents []snapshot.Entry
	if err := json.Unmarshal([]byte(l.must("master01", "kubeforge etcd snapshot list -o json")), &ents); err != nil || len(ents) == 0 {
		t.Fatalf("snapshot list: %v, %d entries", err, len(ents))
	}
	file, sum := ents[0].Path, ents[0].Sidecar.SHA256
	if n := len(ents[0].Sidecar.Members); n != 3 {
		t.Fatalf("the sidecar lists %d members, want 3", n)
	}
	for _, h := range hosts[1:] {
		for _, f := range []string{file, file + ".json"} {
			data := l.must("master01", "base64 -w0 "+f)
			if out, err := l.ssh(h, "mkdir -p -m 0700 /root/restore && base64 -d > /root/restore/"+f[strings.LastIndex(f, "/")+1:]+" && chmod 0600 /root/restore/*", []byte(data)); err != nil {
				t.Fatalf("copying %s to %s: %v\n%s", f, h, err, out)
			}
		}
	}
	local := map[string]string{"master01": file, "node01": "/root/restore/" + file[strings.LastIndex(file, "/")+1:]}
	local["node02"] = local["node01"]

	t.Run("a flipped byte: verify fails, restore refuses and changes nothing", func(t *testing.T) {
		bad := "/root/flipped.db"
		l.must("master01", fmt.Sprintf("cp %s %s && cp %s.json %s.json", file, bad, file, bad))
		l.must("master01", fmt.Sprintf(`b=$(dd if=%[1]s bs=1 skip=20000 count=1 2>/dev/null | od -An -tu1 | tr -d ' '); printf "$(printf '\\%%03o' $(( b ^ 1 )))" | dd of=%[1]s bs=1 seek=20000 count=1 conv=notrunc 2>/dev/null`, bad))
		if l.must("master01", "cmp -l "+file+" "+bad+" | wc -l") != "1" {
			t.Fatal("the copy does not differ in exactly one byte")
		}
		if out, err := l.ssh("master01", "kubeforge etcd snapshot verify "+bad, nil); err == nil || !strings.Contains(out, "corrupt") {
			t.Errorf("verify of the flipped copy: err %v:\n%s", err, out)
		}
		out, err := l.ssh("master01", "kubeforge etcd snapshot restore --stop-control-plane --config /root/kf/cluster.yaml --node-name master01 --sha256 "+sum+" "+bad, nil)
		if err == nil || !strings.Contains(out, "refusing to restore") || !strings.Contains(out, bad) {
			t.Errorf("restore of the flipped copy: err %v, want a refusal naming %s:\n%s", err, bad, out)
		}
		t.Logf("refused: %s", finalLine(out))
		if st := l.must("master01", "systemctl is-active kube-apiserver etcd"); st != "active\nactive" {
			t.Errorf("after the refused restore: %q, want the apiserver and etcd still active", st)
		}
	})

	t.Run("a restore under a running API server is refused", func(t *testing.T) {
		out, err := l.ssh("master01", "kubeforge etcd snapshot restore --config /root/kf/cluster.yaml --node-name master01 --sha256 "+sum+" "+file, nil)
		if err == nil || !strings.Contains(out, "--stop-control-plane") {
			t.Errorf("restore with the apiserver running: err %v:\n%s", err, out)
		}
		out, err = l.ssh("node01", "kubeforge etcd snapshot restore --config /root/kf/cluster.yaml --node-name node01 --sha256 "+sum+" "+local["node01"], nil)
		if err == nil || !strings.Contains(out, "API server of master01") {
			t.Errorf("restore on node01 with master01's apiserver running: err %v:\n%s", err, out)
		}
		t.Logf("refused: %s", finalLine(out))
	})

	// The disaster: the namespace and everything in it deleted.
	l.kubectl("delete namespace restore --wait=true --timeout=3m")
	if out, _ := l.ssh("master01", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl get ns restore", nil); !strings.Contains(out, "NotFound") {
		t.Fatalf("namespace restore still there: %s", out)
	}

	// The restore: master01 first (it stops its control plane), then the two
	// other members together.
	outs := map[string]string{}
	errs := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	run := func(h, extra string) {
		defer wg.Done()
		out, err := l.ssh(h, "kubeforge etcd snapshot restore "+extra+"--config /root/kf/cluster.yaml --node-name "+h+" --wait-timeout 10m --sha256 "+sum+" "+local[h], nil)
		mu.Lock()
		outs[h], errs[h] = out, err
		mu.Unlock()
	}
	wg.Add(1)
	go run("master01", "--stop-control-plane ")
	poll("master01's apiserver stopped by the restore", 5*time.Minute, func() string {
		if out, _ := l.ssh("master01", "systemctl is-active kube-apiserver", nil); strings.TrimSpace(out) == "active" {
			return "active"
		}
		return ""
	})
	for _, h := range hosts[1:] {
		wg.Add(1)
		go run(h, "")
	}
	wg.Wait()
	took := time.Since(start)
	for _, h := range hosts {
		if errs[h] != nil {
			t.Errorf("restore on %s: %v\n%s", h, errs[h], outs[h])
			continue
		}
		t.Logf("restore on %s:\n%s", h, outs[h])
		if !strings.Contains(outs[h], "[restore] done") {
			t.Errorf("restore on %s does not say it is done", h)
		}
	}
	if t.Failed() {
		t.Fatalf("%s", l.controlPlaneJournals())
	}
	if !strings.Contains(outs["master01"], "control plane started") {
		t.Errorf("master01's restore did not start the control plane")
	}
	t.Logf("restore of three members took %s", took.Round(time.Millisecond))

	t.Run("objects back, pods run, members healthy, API answers", func(t *testing.T) {
		if got := l.kubectl("get --raw /readyz"); got != "ok" {
			t.Errorf("/readyz: %q", got)
		}
		if got := l.etcdMembers(); got != "master01:voter node01:voter node02:voter" {
			t.Errorf("etcd members after the restore: %s", got)
		}
		if n := l.kubectl("-n restore get configmaps -o name | grep -c '^configmap/cm-'"); n != "500" {
			t.Errorf("%s ConfigMaps after the restore, want 500", n)
		}
		poll("the Deployment's two pods available after the restore", 5*time.Minute, available)
		for _, h := range hosts {
			if n := l.must(h, "ls -d /var/lib/etcd.before-restore-* | wc -l"); n != "1" {
				t.Errorf("%s: %s set-aside data dirs, want 1", h, n)
			}
		}
		// The API writes again.
		l.kubectl("-n restore create configmap after-restore --from-literal=ok=1")
	})
}
