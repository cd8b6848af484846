package containerd_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/components/containerd"
	"github.com/kubeforge/kubeforge/components/containerd/containerdtest"
	"github.com/kubeforge/kubeforge/components/hostenv"
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
	s := containerd.SettingsFor(containerd.Environment{Environment: hostenv.Environment{CgroupVersion: 1, SystemdCgroups: true, Container: "systemd-nspawn"}, StateFS: "overlayfs"},
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

// TestFootprintCoversWhatContainerdCreates has the bundle's containerd print the
// effective configuration kubeforge writes and checks that every directory it
// creates at start — root, state, the socket's, the opt plugin's, the NRI
// socket's — is one reset removes (a Footprint path or below one), and that the
// CRI plugin's fixed network namespace directory is one reset removes once
// empty. A host reset after a join must not keep /opt/containerd or /run/nri.
func TestFootprintCoversWhatContainerdCreates(t *testing.T) {
	bdir := containerdtest.BundleDir()
	bin := filepath.Join(bdir, "bin", "containerd")
	if _, err := os.Stat(bin); bdir == "" || err != nil {
		t.Skip("no bundle with bin/containerd")
	}
	s := containerd.SettingsFor(containerd.Environment{Environment: hostenv.Environment{CgroupVersion: 2, SystemdCgroups: true}}, "kubeforge.local/pause:3.10", "/usr/local/bin")
	cfg, err := containerd.RenderConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--config", p, "config", "dump").CombinedOutput()
	if err != nil {
		t.Fatalf("config dump: %v\n%s", err, out)
	}
	// key -> the directory containerd creates for it.
	created := map[string]string{}
	section := ""
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, " = ")
		if !ok {
			continue
		}
		v = strings.Trim(v, "'\"")
		switch {
		case section == "" && (k == "root" || k == "state"):
			created[k] = v
		case section == "[grpc]" && k == "address":
			created["grpc address"] = filepath.Dir(v)
		case section == "[plugins.'io.containerd.internal.v1.opt']" && k == "path":
			created["opt path"] = v
		case section == "[plugins.'io.containerd.nri.v1.nri']" && k == "socket_path":
			created["nri socket_path"] = filepath.Dir(v)
		}
	}
	if len(created) != 5 {
		t.Fatalf("found %v in the effective config, want root, state, grpc address, opt path and nri socket_path:\n%s", created, out)
	}
	covered := func(dir string) bool {
		dir = strings.Replace(dir, "/var/run/", "/run/", 1)
		for _, p := range containerd.Footprint.Paths {
			if dir == p || strings.HasPrefix(dir, p+"/") {
				return true
			}
		}
		return false
	}
	for k, dir := range created {
		if !covered(dir) {
			t.Errorf("containerd creates %s (%s), which reset does not remove: Footprint.Paths %v", dir, k, containerd.Footprint.Paths)
		}
	}
	if !slices.Contains(containerd.Footprint.EmptyDirs, containerd.NetnsDir) {
		t.Errorf("reset does not remove the CRI plugin's %s once empty: Footprint.EmptyDirs %v", containerd.NetnsDir, containerd.Footprint.EmptyDirs)
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
