package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/components/etcd/snapshot"
)

// TestSnapshot: on master01 after a full init, 500 ConfigMaps through the API,
// `etcd snapshot save` and `verify` (a throwaway etcd serving the restored copy
// counts at least 500 more keys), a copy with one flipped byte refused naming
// the file, and the backup timer that init installed taking, verifying and
// pruning snapshots to exactly spec.etcd.backup.keep; a failing verify fails the
// service and prunes nothing; reset's etcd-backup phase removes only the units.
func TestSnapshot(t *testing.T) {
	requireE2E(t)
	// Most of this test waits for a systemd timer on one host: it runs beside
	// the other parallel tests, after the sequential ones (see main_test.go).
	t.Parallel()
	bdir := requireBundle(t)
	s := labFor(t, "snapshot", "192.168.184.0/24", bdir, "master01")
	m := &remote{t: t, s: s, host: "master01"}
	cfg, err := s.ClusterConfig()
	if err != nil {
		t.Fatal(err)
	}
	const keep = 2
	cfg.Spec.Etcd.Backup.Schedule = "1m"
	cfg.Spec.Etcd.Backup.Keep = keep
	dir := cfg.Spec.Etcd.Backup.Dir
	m.put(kubeforgeBin, "/root/kf/kubeforge", 0o755)
	m.putConfig(cfg, "/root/kf/cluster.yaml")
	const kf = "/root/kf/kubeforge"
	m.run(kf + " preflight --config /root/kf/cluster.yaml --node-name master01 --fix")
	initStart := time.Now()
	initOut := m.run(kf + " init --config /root/kf/cluster.yaml --node-name master01")
	t.Logf("init took %s", time.Since(initStart).Round(time.Second))
	if !strings.Contains(initOut, "etcd snapshots every 1m into "+dir) {
		t.Errorf("init output does not show the etcd-backup phase:\n%s", initOut)
	}

	// 500 ConfigMaps in one List through the API server.
	var items []string
	for i := range 500 {
		items = append(items, fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm-%03d","namespace":"snap"},"data":{"i":"%d"}}`, i, i))
	}
	list := `{"apiVersion":"v1","kind":"List","items":[` + strings.Join(items, ",") + `]}`
	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
	m.run(kubectl + "create namespace snap")
	t0 := time.Now()
	m.stdin([]byte(list), kubectl+"create -f - -o name >/dev/null")
	if n := m.run(kubectl + "get configmaps -n snap -o name | grep -c '^configmap/cm-'"); n != "500" {
		t.Fatalf("%s ConfigMaps created, want 500", n)
	}
	t.Logf("500 ConfigMaps created in %s", time.Since(t0).Round(time.Millisecond))

	var saved string
	t.Run("save and verify", func(t *testing.T) {
		m := m.with(t)
		out := m.run("kubeforge etcd snapshot save")
		t.Logf("save:\n%s", out)
		var ents []snapshot.Entry
		if err := json.Unmarshal([]byte(m.run("kubeforge etcd snapshot list -o json")), &ents); err != nil || len(ents) == 0 {
			t.Fatalf("list -o json: %v, %d entries", err, len(ents))
		}
		saved = ents[0].Path
		sc := ents[0].Sidecar
		if !strings.Contains(out, saved) || sc.Cluster != cfg.Metadata.Name || sc.KubernetesVersion != cfg.Spec.KubernetesVersion || len(sc.Members) != 1 || sc.Revision == 0 {
			t.Errorf("newest snapshot %s, sidecar %+v", saved, sc)
		}
		if modes := m.run("stat -c %a " + dir + " " + saved + " " + saved + ".json"); modes != "700\n600\n600" {
			t.Errorf("modes of dir, snapshot, sidecar: %q, want 700 600 600", modes)
		}
		if got := m.run("sha256sum " + saved + " | cut -d' ' -f1"); got != sc.SHA256 {
			t.Errorf("sha256 %s, sidecar says %s", got, sc.SHA256)
		}
		var r snapshot.Result
		vout := m.run("kubeforge etcd snapshot verify -o json " + saved)
		if err := json.Unmarshal([]byte(vout), &r); err != nil {
			t.Fatalf("verify -o json: %v\n%s", err, vout)
		}
		t.Logf("verify: %d keys, revision %d, %d bytes, in %s", r.Keys, r.Revision, r.Size, r.Took)
		if r.Keys < 500 || r.Revision < sc.Revision {
			t.Errorf("verify: %d keys at revision %d; want >= 500 keys and revision >= %d", r.Keys, r.Revision, sc.Revision)
		}
		if left := m.run("ls -A " + dir + " | grep -c kubeforge-verify || true"); left != "0" {
			t.Errorf("verify left %s temporary dirs in %s", left, dir)
		}
	})

	t.Run("a flipped byte fails verify naming the file", func(t *testing.T) {
		m := m.with(t)
		if saved == "" {
			t.Skip("no snapshot")
		}
		bad := "/root/flipped.db"
		m.run(fmt.Sprintf("cp %s %s && cp %s.json %s.json", saved, bad, saved, bad))
		// Flip the lowest bit of the byte at offset 20000.
		m.run(fmt.Sprintf(`b=$(dd if=%[1]s bs=1 skip=20000 count=1 2>/dev/null | od -An -tu1 | tr -d ' '); printf "$(printf '\\%%03o' $(( b ^ 1 )))" | dd of=%[1]s bs=1 seek=20000 count=1 conv=notrunc 2>/dev/null`, bad))
		if m.run("cmp -l "+saved+" "+bad+" | wc -l") != "1" {
			t.Fatal("the copy does not differ in exactly one byte")
		}
		out, err := m.try("kubeforge etcd snapshot verify " + bad)
		if err == nil || !strings.Contains(out, bad) || !strings.Contains(out, "corrupt") {
			t.Errorf("verify of the flipped copy: err %v, want an error naming %s:\n%s", err, bad, out)
		}
		out, err = m.try("kubeforge etcd snapshot verify --no-sidecar " + bad)
		if err == nil || !strings.Contains(out, bad) {
			t.Errorf("verify --no-sidecar of the flipped copy: err %v:\n%s", err, out)
		}
		t.Logf("refused: %s", lastLine(out))
	})

	t.Run("the backup timer takes, verifies and prunes", func(t *testing.T) {
		m := m.with(t)
		if st := m.run("systemctl is-enabled " + snapshot.TimerName + "; systemctl is-active " + snapshot.TimerName); st != "enabled\nactive" {
			t.Fatalf("%s: %q, want enabled and active", snapshot.TimerName, st)
		}
		// The timer's own first run (OnActiveSec=60s after init started it).
		err := wait.PollUntilContextTimeout(context.Background(), 2*time.Second, 3*time.Minute, true, func(context.Context) (bool, error) {
			out, _ := m.try("journalctl -u " + snapshot.ServiceName + " --no-pager -o cat | grep -c '^\\[verify\\] OK' || true")
			return out != "0" && out != "", nil
		})
		if err != nil {
			t.Fatalf("waiting for the timer to run %s with a verified snapshot: %v\n%s", snapshot.ServiceName, err, m.run("systemctl status "+snapshot.ServiceName+" --no-pager || true; journalctl -u "+snapshot.ServiceName+" --no-pager | tail -20"))
		}
		// Two more runs, started directly: more snapshots than keep were taken.
		for range 2 {
			m.run("systemctl start " + snapshot.ServiceName)
		}
		var ents []snapshot.Entry
		if err := json.Unmarshal([]byte(m.run("kubeforge etcd snapshot list -o json")), &ents); err != nil {
			t.Fatal(err)
		}
		if len(ents) != keep {
			t.Errorf("%d snapshots after the timer's runs, want exactly %d:\n%s", len(ents), keep, m.run("kubeforge etcd snapshot list"))
		}
		if n := m.run("ls " + dir + " | grep -c '\\.db$'"); n != fmt.Sprint(keep) {
			t.Errorf("%s .db files in %s, want %d", n, dir, keep)
		}
		t.Logf("journal of the service:\n%s", m.run("journalctl -u "+snapshot.ServiceName+" --no-pager -o cat | grep -E '^\\[(save|verify|prune)\\] (saved|OK|[0-9]+ removed)' | tail -9"))

		// A verify that fails (the drop-in points it at an etcd that exits at
		// once) fails the service, says so in the journal, and prunes nothing.
		m.run(`mkdir -p /etc/systemd/system/` + snapshot.ServiceName + `.d && printf '[Service]\nExecStart=\nExecStart=/usr/local/bin/kubeforge etcd snapshot backup --dir ` + dir + ` --keep 2 --etcd-binary /bin/false\n' > /etc/systemd/system/` + snapshot.ServiceName + `.d/broken.conf && systemctl daemon-reload`)
		out, err := m.try("systemctl start " + snapshot.ServiceName)
		if err == nil {
			t.Errorf("the service succeeded with a failing verify: %s", out)
		}
		if st := m.run("systemctl is-failed " + snapshot.ServiceName + " || true"); st != "failed" {
			t.Errorf("service state %q after a failed verify, want failed", st)
		}
		if j := m.run("journalctl -u " + snapshot.ServiceName + " --no-pager -o cat | tail -20"); !strings.Contains(j, "does not restore, nothing pruned") {
			t.Errorf("the journal does not say the verify failed:\n%s", j)
		}
		if n := m.run("kubeforge etcd snapshot list | tail -n +2 | wc -l"); n != fmt.Sprint(keep+1) {
			t.Errorf("%s snapshots after the failed run, want %d (nothing pruned)", n, keep+1)
		}
		m.run("rm -r /etc/systemd/system/" + snapshot.ServiceName + ".d && systemctl daemon-reload && systemctl reset-failed " + snapshot.ServiceName)
		m.run("systemctl start " + snapshot.ServiceName)
		if n := m.run("kubeforge etcd snapshot list | tail -n +2 | wc -l"); n != fmt.Sprint(keep) {
			t.Errorf("%s snapshots after the next good run, want %d", n, keep)
		}
	})

	t.Run("reset removes the timer and keeps the snapshots", func(t *testing.T) {
		m := m.with(t)
		m.run("touch " + dir + "/operator-notes.txt")
		before := m.run("ls " + dir)
		m.run("kubeforge reset phase etcd-backup --force --config /etc/kubeforge/cluster.yaml --node-name master01")
		for _, u := range []string{snapshot.TimerName, snapshot.ServiceName} {
			if out, err := m.try("test -e /etc/systemd/system/" + u); err == nil {
				t.Errorf("%s still there after reset: %s", u, out)
			}
		}
		if after := m.run("ls " + dir); after != before {
			t.Errorf("reset changed %s:\nbefore %s\nafter  %s", dir, before, after)
		}
		if st, _ := m.try("systemctl is-active " + snapshot.TimerName); st == "active" {
			t.Error("the timer still runs after reset")
		}
	})
}
