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
// Every test brings up a lab of its own on its own subnet, so tests run side
// by side: each lab test calls t.Parallel(), and -parallel (GOMAXPROCS, two on
// the CI machine) bounds how many labs run at once. One after another, the
// suite outgrew go test's 60-minute timeout on a 2-core machine (about an hour
// of labs that mostly wait on systemd, etcd and the API); two at a time it
// takes about half, and every wait in the tests has a deadline sized for a
// loaded machine.
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
