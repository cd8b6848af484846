package local_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/internal/unitcheck"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
	kfssh "github.com/kubeforge/kubeforge/bootstrap/host/ssh"
	"github.com/kubeforge/kubeforge/bootstrap/lab"
)

// insideEnv marks a run of this test binary inside a lab machine.
const insideEnv = "KUBEFORGE_E2E_INSIDE"

// TestLabLocalUnits runs the local host's unit code against a real systemd: this
// machine has none as PID 1, so the test binary copies itself into a lab machine over
// SSH and runs TestInsideLocalUnits there.
func TestLabLocalUnits(t *testing.T) {
	if os.Getenv(insideEnv) != "" {
		t.Skip("already inside")
	}
	dir := unitcheck.LabDir(t)
	st, err := lab.LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Hosts) == 0 {
		t.Fatalf("lab %s has no hosts", dir)
	}
	lh := st.Hosts[0]
	h, err := kfssh.New(kfssh.Config{Name: lh.Name, Address: lh.Address,
		KeyFiles: []string{filepath.Join(dir, "id_ed25519")}, KnownHostsPath: filepath.Join(dir, "known_hosts")})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := "/tmp/kubeforge-local-e2e.test"
	if err := h.WriteFile(ctx, bin, self, host.WriteOptions{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	defer h.Remove(context.Background(), bin)
	r, err := h.Run(ctx, host.Cmd{Argv: []string{bin, "-test.run=^TestInsideLocalUnits$", "-test.v", "-test.count=1"},
		Env: []string{insideEnv + "=1"}})
	if err != nil {
		t.Fatal(err)
	}
	out := string(r.Stdout) + string(r.Stderr)
	t.Logf("inside %s:\n%s", lh.Name, out)
	if r.ExitCode != 0 || !strings.Contains(out, "--- PASS: TestInsideLocalUnits") {
		t.Fatalf("local unit test inside %s failed (exit %d)", lh.Name, r.ExitCode)
	}
}

// TestInsideLocalUnits is the half that runs inside the lab machine.
func TestInsideLocalUnits(t *testing.T) {
	if os.Getenv(insideEnv) == "" {
		t.Skip("runs only inside a lab machine (started by TestLabLocalUnits)")
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		t.Fatalf("no systemd here: %v", err)
	}
	h := local.New(local.Options{})
	defer h.Close()
	unitcheck.Lifecycle(t, h)
}
