package containerd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/hostenv"
)

const pause = "kubeforge.local/pause:3.10"

// machine is a fake Debian 12 VM: cgroup v2, systemd, all capabilities, ext4.
func machine() *fakehost.Host {
	h := fakehost.New("node01")
	h.Commands["stat -f -c %T /sys/fs/cgroup"] = host.Result{Stdout: []byte("cgroup2fs\n")}
	h.Commands["stat -f -c %T /var/lib"] = host.Result{Stdout: []byte("ext2/ext3\n")}
	h.Commands["systemd-detect-virt --container"] = host.Result{Stdout: []byte("none\n"), ExitCode: 1}
	h.SetFile("/proc/1/comm", "systemd\n", 0o444)
	h.SetFile("/proc/1/status", "Name:\tsystemd\nCapInh:\t0000000000000000\nCapBnd:\t000001ffffffffff\n", 0o444)
	h.Dirs["/var/lib"] = true
	return h
}

// nspawnHost is a fake host like the lab's: a systemd-nspawn container on a
// cgroup v1 (hybrid) machine without CAP_SYS_RESOURCE.
func nspawnHost() *fakehost.Host {
	h := machine()
	h.Commands["stat -f -c %T /sys/fs/cgroup"] = host.Result{Stdout: []byte("tmpfs\n")}
	h.Commands["systemd-detect-virt --container"] = host.Result{Stdout: []byte("systemd-nspawn\n")}
	// 0x...fffeffffff: every capability but bit 24 (CAP_SYS_RESOURCE).
	h.SetFile("/proc/1/status", "CapBnd:\t000001fffeffffff\n", 0o444)
	return h
}

func TestDetect(t *testing.T) {
	ctx := context.Background()
	env, err := Detect(ctx, machine())
	if err != nil {
		t.Fatal(err)
	}
	if env != (Environment{Environment: hostenv.Environment{CgroupVersion: 2, SystemdCgroups: true, CapSysResource: true}, StateFS: "ext2/ext3"}) {
		t.Errorf("machine: %+v", env)
	}
	h := nspawnHost()
	h.Dirs[RootDir] = true
	h.Commands["stat -f -c %T "+RootDir] = host.Result{Stdout: []byte("overlayfs\n")}
	env, err = Detect(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if env != (Environment{Environment: hostenv.Environment{CgroupVersion: 1, SystemdCgroups: true, Container: "systemd-nspawn"}, StateFS: "overlayfs"}) {
		t.Errorf("nspawn host: %+v", env)
	}
	// Detect only reads.
	if c := h.Changes(); len(c) != 0 {
		t.Errorf("Detect changed the host: %v", c)
	}

	bad := machine()
	bad.SetFile("/proc/1/status", "CapBnd:\tzz\n", 0o444)
	if _, err := Detect(ctx, bad); err == nil || !strings.Contains(err.Error(), "node01") || !strings.Contains(err.Error(), "CapBnd") {
		t.Errorf("bad status: %v", err)
	}
}

func TestSettingsFor(t *testing.T) {
	plain := SettingsFor(Environment{Environment: hostenv.Environment{CgroupVersion: 2, SystemdCgroups: true, CapSysResource: true}, StateFS: "xfs"}, pause, "/usr/local/bin")
	if plain.CgroupDriver != "systemd" || plain.Snapshotter != "overlayfs" || plain.NoNewKeyring || plain.RestrictOOMScoreAdj || len(plain.Adjustments) != 0 {
		t.Errorf("plain machine: %+v", plain)
	}
	// cgroup v1 hosts (CentOS 7, RHEL 8) keep the systemd driver.
	v1 := SettingsFor(Environment{Environment: hostenv.Environment{CgroupVersion: 1, SystemdCgroups: true, CapSysResource: true}}, pause, "/usr/local/bin")
	if v1.CgroupDriver != "systemd" || len(v1.Adjustments) != 0 {
		t.Errorf("cgroup v1 machine: %+v", v1)
	}
	c := SettingsFor(Environment{Environment: hostenv.Environment{CgroupVersion: 1, SystemdCgroups: true, Container: "systemd-nspawn"}, StateFS: "overlayfs"}, pause, "/usr/local/bin")
	if !c.NoNewKeyring || !c.RestrictOOMScoreAdj || c.Snapshotter != "native" || len(c.Adjustments) != 3 {
		t.Fatalf("container: %+v", c)
	}
	all := strings.Join(c.Adjustments, "\n")
	for _, want := range []string{"systemd-nspawn container", "keyctl", "CAP_SYS_RESOURCE", "overlayfs cannot be stacked"} {
		if !strings.Contains(all, want) {
			t.Errorf("adjustments lack %q:\n%s", want, all)
		}
	}
	if d := SettingsFor(Environment{Environment: hostenv.Environment{CgroupVersion: 1, CapSysResource: true}}, pause, "/b").CgroupDriver; d != "cgroupfs" {
		t.Errorf("no systemd: driver %s", d)
	}
}

func TestRenderConfig(t *testing.T) {
	s := SettingsFor(Environment{Environment: hostenv.Environment{CgroupVersion: 1, SystemdCgroups: true, Container: "lxc"}}, pause, "/usr/local/bin")
	cfg, err := RenderConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	text := string(cfg)
	for _, want := range []string{
		"version = 3",
		"sandbox = 'kubeforge.local/pause:3.10'",
		"SystemdCgroup = true",
		"NoNewKeyring = true",
		"restrict_oom_score_adj = true",
		"BinaryName = '/usr/local/bin/runc'",
		"bin_dirs = ['/opt/cni/bin']",
		"conf_dir = '/etc/cni/net.d'",
		"imports = []",
		"# adjusted for this host: runc NoNewKeyring",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}
	for _, bad := range []func(*Settings){
		func(s *Settings) { s.CgroupDriver = "cgroupv1" },
		func(s *Settings) { s.Snapshotter = "zfs" },
		func(s *Settings) { s.SandboxImage = "x'y" },
		func(s *Settings) { s.RuncPath = "runc" },
	} {
		s := DefaultSettings(pause, "/usr/local/bin")
		bad(&s)
		if _, err := RenderConfig(s); err == nil {
			t.Errorf("%+v rendered", s)
		}
	}
}

func TestUnitLoadsOnSystemd219(t *testing.T) {
	u := Unit("/usr/local/bin")
	if err := etcd.LintUnit(u); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "Delegate=yes", "KillMode=process", "ExecStart=/usr/local/bin/containerd --config /etc/containerd/config.toml", "StartLimitInterval=0", "OOMScoreAdjust=-999"} {
		if !strings.Contains(string(u), want) {
			t.Errorf("unit lacks %s", want)
		}
	}
}

// fakeBundle writes a bundle with small stand-ins for the runtime's files.
func fakeBundle(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	versions := map[string]string{}
	for _, b := range Binaries {
		os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
		os.WriteFile(filepath.Join(dir, "bin", b), []byte("#!/bin/sh\necho "+b+"\n"), 0o755)
		versions["bin/"+b] = "v1"
	}
	for _, p := range CNIPlugins {
		os.MkdirAll(filepath.Join(dir, "cni/bin"), 0o755)
		os.WriteFile(filepath.Join(dir, "cni/bin", p), []byte("cni "+p), 0o755)
		versions["cni/bin/"+p] = "v1"
	}
	if _, err := bundle.WriteManifest(dir, "v1.34.4", "v3.6.16", versions); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestEnsureConvergesAndIsIdempotent runs Ensure as a dry run (no daemon to ask)
// against a fake host: the first run installs and starts everything, the second
// changes nothing, a changed config restarts the daemon.
func TestEnsureConvergesAndIsIdempotent(t *testing.T) {
	ctx := context.Background()
	h := nspawnHost()
	o := Options{Host: h, BundleDir: fakeBundle(t), SandboxImage: pause, DryRun: true}
	res, err := Ensure(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed {
		t.Error("first run reports no change")
	}
	ch := strings.Join(h.Changes(), "\n")
	for _, want := range []string{
		"write /usr/local/bin/containerd 0755", "write /usr/local/bin/runc 0755", "write /opt/cni/bin/bridge 0755",
		"write /etc/containerd/config.toml 0600", "unit containerd.service", "enable containerd.service", "start containerd.service",
	} {
		if !strings.Contains(ch, want) {
			t.Errorf("changes lack %q:\n%s", want, ch)
		}
	}
	if cfg := string(h.Files[ConfigPath].Data); !strings.Contains(cfg, "NoNewKeyring = true") || !strings.Contains(cfg, "SystemdCgroup = true") {
		t.Errorf("config:\n%s", cfg)
	}

	// Sums of what is "installed" are read with sha256sum on a real host; the
	// fake answers through ReadFile, which install falls back to.
	h.ResetChanges()
	res, err = Ensure(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed || len(h.Changes()) != 0 {
		t.Errorf("second run changed: %v %v", res.Changed, h.Changes())
	}

	h.SetFile(ConfigPath, "# edited by hand\n", 0o644)
	h.ResetChanges()
	if _, err := Ensure(ctx, o); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(h.Changes(), "\n"); got != "write /etc/containerd/config.toml 0600\nrestart containerd.service" {
		t.Errorf("after a config edit: %s", got)
	}
}

// TestEnsureRefusesABadBundleBeforeWriting: one tampered CNI plugin, nothing
// written at all.
func TestEnsureRefusesABadBundleBeforeWriting(t *testing.T) {
	dir := fakeBundle(t)
	os.WriteFile(filepath.Join(dir, "cni/bin/portmap"), []byte("cni portmaP"), 0o755)
	h := machine()
	_, err := Ensure(context.Background(), Options{Host: h, BundleDir: dir, SandboxImage: pause, DryRun: true})
	var mm *bundle.MismatchError
	if !errors.As(err, &mm) || mm.Path != "cni/bin/portmap" {
		t.Fatalf("error %v, want a mismatch of cni/bin/portmap", err)
	}
	if c := h.Changes(); len(c) != 0 {
		t.Errorf("host changed: %v", c)
	}
}

func TestEnsureReportsTheJournalWhenTheUnitFails(t *testing.T) {
	h := machine()
	h.StartErr[UnitName] = errors.New("job failed: failed")
	_, err := Ensure(context.Background(), Options{Host: h, BundleDir: fakeBundle(t), SandboxImage: pause, DryRun: true})
	if err == nil || !strings.Contains(err.Error(), "something went wrong") || !strings.Contains(err.Error(), "node01") {
		t.Errorf("error %v", err)
	}
}

func TestConnectRefusesRemoteHosts(t *testing.T) {
	if _, err := Connect(machine(), ""); !errors.Is(err, ErrNotLocal) {
		t.Errorf("error %v", err)
	}
}
