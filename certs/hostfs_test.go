package certs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/host/dryrun"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
)

// TestHostFS drives the PKI through host.Host: a dry run plans every file with
// key material marked secret and writes nothing; the local host writes the same
// tree a LocalFS run accepts unchanged.
func TestHostFS(t *testing.T) {
	now := fixedNow()
	p := newTestPKI(t, seedSpec(ECDSAP256), now)
	dry := dryrun.New(local.New(local.Options{Name: "master01", UnitDir: t.TempDir()}), dryrun.Options{})
	p.FS = HostFS{Ctx: context.Background(), Host: dry}
	if err := p.CreateAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.CertDir); !os.IsNotExist(err) {
		t.Fatal("dry run created the cert dir")
	}
	plan := dry.Plan()
	secret := map[string]bool{}
	for _, a := range plan {
		if a.Kind == dryrun.WriteFile {
			secret[a.Path] = a.Secret
		}
	}
	if len(secret) != 4*2+2+8*2+6 { // 4 CAs, sa, 8 leaves, 6 kubeconfigs
		t.Errorf("dry run planned %d files", len(secret))
	}
	for path, s := range secret {
		wantSecret := strings.HasSuffix(path, ".key") || strings.HasSuffix(path, ".conf") || strings.HasSuffix(path, ".pub")
		if s != wantSecret {
			t.Errorf("%s: secret=%v", path, s)
		}
	}
	var printed bytes.Buffer
	dry.PrintPlan(&printed)
	if strings.Contains(printed.String(), "PRIVATE KEY") {
		t.Error("the printed dry-run plan shows private key material")
	}

	real := local.New(local.Options{Name: "master01", UnitDir: t.TempDir()})
	p.FS = HostFS{Host: real}
	if err := p.CreateAll(); err != nil {
		t.Fatal(err)
	}
	st := snapshot(t, p.root)
	if st["pki/ca.key"].mode != 0o600 || st["pki/ca.crt"].mode != 0o644 || st["admin.conf"].mode != 0o600 || st["pki/etcd"].mode.Perm() != 0o755 {
		t.Errorf("modes through host.Host: %v %v %v %v", st["pki/ca.key"].mode, st["pki/ca.crt"].mode, st["admin.conf"].mode, st["pki/etcd"].mode)
	}
	p.FS = nil
	if err := p.CreateAll(); err != nil {
		t.Fatal(err)
	}
	assertUnchanged(t, st, p.root)
	if _, err := os.Stat(filepath.Join(p.CertDir, "sa.pub")); err != nil {
		t.Error(err)
	}
}
