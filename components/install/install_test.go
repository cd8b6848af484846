package install

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/bootstrap/host/dryrun"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
)

// newBundle writes a bundle with the given bin/ files and its manifest.
func newBundle(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	versions := map[string]string{}
	for name, content := range files {
		p := filepath.Join(dir, "bin", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		versions["bin/"+name] = "v1.34.4"
	}
	if _, err := bundle.WriteManifest(dir, "v1.34.4", "v3.6.16", versions); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBinariesInstallsOnceAndReplacesChanged(t *testing.T) {
	ctx := context.Background()
	b := newBundle(t, map[string]string{"kube-apiserver": "#!/bin/sh\necho apiserver\n", "kubectl": "#!/bin/sh\necho kubectl\n"})
	binDir := t.TempDir()
	h := local.New(local.Options{Name: "master01", UnitDir: t.TempDir()})
	var logged []string
	o := Options{Host: h, BundleDir: b, BinDir: binDir, Logf: func(f string, a ...any) { logged = append(logged, f) }}

	res, err := Binaries(ctx, o, "kube-apiserver", "kubectl")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Installed, []string{"kube-apiserver", "kubectl"}) || len(res.Unchanged) != 0 || !res.Changed() {
		t.Fatalf("first run: %+v", res)
	}
	fi, err := os.Stat(filepath.Join(binDir, "kube-apiserver"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("installed file: %v %v", fi, err)
	}
	before := fi.ModTime()

	res, err = Binaries(ctx, o, "kube-apiserver", "kubectl")
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed() || len(res.Unchanged) != 2 {
		t.Fatalf("rerun: %+v", res)
	}
	if fi, _ := os.Stat(filepath.Join(binDir, "kube-apiserver")); !fi.ModTime().Equal(before) {
		t.Error("rerun rewrote an identical binary")
	}

	// Someone replaced the installed binary: same size, other content.
	if err := os.WriteFile(filepath.Join(binDir, "kubectl"), []byte("#!/bin/sh\necho KUBECTL\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	res, err = Binaries(ctx, o, "kube-apiserver", "kubectl")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Installed, []string{"kubectl"}) {
		t.Fatalf("after tampering: %+v", res)
	}
	if got, _ := os.ReadFile(filepath.Join(binDir, "kubectl")); string(got) != "#!/bin/sh\necho kubectl\n" {
		t.Errorf("kubectl not restored: %q", got)
	}
}

func TestBadChecksumChangesNothing(t *testing.T) {
	ctx := context.Background()
	b := newBundle(t, map[string]string{"kube-apiserver": "apiserver-binary", "kube-scheduler": "scheduler-binary"})
	// Corrupt the second binary after the manifest was written.
	if err := os.WriteFile(filepath.Join(b, "bin", "kube-scheduler"), []byte("SCHEDULER-binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	binDir := filepath.Join(t.TempDir(), "bin")
	h := local.New(local.Options{Name: "master01", UnitDir: t.TempDir()})
	_, err := Binaries(ctx, Options{Host: h, BundleDir: b, BinDir: binDir}, "kube-apiserver", "kube-scheduler")
	var mm *bundle.MismatchError
	if !errors.As(err, &mm) || mm.Path != "bin/kube-scheduler" || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("err = %v, want a mismatch naming bin/kube-scheduler", err)
	}
	// The good binary, listed first, must not have been installed either.
	if _, err := os.Stat(binDir); !os.IsNotExist(err) {
		t.Errorf("bin dir exists after a refused bundle: %v", err)
	}
}

func TestMissingBinaryNamed(t *testing.T) {
	b := newBundle(t, map[string]string{"kube-apiserver": "x"})
	_, err := Verify(b, "kube-apiserver", "kube-controller-manager")
	if err == nil || !strings.Contains(err.Error(), "bin/kube-controller-manager") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Verify(t.TempDir(), "kubectl"); err == nil || !strings.Contains(err.Error(), "--bundle") {
		t.Fatalf("no manifest: %v", err)
	}
	if _, err := Verify(b, "../etc/passwd"); err == nil {
		t.Fatal("accepted a path as a binary name")
	}
}

func TestDryRunRecordsOnly(t *testing.T) {
	ctx := context.Background()
	b := newBundle(t, map[string]string{"kubectl": "kubectl-binary"})
	binDir := filepath.Join(t.TempDir(), "bin")
	dry := dryrun.New(local.New(local.Options{Name: "master01", UnitDir: t.TempDir()}), dryrun.Options{})
	res, err := Binaries(ctx, Options{Host: dry, BundleDir: b, BinDir: binDir}, "kubectl")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed() {
		t.Fatal("dry run on an empty host reports nothing to install")
	}
	if _, err := os.Stat(binDir); !os.IsNotExist(err) {
		t.Fatal("dry run wrote to the host")
	}
	plan := dry.Plan()
	if len(plan) != 1 || plan[0].Kind != dryrun.WriteFile || plan[0].Path != filepath.Join(binDir, "kubectl") || plan[0].Mode != 0o755 {
		t.Fatalf("plan %+v", plan)
	}
	// The planned file is seen by later reads of the same dry run: a second
	// install in the same run has nothing left to do.
	res, err = Binaries(ctx, Options{Host: dry, BundleDir: b, BinDir: binDir}, "kubectl")
	if err != nil || res.Changed() {
		t.Fatalf("second dry-run install: %+v %v", res, err)
	}
}

// TestRerunReadsOnlyWhatItWrites: binaries already in place are not read from
// the bundle, so a rerun does not hash 300 MB; a binary that must be replaced is
// still verified before anything is written.
func TestRerunReadsOnlyWhatItWrites(t *testing.T) {
	ctx := context.Background()
	b := newBundle(t, map[string]string{"kube-apiserver": "apiserver-binary", "kubectl": "kubectl-binary"})
	binDir := t.TempDir()
	h := local.New(local.Options{Name: "master01", UnitDir: t.TempDir()})
	o := Options{Host: h, BundleDir: b, BinDir: binDir}
	if _, err := Binaries(ctx, o, "kube-apiserver", "kubectl"); err != nil {
		t.Fatal(err)
	}
	// The bundle's copy rots after the install; the host is still right.
	if err := os.WriteFile(filepath.Join(b, "bin", "kubectl"), []byte("KUBECTL-binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(ctx, o, "kube-apiserver", "kubectl")
	if err != nil || len(p.Install) != 0 {
		t.Fatalf("converged host: plan %+v, err %v", p, err)
	}
	// Now the installed kubectl differs too, so the rotten copy would be needed.
	if err := os.WriteFile(filepath.Join(binDir, "kubectl"), []byte("other"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPlan(ctx, o, "kube-apiserver", "kubectl"); err == nil || !strings.Contains(err.Error(), "bin/kubectl does not match") {
		t.Fatalf("rotten bundle file needed for an install: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(binDir, "kubectl")); string(got) != "other" {
		t.Error("a refused plan wrote the binary")
	}
}
