package dryrun_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/dryrun"
	"github.com/kubeforge/kubeforge/bootstrap/host/internal/sdfake"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
	"github.com/kubeforge/kubeforge/bootstrap/host/sdbus"
)

// realHost is the local machine with systemd answered by a fake (no systemd runs
// here): every unit is inactive and disabled, and any change reaching it is a bug.
func realHost(t *testing.T, unitDir string) (*local.Host, *sdfake.Systemd) {
	fake := sdfake.New()
	fake.Props = map[string]any{"LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead", "UnitFileState": ""}
	h := local.New(local.Options{Name: "node1", UnitDir: unitDir,
		DialSystemd: func(context.Context) (sdbus.Systemd, error) { return fake, nil }})
	return h, fake
}

// treeSum fingerprints every path, mode and content below dir.
func treeSum(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v", p, fi.Mode())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func seed(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "etc", "etcd"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "etc", "etcd", "etcd.conf"), []byte("name=a\ndata=/var/lib/etcd\nport=2379\n"), 0o644))
	must(os.MkdirAll(filepath.Join(dir, "old", "sub"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "old", "sub", "f"), []byte("x"), 0o644))
	must(os.MkdirAll(filepath.Join(dir, "units"), 0o755))
	return dir
}

func TestNothingTouched(t *testing.T) {
	ctx := context.Background()
	dir := seed(t)
	before := treeSum(t, dir)
	inner, fake := realHost(t, filepath.Join(dir, "units"))
	d := dryrun.New(inner, dryrun.Options{UnitDir: filepath.Join(dir, "units")})
	defer d.Close()

	steps := []func() error{
		func() error {
			return d.WriteFile(ctx, filepath.Join(dir, "etc", "etcd", "etcd.conf"), []byte("name=a\ndata=/var/lib/etcd\nport=2380\n"), host.WriteOptions{})
		},
		func() error {
			return d.WriteFile(ctx, filepath.Join(dir, "pki", "ca.key"), []byte("KEY"), host.WriteOptions{Mode: 0o600, Secret: true})
		},
		func() error { return d.MkdirAll(ctx, filepath.Join(dir, "var", "lib", "etcd"), 0o700) },
		func() error { return d.Remove(ctx, filepath.Join(dir, "old")) },
		func() error {
			_, err := d.Run(ctx, host.Cmd{Argv: []string{"touch", filepath.Join(dir, "ran")}})
			return err
		},
		func() error {
			_, err := d.Units().WriteUnit(ctx, "etcd.service", []byte("[Service]\nExecStart=/usr/local/bin/etcd\n"))
			return err
		},
		func() error { return d.Units().Enable(ctx, "etcd.service") },
		func() error { return d.Units().Start(ctx, "etcd.service") },
		func() error { return d.Units().DaemonReload(ctx) },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if after := treeSum(t, dir); after != before {
		t.Fatalf("dry run changed the disk:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	for _, c := range fake.Calls() {
		if !strings.HasPrefix(c, "Props ") && !strings.HasPrefix(c, "ServiceProp ") {
			t.Errorf("dry run made a change through systemd: %s", c)
		}
	}

	var kinds []string
	for _, a := range d.Plan() {
		kinds = append(kinds, string(a.Kind))
	}
	want := "write write mkdir remove run write-unit enable start daemon-reload"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("plan kinds = %s\nwant        %s", got, want)
	}

	// Read-only commands really run (against the real file).
	r, err := d.Run(ctx, host.Cmd{Argv: []string{"cat", filepath.Join(dir, "etc", "etcd", "etcd.conf")}, ReadOnly: true})
	if err != nil || !strings.Contains(string(r.Stdout), "port=2379") {
		t.Fatalf("read-only run: %q %v", r.Stdout, err)
	}
	if len(d.Plan()) != len(steps) {
		t.Fatal("a read-only command was recorded as a change")
	}
}

func TestReadsSeePlannedState(t *testing.T) {
	ctx := context.Background()
	dir := seed(t)
	inner := local.New(local.Options{Name: "node1"})
	d := dryrun.New(inner, dryrun.Options{UnitDir: filepath.Join(dir, "units")})
	conf := filepath.Join(dir, "etc", "etcd", "etcd.conf")

	if err := d.WriteFile(ctx, conf, []byte("planned\n"), host.WriteOptions{Mode: 0o600, Owner: "root"}); err != nil {
		t.Fatal(err)
	}
	if b, err := d.ReadFile(ctx, conf); err != nil || string(b) != "planned\n" {
		t.Fatalf("read after planned write = %q, %v", b, err)
	}
	if fi, err := d.Stat(ctx, conf); err != nil || fi.Mode != 0o600 || fi.Size != 8 || fi.UID != 0 {
		t.Fatalf("stat after planned write = %+v, %v", fi, err)
	}
	if fi, err := d.Stat(ctx, filepath.Join(dir, "etc")); err != nil || !fi.IsDir() {
		t.Fatalf("real parent dir: %+v %v", fi, err)
	}

	// Removing a tree hides everything below it, including real files...
	old := filepath.Join(dir, "old")
	if err := d.Remove(ctx, old); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{old, filepath.Join(old, "sub"), filepath.Join(old, "sub", "f")} {
		if _, err := d.Stat(ctx, p); !host.IsNotExist(err) {
			t.Errorf("Stat(%s) after planned remove: %v", p, err)
		}
	}
	// ...and writing below it again recreates only what is written.
	if err := d.WriteFile(ctx, filepath.Join(old, "sub", "g"), []byte("g"), host.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, err := d.ReadFile(ctx, filepath.Join(old, "sub", "g")); err != nil || string(b) != "g" {
		t.Fatalf("recreated file: %q %v", b, err)
	}
	if _, err := d.ReadFile(ctx, filepath.Join(old, "sub", "f")); !host.IsNotExist(err) {
		t.Fatalf("real file under a removed-then-recreated dir is visible: %v", err)
	}
	// Removing a path that does not exist (also in the plan) records nothing.
	n := len(d.Plan())
	if err := d.Remove(ctx, filepath.Join(dir, "never")); err != nil || len(d.Plan()) != n {
		t.Fatalf("remove of missing path: %v, plan grew to %d", err, len(d.Plan()))
	}

	// MkdirAll over a planned file is refused like the real thing would be.
	if err := d.MkdirAll(ctx, conf, 0o755); err == nil {
		t.Fatal("MkdirAll over a planned file succeeded")
	}
	// An existing directory with the right mode is not a change.
	if err := os.Chmod(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	n = len(d.Plan())
	if err := d.MkdirAll(ctx, filepath.Join(dir, "etc"), 0o755); err != nil || len(d.Plan()) != n {
		t.Fatalf("MkdirAll of an existing dir: %v, plan %d -> %d", err, n, len(d.Plan()))
	}
}

func TestUnitsPlan(t *testing.T) {
	ctx := context.Background()
	d := dryrun.New(nil, dryrun.Options{Name: "node2"})
	u := d.Units()
	unit := []byte("[Service]\nExecStart=/usr/local/bin/kubelet\n")
	if changed, err := u.WriteUnit(ctx, "kubelet.service", unit); err != nil || !changed {
		t.Fatalf("first WriteUnit: %v %v", changed, err)
	}
	if changed, err := u.WriteUnit(ctx, "kubelet.service", unit); err != nil || changed {
		t.Fatalf("identical WriteUnit: %v %v", changed, err)
	}
	st, err := u.Status(ctx, "kubelet.service")
	if err != nil || st.LoadState != "loaded" || st.Active() {
		t.Fatalf("status after planned write = %+v %v", st, err)
	}
	for range 2 {
		if err := u.Enable(ctx, "kubelet.service"); err != nil {
			t.Fatal(err)
		}
		if err := u.Start(ctx, "kubelet.service"); err != nil {
			t.Fatal(err)
		}
	}
	st, _ = u.Status(ctx, "kubelet.service")
	if !st.Active() || st.Enabled != "enabled" {
		t.Fatalf("status after planned enable+start = %+v", st)
	}
	if err := u.Stop(ctx, "kubelet.service"); err != nil {
		t.Fatal(err)
	}
	if err := u.Stop(ctx, "kubelet.service"); err != nil {
		t.Fatal(err)
	}
	// Stopping or disabling what never existed is no change.
	if err := u.Stop(ctx, "nothing.service"); err != nil {
		t.Fatal(err)
	}
	if err := u.Disable(ctx, "nothing.service"); err != nil {
		t.Fatal(err)
	}
	if err := u.RemoveUnit(ctx, "nothing.service"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range d.Plan() {
		got = append(got, a.Summary())
	}
	want := []string{
		"write unit kubelet.service (/etc/systemd/system/kubelet.service, new) and daemon-reload",
		"enable unit kubelet.service",
		"start unit kubelet.service",
		"stop unit kubelet.service",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := u.WriteUnit(ctx, "../x.service", unit); err == nil {
		t.Fatal("bad unit name accepted")
	}
	if lines, err := u.Journal(ctx, "kubelet.service", 10); err != nil || lines != nil {
		t.Fatalf("journal without inner host: %v %v", lines, err)
	}
}

func TestNilInner(t *testing.T) {
	ctx := context.Background()
	d := dryrun.New(nil, dryrun.Options{})
	if d.Name() != "dry-run" {
		t.Fatalf("name = %q", d.Name())
	}
	if _, err := d.ReadFile(ctx, "/etc/hostname"); !host.IsNotExist(err) {
		t.Fatalf("files must not exist without an inner host: %v", err)
	}
	r, err := d.Run(ctx, host.Cmd{Argv: []string{"uname", "-r"}, ReadOnly: true})
	if err != nil || !r.OK() || len(r.Stdout) != 0 {
		t.Fatalf("read-only command without inner host: %+v %v", r, err)
	}
	if len(d.Plan()) != 0 {
		t.Fatal("read-only command recorded")
	}
	if _, err := d.Run(ctx, host.Cmd{}); err == nil {
		t.Fatal("empty command accepted")
	}
	if err := d.WriteFile(ctx, "relative", nil, host.WriteOptions{}); err == nil {
		t.Fatal("relative path accepted")
	}
}

func TestPrintPlan(t *testing.T) {
	ctx := context.Background()
	dir := seed(t)
	inner, _ := realHost(t, filepath.Join(dir, "units"))
	d := dryrun.New(inner, dryrun.Options{UnitDir: filepath.Join(dir, "units")})
	conf := filepath.Join(dir, "etc", "etcd", "etcd.conf")

	steps := []error{
		d.MkdirAll(ctx, filepath.Join(dir, "pki"), 0o700),
		d.WriteFile(ctx, filepath.Join(dir, "pki", "ca.key"), []byte("TOP-SECRET-KEY-MATERIAL\n"), host.WriteOptions{Mode: 0o600, Owner: "etcd", Group: "etcd", Secret: true}),
		d.WriteFile(ctx, conf, []byte("name=a\ndata=/var/lib/etcd\nport=2380\n"), host.WriteOptions{}),
		d.WriteFile(ctx, filepath.Join(dir, "new.txt"), []byte("one\ntwo"), host.WriteOptions{Mode: 0o640}),
		d.Remove(ctx, filepath.Join(dir, "old")),
	}
	_, err := d.Run(ctx, host.Cmd{Argv: []string{"cfssl", "gencert", "-initca", "-"}, Stdin: []byte("TOP-SECRET-CSR"), Secret: true})
	steps = append(steps, err)
	_, err = d.Run(ctx, host.Cmd{Argv: []string{"modprobe", "br_netfilter"}, Env: []string{"HTTPS_PROXY=http://user:TOP-SECRET-PW@proxy:3128"}})
	steps = append(steps, err)
	_, err = d.Units().WriteUnit(ctx, "etcd.service", []byte("[Unit]\nDescription=etcd\n"))
	steps = append(steps, err, d.Units().Enable(ctx, "etcd.service"), d.Units().Restart(ctx, "etcd.service"))
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}

	var out bytes.Buffer
	if err := d.PrintPlan(&out); err != nil {
		t.Fatal(err)
	}
	got := strings.ReplaceAll(out.String(), dir, "$DIR")
	want := `host node1: 10 planned change(s)
  [1] mkdir $DIR/pki (mode 0700)
  [2] write $DIR/pki/ca.key (mode 0600, owner etcd:etcd, new file)
      <secret: 24 bytes>
  [3] write $DIR/etc/etcd/etcd.conf (mode 0644)
      --- $DIR/etc/etcd/etcd.conf
      +++ $DIR/etc/etcd/etcd.conf (planned)
      @@ -1,3 +1,3 @@
       name=a
       data=/var/lib/etcd
      -port=2379
      +port=2380
  [4] write $DIR/new.txt (mode 0640, new file)
      --- /dev/null
      +++ $DIR/new.txt (planned)
      @@ -0,0 +1,2 @@
      +one
      +two
      \ No newline at end of file
  [5] remove $DIR/old
  [6] run: cfssl gencert -initca -
      stdin: <secret: 14 bytes>
  [7] run: modprobe br_netfilter
      env: HTTPS_PROXY
  [8] write unit etcd.service ($DIR/units/etcd.service, new) and daemon-reload
      --- /dev/null
      +++ $DIR/units/etcd.service (planned)
      @@ -0,0 +1,2 @@
      +[Unit]
      +Description=etcd
  [9] enable unit etcd.service
  [10] restart unit etcd.service
`
	if got != want {
		t.Fatalf("PrintPlan:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(out.String(), "TOP-SECRET") {
		t.Fatal("a secret reached the plan output")
	}
}

func TestUnchangedWriteIsMarked(t *testing.T) {
	ctx := context.Background()
	dir := seed(t)
	d := dryrun.New(local.New(local.Options{Name: "node1"}), dryrun.Options{})
	conf := filepath.Join(dir, "etc", "etcd", "etcd.conf")
	b, _ := os.ReadFile(conf)
	if err := d.WriteFile(ctx, conf, b, host.WriteOptions{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	d.PrintPlan(&out)
	if !strings.HasPrefix(out.String(), "host node1: 0 planned change(s)\n") || !strings.Contains(out.String(), "unchanged") ||
		strings.Contains(out.String(), "@@") {
		t.Fatalf("identical write shown as a change:\n%s", out.String())
	}
	// Same content but another mode is a change.
	d2 := dryrun.New(local.New(local.Options{Name: "node1"}), dryrun.Options{})
	d2.WriteFile(ctx, conf, b, host.WriteOptions{Mode: 0o600})
	if d2.Plan()[0].Unchanged || !strings.Contains(d2.Plan()[0].Summary(), "same content") {
		t.Fatalf("mode change hidden: %+v", d2.Plan()[0].Summary())
	}
}
