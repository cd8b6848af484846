package containerd_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/components/containerd"
	"github.com/kubeforge/kubeforge/components/containerd/containerdtest"
)

// TestRealContainerdReadsTheConfigAsMeant renders the config for a container host
// and has the bundle's containerd parse it (`config dump` prints the effective
// configuration): every setting kubeforge makes must arrive where the CRI plugin
// reads it, under containerd's own spelling.
func TestRealContainerdReadsTheConfigAsMeant(t *testing.T) {
	bdir := containerdtest.BundleDir()
	bin := filepath.Join(bdir, "bin", "containerd")
	if _, err := os.Stat(bin); bdir == "" || err != nil {
		t.Skip("no bundle with bin/containerd")
	}
	s := containerd.SettingsFor(containerd.Environment{CgroupVersion: 1, SystemdCgroups: true, Container: "systemd-nspawn", StateFS: "overlayfs"},
		"kubeforge.local/pause:3.10", "/usr/local/bin")
	cfg, err := containerd.RenderConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(p, cfg, 0o644)
	out, err := exec.Command(bin, "--config", p, "config", "dump").CombinedOutput()
	if err != nil {
		t.Fatalf("config dump: %v\n%s", err, out)
	}
	dump := string(out)
	for _, want := range []string{
		"sandbox = 'kubeforge.local/pause:3.10'",
		"snapshotter = 'native'",
		"SystemdCgroup = true",
		"NoNewKeyring = true",
		"restrict_oom_score_adj = true",
		"BinaryName = '/usr/local/bin/runc'",
		"bin_dirs = ['/opt/cni/bin']",
		"address = '/run/containerd/containerd.sock'",
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("effective config lacks %q", want)
		}
	}
	if strings.Contains(dump, "level=warning") || strings.Contains(dump, "deprecated") {
		t.Errorf("containerd warns about the config:\n%s", dump)
	}
}

// TestCheckHealthWithRealContainerd asks a real daemon, and names a snapshotter
// that is not there.
func TestCheckHealthWithRealContainerd(t *testing.T) {
	d := containerdtest.Start(t)
	ctx := context.Background()
	h, err := containerd.CheckHealth(ctx, d.Client, d.Snapshotter)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != "v2.2.9" || h.Snapshotter != "native" {
		t.Errorf("health %+v", h)
	}
	_, err = containerd.CheckHealth(ctx, d.Client, "nosuchfs")
	if err == nil || !strings.Contains(err.Error(), "io.containerd.snapshotter.v1/nosuchfs is not loaded") {
		t.Errorf("unknown snapshotter: %v", err)
	}
}
