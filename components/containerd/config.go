package containerd

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Settings are the choices that go into /etc/containerd/config.toml.
type Settings struct {
	// Root, State and Address are containerd's data dir, runtime state dir and
	// API socket (RootDir, StateDir and Socket by default).
	Root, State, Address string
	// CgroupDriver is "systemd" or "cgroupfs"; the kubelet must use the same.
	CgroupDriver string
	// SandboxImage is the pod sandbox ("pause") image. It is pinned: the CRI
	// plugin never garbage-collects it and, being imported from the bundle,
	// never pulls it.
	SandboxImage string
	// Snapshotter is "overlayfs", or "native" where overlayfs cannot work.
	Snapshotter string
	// NoNewKeyring tells runc not to create a session keyring per container.
	NoNewKeyring bool
	// RestrictOOMScoreAdj keeps containers' oom_score_adj at or above containerd's.
	RestrictOOMScoreAdj bool
	// RuncPath is the runc binary the shim runs.
	RuncPath string
	// CNIBinDir and CNIConfDir are where the CRI plugin finds CNI plugins and
	// network configs (the overlay writes the config).
	CNIBinDir, CNIConfDir string
	// Adjustments say, one line each, which settings differ from the defaults
	// because of the host, and why. Printed by the phase; never hidden.
	Adjustments []string
}

// DefaultSettings are the settings on an ordinary machine or VM.
func DefaultSettings(sandboxImage, binDir string) Settings {
	return Settings{
		Root:         RootDir,
		State:        StateDir,
		Address:      Socket,
		CgroupDriver: "systemd",
		SandboxImage: sandboxImage,
		Snapshotter:  "overlayfs",
		RuncPath:     binDir + "/runc",
		CNIBinDir:    CNIBinDir,
		CNIConfDir:   CNIConfDir,
	}
}

// SettingsFor adapts the defaults to what Detect found. Each adjustment is a
// general property of the host (a container, a missing capability, a filesystem),
// recorded with its reason.
func SettingsFor(env Environment, sandboxImage, binDir string) Settings {
	s := DefaultSettings(sandboxImage, binDir)
	s.CgroupDriver = env.CgroupDriver()
	if s.CgroupDriver != "systemd" {
		s.Adjustments = append(s.Adjustments, "cgroup driver cgroupfs: systemd is not PID 1, so nothing else manages the cgroup tree")
	}
	if env.Container != "" {
		s.NoNewKeyring = true
		s.Adjustments = append(s.Adjustments, fmt.Sprintf("runc NoNewKeyring = true: the host is a %s container, whose seccomp filter typically refuses keyctl(2), and every container start would fail joining a new session keyring", env.Container))
	}
	if !env.CapSysResource {
		s.RestrictOOMScoreAdj = true
		s.Adjustments = append(s.Adjustments, "restrict_oom_score_adj = true: CAP_SYS_RESOURCE is not in PID 1's bounding set, so no container may lower its oom_score_adj below containerd's")
	}
	if env.StateFS == "overlayfs" {
		s.Snapshotter = "native"
		s.Adjustments = append(s.Adjustments, fmt.Sprintf("snapshotter native: %s is on overlayfs, and overlayfs cannot be stacked on overlayfs (put %s on ext4/xfs to get the faster overlayfs snapshotter)", RootDir, RootDir))
	}
	return s
}

// Validate checks the settings a config file is rendered from.
func (s Settings) Validate() error {
	switch {
	case s.CgroupDriver != "systemd" && s.CgroupDriver != "cgroupfs":
		return fmt.Errorf("containerd settings: cgroup driver %q is neither systemd nor cgroupfs", s.CgroupDriver)
	case s.Snapshotter != "overlayfs" && s.Snapshotter != "native":
		return fmt.Errorf("containerd settings: snapshotter %q is neither overlayfs nor native", s.Snapshotter)
	case s.SandboxImage == "" || strings.ContainsAny(s.SandboxImage, "'\"\n\\"):
		return fmt.Errorf("containerd settings: sandbox image %q is empty or has characters a TOML string cannot hold as-is", s.SandboxImage)
	}
	for _, p := range []string{s.Root, s.State, s.Address, s.RuncPath, s.CNIBinDir, s.CNIConfDir} {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "'\"\n\\") {
			return fmt.Errorf("containerd settings: path %q must be absolute and plain", p)
		}
	}
	return nil
}

// RenderConfig writes the containerd 2.x (config version 3) file. Only what
// kubeforge decides is set; everything else keeps containerd's defaults, so an
// upgrade of containerd brings its new defaults along.
func RenderConfig(s Settings) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	q := func(v string) string { return "'" + v + "'" }
	w("# containerd configuration, written by kubeforge; changes are overwritten.")
	for _, a := range s.Adjustments {
		w("# adjusted for this host: %s", a)
	}
	w("version = 3")
	w("root = %s", q(s.Root))
	w("state = %s", q(s.State))
	// No imports: a drop-in left in /etc/containerd/conf.d could silently override
	// what kubeforge checks here.
	w("imports = []")
	w("")
	w("[grpc]")
	w("  address = %s", q(s.Address))
	w("")
	w("[plugins.'io.containerd.cri.v1.images']")
	w("  snapshotter = %s", q(s.Snapshotter))
	w("")
	w("[plugins.'io.containerd.cri.v1.images'.pinned_images]")
	w("  sandbox = %s", q(s.SandboxImage))
	w("")
	w("[plugins.'io.containerd.cri.v1.runtime']")
	w("  restrict_oom_score_adj = %s", strconv.FormatBool(s.RestrictOOMScoreAdj))
	w("")
	w("[plugins.'io.containerd.cri.v1.runtime'.containerd]")
	w("  default_runtime_name = 'runc'")
	w("")
	w("[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]")
	w("  runtime_type = 'io.containerd.runc.v2'")
	w("")
	w("[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]")
	w("  BinaryName = %s", q(s.RuncPath))
	w("  SystemdCgroup = %s", strconv.FormatBool(s.CgroupDriver == "systemd"))
	w("  NoNewKeyring = %s", strconv.FormatBool(s.NoNewKeyring))
	w("")
	w("[plugins.'io.containerd.cri.v1.runtime'.cni]")
	w("  bin_dirs = [%s]", q(s.CNIBinDir))
	w("  conf_dir = %s", q(s.CNIConfDir))
	return b.Bytes(), nil
}
