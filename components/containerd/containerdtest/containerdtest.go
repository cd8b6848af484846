// Package containerdtest runs the bundle's real containerd for tests: a private
// daemon with its root, state and socket under a test's temp dir, in its own
// mount namespace (the snapshotter's mounts never touch the machine's), with the
// config kubeforge itself renders.
package containerdtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"

	"github.com/kubeforge/kubeforge/components/containerd"
)

// BundleDir is the bundle tests use: $KUBEFORGE_BUNDLE or the default build
// location; "" when neither has a manifest.
func BundleDir() string {
	dir := os.Getenv("KUBEFORGE_BUNDLE")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache/kubeforge/bundles/v1.34.4-v3.6.16")
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		return ""
	}
	return dir
}

// Daemon is a running private containerd.
type Daemon struct {
	Dir         string
	Socket      string
	Snapshotter string
	Settings    containerd.Settings
	Client      *client.Client
	log         *bytes.Buffer
}

// Log is the daemon's output so far.
func (d *Daemon) Log() string { return d.log.String() }

// Start runs the bundle's containerd until the test ends, or skips the test when
// there is no bundle with containerd or the test does not run as root.
func Start(t testing.TB) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a real containerd needs root")
	}
	bdir := BundleDir()
	bin := filepath.Join(bdir, "bin", "containerd")
	if _, err := os.Stat(bin); bdir == "" || err != nil {
		t.Skip("no bundle with bin/containerd (hack/build-bundle.sh builds one; set KUBEFORGE_BUNDLE)")
	}
	// Short paths: a unix socket path is limited to 108 bytes.
	dir, err := os.MkdirTemp("", "kf-ctd-")
	if err != nil {
		t.Fatal(err)
	}
	s := containerd.DefaultSettings("kubeforge.local/pause:3.10", filepath.Join(bdir, "bin"))
	s.Root, s.State, s.Address = filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "sock")
	// native works on every filesystem a temp dir may be on, overlay included.
	s.Snapshotter = "native"
	s.CNIConfDir = filepath.Join(dir, "net.d")
	cfg, err := containerd.RenderConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Dir: dir, Socket: s.Address, Snapshotter: s.Snapshotter, Settings: s, log: &bytes.Buffer{}}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = d.log, d.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.Client != nil {
			d.Client.Close()
		}
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		os.RemoveAll(dir)
	})
	c, err := client.New(s.Address, client.WithDefaultNamespace(containerd.Namespace))
	if err != nil {
		t.Fatal(err)
	}
	d.Client = c
	if _, err := containerd.WaitHealthy(context.Background(), c, s.Snapshotter, 30*time.Second); err != nil {
		t.Fatalf("private containerd: %v\n%s", err, d.Log())
	}
	return d
}
