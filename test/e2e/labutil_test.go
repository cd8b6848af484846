package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/lab"
)

// requireBundle returns the bundle the lab hosts see. The README's test command
// always builds one, so under it a missing bundle (or a missing file in it) fails
// the test instead of skipping it: CI must not pass without its proof.
func requireBundle(t *testing.T, files ...string) string {
	t.Helper()
	d := bundleDir()
	if d == "" {
		t.Fatal("no bundle with manifest.json (hack/build-bundle.sh builds one; set KUBEFORGE_BUNDLE)")
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(d, f)); err != nil {
			t.Fatalf("bundle %s has no %s (rebuild it with hack/build-bundle.sh)", d, f)
		}
	}
	return d
}

// labFor brings up a lab of the test's own: its own directory and a subnet no
// other test uses, so tests never share hosts (KUBEFORGE_E2E_<NAME>_SUBNET
// overrides the subnet). The lab goes down when the test ends, unless
// KUBEFORGE_E2E_KEEP is set to look at it afterwards.
func labFor(t *testing.T, name, subnet, bundle string, hosts ...string) *lab.State {
	t.Helper()
	if v := os.Getenv("KUBEFORGE_E2E_" + strings.ToUpper(name) + "_SUBNET"); v != "" {
		subnet = v
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("kubeforge-e2e-%s-%d", name, os.Getpid()))
	s, err := lab.Up(lab.Options{Dir: dir, Subnet: subnet, Hosts: hosts, BundleDir: bundle, Log: testWriter{t}})
	t.Cleanup(func() {
		if os.Getenv("KUBEFORGE_E2E_KEEP") != "" {
			t.Logf("keeping the lab at %s (KUBEFORGE_E2E_KEEP); ssh -F %s/ssh_config %s", dir, dir, hosts[0])
			return
		}
		if err := lab.Down(dir, testWriter{t}); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	return s
}
