package etcd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/dryrun"
	"github.com/kubeforge/kubeforge/certs"
)

// memHost is an in-memory host: a dry-run host with nothing behind it keeps every
// write and answers reads from them.
func memHost(name string) *dryrun.Host { return dryrun.New(nil, dryrun.Options{Name: name}) }

func TestWriteFilesModesAndIdempotence(t *testing.T) {
	ctx := context.Background()
	h := memHost("node01")
	r := &hostMember{h: h, cfg: seedMemberConfig(t), logf: t.Logf}
	changed, err := r.writeFiles(ctx)
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	for p, mode := range map[string]os.FileMode{"/var/lib/etcd": 0o700, ConfigPath: 0o600} {
		fi, err := h.Stat(ctx, p)
		if err != nil || fi.Mode.Perm() != mode {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode.Perm(), err, mode)
		}
	}
	st, _ := h.Units().Status(ctx, UnitName)
	if st.Enabled != "enabled" || st.LoadState != "loaded" {
		t.Errorf("unit %+v, want loaded and enabled", st)
	}
	before := len(h.Plan())
	changed, err = r.writeFiles(ctx)
	if err != nil || changed {
		t.Fatalf("second write: changed=%v err=%v, want unchanged", changed, err)
	}
	if n := len(h.Plan()); n != before {
		t.Errorf("second write planned %d more actions: %v", n-before, h.Plan()[before:])
	}
	// A changed setting is a change.
	r.cfg.Settings.SnapshotCount = 5000
	if changed, err := r.writeFiles(ctx); err != nil || !changed {
		t.Errorf("changed setting: changed=%v err=%v", changed, err)
	}
}

func TestWriteFilesRefusesBadConfigBeforeWriting(t *testing.T) {
	h := memHost("node01")
	mc := seedMemberConfig(t)
	mc.Settings.ExtraArgs = map[string]string{"bogus": "1"}
	r := &hostMember{h: h, cfg: mc, logf: t.Logf}
	if _, err := r.writeFiles(context.Background()); err == nil || !strings.Contains(err.Error(), "node01") {
		t.Fatalf("err %v, want one naming the host", err)
	}
	if p := h.Plan(); len(p) != 0 {
		t.Errorf("a refused config still changed the host: %v", p)
	}
}

// fakeBundle is a bundle directory with a small bin/etcd and its manifest.
func fakeBundle(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/etcd"), []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.WriteManifest(dir, "v1.34.4", "v3.6.16", map[string]string{"bin/etcd": "v3.6.16"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestInstallBinary(t *testing.T) {
	ctx := context.Background()
	h := memHost("node01")
	dir := fakeBundle(t, "#!/bin/sh\necho etcd\n")
	changed, err := InstallBinary(ctx, h, dir)
	if err != nil || !changed {
		t.Fatalf("install: %v %v", changed, err)
	}
	got, err := h.ReadFile(ctx, BinaryPath)
	if err != nil || string(got) != "#!/bin/sh\necho etcd\n" {
		t.Fatalf("installed %q %v", got, err)
	}
	if fi, _ := h.Stat(ctx, BinaryPath); fi.Mode.Perm() != 0o755 {
		t.Errorf("mode %v", fi.Mode.Perm())
	}
	// The in-memory host cannot run sha256sum, so this also covers the fallback
	// that reads the installed file back.
	if changed, err := InstallBinary(ctx, h, dir); err != nil || changed {
		t.Errorf("second install: changed=%v err=%v, want unchanged", changed, err)
	}

	// A binary that does not match the manifest is refused by name and not installed.
	h2 := memHost("node02")
	if err := os.WriteFile(filepath.Join(dir, "bin/etcd"), []byte("#!/bin/sh\necho evil\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = InstallBinary(ctx, h2, dir)
	var mm *bundle.MismatchError
	if !errors.As(err, &mm) || mm.Path != "bin/etcd" {
		t.Fatalf("tampered binary: %v", err)
	}
	if _, err := h2.Stat(ctx, BinaryPath); !host.IsNotExist(err) {
		t.Errorf("tampered binary was installed (%v)", err)
	}
	if _, err := InstallBinary(ctx, h2, filepath.Join(dir, "nope")); err == nil || !strings.Contains(err.Error(), "--bundle") {
		t.Errorf("missing bundle: %v", err)
	}
}

func TestEnsureCertsIssuesFromTheEtcdCA(t *testing.T) {
	ctx := context.Background()
	c := config.Default()
	master, _ := c.Host("master01")
	node, _ := c.Host("node01")
	h := memHost("master01")
	changed, err := EnsureCerts(ctx, h, c, *master, "/etc/kubernetes/pki", true, t.Logf)
	if err != nil || !changed {
		t.Fatalf("init certs: %v %v", changed, err)
	}
	if changed, err := EnsureCerts(ctx, h, c, *master, "/etc/kubernetes/pki", true, t.Logf); err != nil || changed {
		t.Fatalf("second run: changed=%v err=%v", changed, err)
	}
	// A joining host without the CA gets a clear error and nothing written.
	j := memHost("node01")
	if _, err := EnsureCerts(ctx, j, c, *node, "/etc/kubernetes/pki", false, t.Logf); err == nil || !strings.Contains(err.Error(), "etcd/ca.crt") {
		t.Fatalf("join without CA: %v", err)
	}
	if p := j.Plan(); len(p) != 0 {
		t.Errorf("wrote %v without a CA", p)
	}
	// With the CA handed over it issues its own certificates from it.
	for _, f := range []string{"etcd/ca.crt", "etcd/ca.key"} {
		data, _ := h.ReadFile(ctx, "/etc/kubernetes/pki/"+f)
		if err := j.WriteFile(ctx, "/etc/kubernetes/pki/"+f, data, host.WriteOptions{Mode: certs.FileMode(f)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := EnsureCerts(ctx, j, c, *node, "/etc/kubernetes/pki", false, t.Logf); err != nil {
		t.Fatalf("join with CA: %v", err)
	}
	caPEM, _ := j.ReadFile(ctx, "/etc/kubernetes/pki/etcd/ca.crt")
	ca, err := certs.ParseCA(caPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	peerPEM, _ := j.ReadFile(ctx, "/etc/kubernetes/pki/etcd/peer.crt")
	peer, err := certs.ParseCertPEM(peerPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Verify(peer, peer.NotBefore.Add(10*60e9)); err != nil {
		t.Errorf("peer certificate not from the etcd CA: %v", err)
	}
	if peer.Subject.CommonName != "node01" || len(peer.IPAddresses) == 0 || peer.IPAddresses[0].String() != "192.168.161.152" {
		t.Errorf("peer certificate CN %q IPs %v", peer.Subject.CommonName, peer.IPAddresses)
	}
	if fi, _ := j.Stat(ctx, "/etc/kubernetes/pki/etcd/peer.key"); fi.Mode.Perm() != 0o600 {
		t.Errorf("peer key mode %v", fi.Mode.Perm())
	}
}

func TestResetWithoutMemberIsUnchanged(t *testing.T) {
	res, err := Reset(context.Background(), ResetOptions{Host: memHost("node01"), NodeName: "node01", CertDir: "/etc/kubernetes/pki"})
	if err != nil || res.Changed {
		t.Fatalf("reset of a host without etcd: %+v %v", res, err)
	}
}

func TestResetRefusesWhenTheClusterIsUnreachable(t *testing.T) {
	ctx := context.Background()
	h := memHost("node01")
	r := &hostMember{h: h, cfg: seedMemberConfig(t), logf: t.Logf}
	// Point the member at a loopback address nothing listens on.
	r.cfg.Member = Member{Name: "node01", Address: "127.0.0.1", ClientPort: 1, PeerPort: 2, MetricsPort: -1}
	r.cfg.InitialCluster = []Peer{{"node01", r.cfg.Member.PeerURL()}}
	if _, err := r.writeFiles(ctx); err != nil {
		t.Fatal(err)
	}
	before := len(h.Plan())
	_, err := Reset(ctx, ResetOptions{Host: h, NodeName: "node01", CertDir: "/etc/kubernetes/pki", Logf: t.Logf})
	if err == nil || !strings.Contains(err.Error(), "node01") {
		t.Fatalf("reset without credentials or cluster: %v", err)
	}
	if n := len(h.Plan()); n != before {
		t.Errorf("a refused reset changed the host: %v", h.Plan()[before:])
	}
	// Forced, the local member goes regardless.
	res, err := Reset(ctx, ResetOptions{Host: h, NodeName: "node01", CertDir: "/etc/kubernetes/pki", Force: true, Logf: t.Logf})
	if err != nil || !res.Changed {
		t.Fatalf("forced reset: %+v %v", res, err)
	}
	for _, p := range []string{ConfigPath, "/var/lib/etcd", "/etc/systemd/system/" + UnitName} {
		if _, err := h.Stat(ctx, p); !host.IsNotExist(err) {
			t.Errorf("%s still there after a forced reset (%v)", p, err)
		}
	}
}

func TestSummarizeLog(t *testing.T) {
	lines := []string{
		`{"level":"info","ts":"x","caller":"etcdmain/etcd.go:64","msg":"Running: "}`,
		`{"level":"error","ts":"x","msg":"creating peer listener failed","error":"listen tcp 10.0.0.3:2380: bind: address already in use","stacktrace":"a\nb"}`,
		`{"level":"fatal","ts":"x","msg":"discovery failed","error":"listen tcp 10.0.0.3:2380: bind: address already in use"}`,
		"etcd.service: Main process exited, code=exited, status=1/FAILURE",
		"etcd.service: Main process exited, code=exited, status=1/FAILURE",
	}
	got := strings.Join(summarizeLog(lines, 6), "\n")
	want := "error: creating peer listener failed: listen tcp 10.0.0.3:2380: bind: address already in use\n" +
		"fatal: discovery failed: listen tcp 10.0.0.3:2380: bind: address already in use\n" +
		"etcd.service: Main process exited, code=exited, status=1/FAILURE"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if n := len(summarizeLog(lines, 2)); n != 2 {
		t.Errorf("max 2 kept %d", n)
	}
}

func TestBootstrapDistributesCertsAndKeepsTheCAKeyOnOneHost(t *testing.T) {
	ctx := context.Background()
	c := config.Default()
	var targets []Target
	hosts := map[string]*dryrun.Host{}
	// Given in reverse: Bootstrap must still pick the first etcd host for the CA.
	for i := len(c.Spec.Hosts) - 1; i >= 0; i-- {
		h := c.Spec.Hosts[i]
		hosts[h.Name] = memHost(h.Name)
		targets = append(targets, Target{Host: hosts[h.Name], Node: h})
	}
	res, err := Bootstrap(ctx, BootstrapOptions{Cluster: c, Targets: targets, CertDir: "/etc/kubernetes/pki",
		BundleDir: fakeBundle(t, "etcd"), DryRun: true, Logf: t.Logf})
	if err != nil || !res.Changed {
		t.Fatalf("bootstrap: %+v %v", res, err)
	}
	caPEM, err := hosts["master01"].ReadFile(ctx, "/etc/kubernetes/pki/etcd/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certs.ParseCA(caPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range hosts {
		if _, err := h.Stat(ctx, "/etc/kubernetes/pki/etcd/ca.key"); (name == "master01") != (err == nil) {
			t.Errorf("%s: etcd CA key present=%v; only master01 may hold it", name, err == nil)
		}
		if got, _ := h.ReadFile(ctx, "/etc/kubernetes/pki/etcd/ca.crt"); !bytes.Equal(got, caPEM) {
			t.Errorf("%s: another etcd CA", name)
		}
		peerPEM, _ := h.ReadFile(ctx, "/etc/kubernetes/pki/etcd/peer.crt")
		peer, err := certs.ParseCertPEM(peerPEM)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := ca.Verify(peer, peer.NotBefore.Add(10*time.Minute)); err != nil || peer.Subject.CommonName != name {
			t.Errorf("%s: peer certificate CN %q: %v", name, peer.Subject.CommonName, err)
		}
		cfg, _ := h.ReadFile(ctx, ConfigPath)
		v, _ := configValues(cfg)
		if v["initial-cluster-state"] != "new" || !strings.Contains(v["initial-cluster"].(string), "node02=https://192.168.161.153:2380") {
			t.Errorf("%s: initial cluster %v (%v)", name, v["initial-cluster"], v["initial-cluster-state"])
		}
	}
	// Targets that are not the config's etcd hosts are refused up front.
	_, err = Bootstrap(ctx, BootstrapOptions{Cluster: c, Targets: targets[:2], CertDir: "/etc/kubernetes/pki", BundleDir: fakeBundle(t, "etcd")})
	if err == nil || !strings.Contains(err.Error(), "not the configuration's etcd hosts") {
		t.Errorf("two of three targets: %v", err)
	}
}
