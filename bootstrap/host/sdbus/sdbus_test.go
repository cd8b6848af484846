package sdbus_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/internal/sdfake"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
	"github.com/kubeforge/kubeforge/bootstrap/host/sdbus"
)

// journalMachine is the local host with journalctl answered from a fixed text, since
// this machine's journal (if any) knows nothing about test units.
type journalMachine struct {
	*local.Host
	journal string
	argv    []string
}

func (m *journalMachine) Run(ctx context.Context, c host.Cmd) (host.Result, error) {
	if c.Argv[0] == "journalctl" {
		m.argv = c.Argv
		return host.Result{Stdout: []byte(m.journal)}, nil
	}
	return m.Host.Run(ctx, c)
}

func setup(t *testing.T) (*sdbus.Units, *sdfake.Systemd, *journalMachine, string, *int) {
	t.Helper()
	dir := t.TempDir()
	fake := sdfake.New()
	dials := 0
	m := &journalMachine{Host: local.New(local.Options{Name: "node1"})}
	u := sdbus.New(m, dir, func(context.Context) (sdbus.Systemd, error) {
		dials++
		return fake, nil
	})
	return u, fake, m, dir, &dials
}

func count(calls []string, s string) int {
	n := 0
	for _, c := range calls {
		if c == s {
			n++
		}
	}
	return n
}

func TestWriteUnitOnlyReloadsOnChange(t *testing.T) {
	ctx := context.Background()
	u, fake, _, dir, _ := setup(t)
	unit := []byte("[Service]\nExecStart=/usr/local/bin/etcd\n")

	changed, err := u.WriteUnit(ctx, "etcd.service", unit)
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "etcd.service"))
	if err != nil || string(got) != string(unit) {
		t.Fatalf("unit file = %q, %v", got, err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "etcd.service"))
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("unit mode = %v, want 0644", fi.Mode())
	}
	if n := count(fake.Calls(), "Reload"); n != 1 {
		t.Fatalf("reloads after first write = %d, want 1", n)
	}

	changed, err = u.WriteUnit(ctx, "etcd.service", unit)
	if err != nil || changed {
		t.Fatalf("identical rewrite: changed=%v err=%v", changed, err)
	}
	if n := count(fake.Calls(), "Reload"); n != 1 {
		t.Fatalf("identical rewrite reloaded systemd (%d reloads)", n)
	}

	changed, err = u.WriteUnit(ctx, "etcd.service", append(unit, "Restart=always\n"...))
	if err != nil || !changed || count(fake.Calls(), "Reload") != 2 {
		t.Fatalf("changed rewrite: changed=%v err=%v calls=%v", changed, err, fake.Calls())
	}

	// A drop-in lands in NAME.d/, which is created.
	dropIn := []byte("[Service]\nEnvironment=A=1\n")
	if changed, err := u.WriteUnit(ctx, "kubelet.service.d/10-kubeforge.conf", dropIn); err != nil || !changed {
		t.Fatalf("drop-in: changed=%v err=%v", changed, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "kubelet.service.d", "10-kubeforge.conf")); string(got) != string(dropIn) {
		t.Fatalf("drop-in content = %q", got)
	}
}

func TestWriteUnitRefusesBadNames(t *testing.T) {
	u, fake, _, dir, _ := setup(t)
	for _, name := range []string{"../evil.service", "etcd", "a/b.service", "etcd.service.d/../../x.conf", "etcd.service.d/x", ""} {
		_, err := u.WriteUnit(context.Background(), name, []byte("x"))
		if err == nil {
			t.Errorf("WriteUnit(%q) succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), "node1") {
			t.Errorf("error for %q does not name the host: %v", name, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 || len(fake.Calls()) != 0 {
		t.Fatalf("bad names left files %v or calls %v", entries, fake.Calls())
	}
	if err := u.Start(context.Background(), "kubelet.service.d/x.conf"); err == nil {
		t.Fatal("Start accepted a drop-in path as a unit name")
	}
}

func TestWriteUnitRollsBackWhenReloadFails(t *testing.T) {
	ctx := context.Background()
	u, fake, _, dir, _ := setup(t)
	fake.ReloadErr = errors.New("Access denied")

	// New unit: the file must not stay behind, or a retry would see "unchanged" and
	// skip the reload.
	if _, err := u.WriteUnit(ctx, "etcd.service", []byte("v1\n")); err == nil || !strings.Contains(err.Error(), "Access denied") {
		t.Fatalf("err = %v, want the reload error", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd.service")); !os.IsNotExist(err) {
		t.Fatalf("unit file left behind after failed reload: %v", err)
	}

	// Existing unit: the old content comes back.
	fake.ReloadErr = nil
	if _, err := u.WriteUnit(ctx, "etcd.service", []byte("v1\n")); err != nil {
		t.Fatal(err)
	}
	fake.ReloadErr = errors.New("Access denied")
	if _, err := u.WriteUnit(ctx, "etcd.service", []byte("v2\n")); err == nil {
		t.Fatal("want error")
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "etcd.service")); string(got) != "v1\n" {
		t.Fatalf("after failed reload unit = %q, want v1 restored", got)
	}
	fake.ReloadErr = nil
	if changed, err := u.WriteUnit(ctx, "etcd.service", []byte("v2\n")); err != nil || !changed {
		t.Fatalf("retry: changed=%v err=%v", changed, err)
	}
}

func TestRemoveUnit(t *testing.T) {
	ctx := context.Background()
	u, fake, _, dir, _ := setup(t)
	if _, err := u.WriteUnit(ctx, "kubelet.service", []byte("a\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := u.WriteUnit(ctx, "kubelet.service.d/10-x.conf", []byte("b\n")); err != nil {
		t.Fatal(err)
	}
	before := count(fake.Calls(), "Reload")
	if err := u.RemoveUnit(ctx, "kubelet.service"); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left %v", entries)
	}
	if count(fake.Calls(), "Reload") != before+1 {
		t.Fatal("no reload after removing the unit")
	}
	// Again: nothing there, nothing to reload.
	if err := u.RemoveUnit(ctx, "kubelet.service"); err != nil {
		t.Fatal(err)
	}
	if count(fake.Calls(), "Reload") != before+1 {
		t.Fatal("removing a missing unit reloaded systemd")
	}
}

func TestEnableDisable(t *testing.T) {
	ctx := context.Background()
	u, fake, _, _, _ := setup(t)
	if err := u.Enable(ctx, "etcd.service"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fake.Calls(), []string{"Enable etcd.service", "Reload"}) {
		t.Fatalf("calls = %v", fake.Calls())
	}
	fake.EnableChange = false // already enabled: no links change, no reload
	if err := u.Enable(ctx, "etcd.service"); err != nil {
		t.Fatal(err)
	}
	if count(fake.Calls(), "Reload") != 1 {
		t.Fatalf("re-enable reloaded: %v", fake.Calls())
	}
	fake.HasInstall = false
	err := u.Enable(ctx, "etcd.service")
	if err == nil || !strings.Contains(err.Error(), "[Install]") || !strings.Contains(err.Error(), "etcd.service") {
		t.Fatalf("enable without [Install]: %v", err)
	}

	fake.DisableErr = godbus.Error{Name: "org.freedesktop.systemd1.NoSuchUnit", Body: []any{"Unit file x.service does not exist."}}
	if err := u.Disable(ctx, "x.service"); err != nil {
		t.Fatalf("disabling a missing unit: %v", err)
	}
	fake.DisableErr = godbus.Error{Name: "org.freedesktop.DBus.Error.AccessDenied", Body: []any{"denied"}}
	if err := u.Disable(ctx, "x.service"); err == nil || !strings.Contains(err.Error(), "disable x.service") {
		t.Fatalf("want access denied error naming the unit, got %v", err)
	}
}

func TestJobs(t *testing.T) {
	ctx := context.Background()
	u, fake, m, _, _ := setup(t)
	fake.JobResult["etcd.service"] = "done"
	for _, f := range []func(context.Context, string) error{u.Start, u.Restart, u.Stop} {
		if err := f(ctx, "etcd.service"); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(fake.Calls(), []string{"Start etcd.service", "Restart etcd.service", "Stop etcd.service"}) {
		t.Fatalf("calls = %v", fake.Calls())
	}

	fake.JobResult["kube-apiserver.service"] = "failed"
	m.journal = "line1\nflag provided but not defined: -bogus\n"
	err := u.Start(ctx, "kube-apiserver.service")
	if err == nil {
		t.Fatal("failed job reported success")
	}
	for _, want := range []string{"node1", "start kube-apiserver.service", `"failed"`, "flag provided but not defined"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if !slices.Equal(m.argv, []string{"journalctl", "-u", "kube-apiserver.service", "-n", "5", "-o", "cat", "--no-pager"}) {
		t.Errorf("journal argv = %v", m.argv)
	}

	// Stopping a unit systemd never heard of is already done.
	fake.JobErr = godbus.Error{Name: "org.freedesktop.systemd1.NoSuchUnit", Body: []any{"Unit x.service not loaded."}}
	if err := u.Stop(ctx, "x.service"); err != nil {
		t.Fatalf("stop of unknown unit: %v", err)
	}
	if err := u.Start(ctx, "x.service"); err == nil || !strings.Contains(err.Error(), "not loaded") {
		t.Fatalf("start of unknown unit: %v", err)
	}
	fake.JobErr = nil

	// A job that never finishes: the caller's context decides.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := u.Start(cctx, "hang.service"); err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("want cancellation error, got %v", err)
	}
}

func TestStatusAndJournal(t *testing.T) {
	ctx := context.Background()
	u, fake, m, _, _ := setup(t)
	fake.Props = map[string]any{"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "UnitFileState": "enabled"}
	fake.MainPID = 4242
	st, err := u.Status(ctx, "etcd.service")
	if err != nil {
		t.Fatal(err)
	}
	want := host.UnitStatus{Name: "etcd.service", LoadState: "loaded", ActiveState: "active", SubState: "running", Enabled: "enabled", MainPID: 4242}
	if st != want || !st.Active() {
		t.Fatalf("status = %+v, want %+v", st, want)
	}
	fake.Props = map[string]any{"LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead", "UnitFileState": ""}
	st, err = u.Status(ctx, "nope.service")
	if err != nil || st.LoadState != "not-found" || st.MainPID != 0 {
		t.Fatalf("missing unit status = %+v, %v", st, err)
	}

	m.journal = "a\nb\nc\n"
	lines, err := u.Journal(ctx, "etcd.service", 3)
	if err != nil || !slices.Equal(lines, []string{"a", "b", "c"}) {
		t.Fatalf("journal = %q, %v", lines, err)
	}
	m.journal = "-- No entries --\n"
	if lines, err := u.Journal(ctx, "etcd.service", 3); err != nil || len(lines) != 0 {
		t.Fatalf("empty journal = %q, %v", lines, err)
	}
}

func TestRedialsDroppedConnection(t *testing.T) {
	ctx := context.Background()
	u, fake, _, _, dials := setup(t)
	if err := u.DaemonReload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := u.DaemonReload(ctx); err != nil {
		t.Fatal(err)
	}
	if *dials != 1 {
		t.Fatalf("dials = %d, want the connection reused", *dials)
	}
	fake.Mu.Lock()
	fake.Disconnected = true
	fake.Mu.Unlock()
	if err := u.DaemonReload(ctx); err != nil {
		t.Fatal(err)
	}
	if *dials != 2 || fake.Closed != 1 {
		t.Fatalf("dials = %d closed = %d, want a redial after the drop", *dials, fake.Closed)
	}
}
