package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var kubeforgeBin string

// TestMain builds the kubeforge binary once, so tests drive the real CLI.
//
// Every test brings up a lab of its own on its own subnet, so tests could run
// side by side; most run one after another because on a 2-core machine two
// clusters starting at once slow each other into timeouts. The ones that
// mostly wait on a systemd timer (TestSnapshot, TestCertAutoRenew) call
// t.Parallel(): they run together after the sequential ones, at most
// -parallel (GOMAXPROCS) at a time.
func TestMain(m *testing.M) {
	if os.Getenv("KUBEFORGE_E2E") == "1" {
		dir, err := os.MkdirTemp("", "kubeforge-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		kubeforgeBin = filepath.Join(dir, "kubeforge")
		out, err := exec.Command("go", "build", "-o", kubeforgeBin, "github.com/kubeforge/kubeforge/cmd/kubeforge").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building kubeforge: %v\n%s", err, out)
			os.Exit(1)
		}
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func kubeforge(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	return exec.Command(kubeforgeBin, args...).CombinedOutput()
}
