package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"slices"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
)

func TestInstallIsIdempotentAndRemoveKeepsSnapshots(t *testing.T) {
	ctx := context.Background()
	h := fakehost.New("master01")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b := config.EtcdBackup{Schedule: "1h", Keep: 3, Dir: "/var/lib/kubeforge/etcd-snapshots"}
	o := InstallOptions{Host: h, Backup: b, Executable: exe}
	changed, err := Install(ctx, o)
	if err != nil || !changed {
		t.Fatalf("first install: changed %v, %v", changed, err)
	}
	if f := h.Files[BinaryPath]; f == nil || f.Mode.Perm() != 0o755 {
		t.Errorf("%s not installed 0755", BinaryPath)
	}
	if !h.Dirs[b.Dir] {
		t.Errorf("%s not created", b.Dir)
	}
	if u := h.UnitFiles[TimerName]; u == nil || !u.Enabled || !u.Active {
		t.Errorf("timer not enabled and started: %+v", u)
	}
	if u := h.UnitFiles[ServiceName]; u == nil || u.Active || u.Enabled {
		t.Errorf("the service is started by the timer only: %+v", u)
	}

	// Converged: nothing changes. (The fake has no sha256sum, so the binary
	// compare falls back to a rewrite; make it answer as the real host would.)
	h.Commands["sha256sum "+BinaryPath] = hostResultSHA(t, exe)
	h.ResetChanges()
	if changed, err := Install(ctx, o); err != nil || changed || len(h.Changes()) != 0 {
		t.Fatalf("second install: changed %v, %v, changes %v", changed, err, h.Changes())
	}

	// A new schedule rewrites the timer and restarts it.
	o.Backup.Schedule = "daily"
	if changed, err := Install(ctx, o); err != nil || !changed || !slices.Contains(h.Changes(), "restart "+TimerName) {
		t.Fatalf("schedule change: changed %v, %v, changes %v", changed, err, h.Changes())
	}

	// Remove: the units go, the snapshots stay.
	snap := b.Dir + "/kubernetes-etcd-20261203T120000Z-rev5.db"
	h.SetFile(snap, "db", 0o600)
	h.SetFile("/etc/systemd/system/"+TimerName, string(h.UnitFiles[TimerName].Content), 0o644)
	h.SetFile("/etc/systemd/system/"+ServiceName, string(h.UnitFiles[ServiceName].Content), 0o644)
	if ok, _ := Present(ctx, h); !ok {
		t.Fatal("Present: false with the units there")
	}
	if changed, err := Remove(ctx, h, t.Logf); err != nil || !changed {
		t.Fatalf("remove: %v %v", changed, err)
	}
	if _, ok := h.UnitFiles[TimerName]; ok {
		t.Error("timer still there")
	}
	if _, ok := h.UnitFiles[ServiceName]; ok {
		t.Error("service still there")
	}
	if h.Files[snap] == nil {
		t.Error("remove deleted a snapshot")
	}
}

func hostResultSHA(t *testing.T, path string) host.Result {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return host.Result{Stdout: []byte(hex.EncodeToString(sum[:]) + "  " + BinaryPath + "\n")}
}
