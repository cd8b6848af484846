// Package hostenv reads the facts about a host that the node components
// configuration depends on: the cgroup hierarchy and who owns it, whether the
// host is a container, PID 1's capabilities, and the filesystem under a
// directory. Every fact comes from the host itself (read-only commands and
// files through host.Host); nothing here knows about labs.
package hostenv

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// Environment is what containerd's, the kubelet's and kube-proxy's
// configuration depend on, as found on a host.
type Environment struct {
	// CgroupVersion is 2 on a unified hierarchy, 1 on a legacy or hybrid one.
	CgroupVersion int
	// SystemdCgroups is true when systemd is PID 1 and so owns the cgroup tree.
	SystemdCgroups bool
	// Container is what `systemd-detect-virt --container` says the host runs in
	// ("systemd-nspawn", "lxc", "docker" ...), "" on a machine or VM.
	Container string
	// CapSysResource reports whether CAP_SYS_RESOURCE is in PID 1's bounding set.
	// Without it no process may lower its oom_score_adj, which runc does for
	// every container unless told not to.
	CapSysResource bool
}

// capSysResource is CAP_SYS_RESOURCE's bit in /proc/<pid>/status Cap* masks.
const capSysResource = 24

// Detect reads the host's environment through h. Commands are read-only, so a
// dry run asks the real host too.
func Detect(ctx context.Context, h host.Host) (Environment, error) {
	var env Environment
	cg, err := fsType(ctx, h, "/sys/fs/cgroup")
	if err != nil {
		return env, fmt.Errorf("%s: cgroup hierarchy: %w", h.Name(), err)
	}
	env.CgroupVersion = 1
	if cg == "cgroup2fs" {
		env.CgroupVersion = 2
	}

	comm, err := h.ReadFile(ctx, "/proc/1/comm")
	if err != nil {
		return env, fmt.Errorf("%s: reading PID 1's name: %w", h.Name(), err)
	}
	env.SystemdCgroups = strings.TrimSpace(string(comm)) == "systemd"

	// systemd-detect-virt exits 1 and prints "none" outside a container.
	r, err := h.Run(ctx, host.Cmd{Argv: []string{"systemd-detect-virt", "--container"}, ReadOnly: true})
	if err == nil {
		if v := strings.TrimSpace(string(r.Stdout)); r.OK() && v != "none" {
			env.Container = v
		}
	} else if data, rerr := h.ReadFile(ctx, "/run/systemd/container"); rerr == nil {
		// Hosts without systemd-detect-virt: systemd records the same answer here.
		env.Container = strings.TrimSpace(string(data))
	}

	status, err := h.ReadFile(ctx, "/proc/1/status")
	if err != nil {
		return env, fmt.Errorf("%s: reading PID 1's capabilities: %w", h.Name(), err)
	}
	if env.CapSysResource, err = hasCap(status, "CapBnd", capSysResource); err != nil {
		return env, fmt.Errorf("%s: /proc/1/status: %w", h.Name(), err)
	}

	return env, nil
}

// Filesystem is the filesystem type ("ext2/ext3", "xfs", "overlayfs" ...) under
// dir, or under its nearest existing parent when dir does not exist yet.
func Filesystem(ctx context.Context, h host.Host, dir string) (string, error) {
	for p := dir; ; p = path.Dir(p) {
		if _, err := h.Stat(ctx, p); err == nil {
			t, err := fsType(ctx, h, p)
			if err != nil {
				return "", fmt.Errorf("%s: filesystem of %s: %w", h.Name(), p, err)
			}
			return t, nil
		}
		if p == "/" {
			return "", nil
		}
	}
}

func fsType(ctx context.Context, h host.Host, p string) (string, error) {
	c := host.Cmd{Argv: []string{"stat", "-f", "-c", "%T", p}, ReadOnly: true}
	r, err := h.Run(ctx, c)
	if err != nil {
		return "", err
	}
	if !r.OK() {
		return "", r.Err(h.Name(), c)
	}
	return strings.TrimSpace(string(r.Stdout)), nil
}

// hasCap reads a capability mask line ("CapBnd:\t000001ffffffffff") of a
// /proc/<pid>/status file and reports whether bit is set.
func hasCap(status []byte, field string, bit uint) (bool, error) {
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != field {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return false, fmt.Errorf("%s %q is not a hex mask", field, strings.TrimSpace(v))
		}
		return mask&(1<<bit) != 0, nil
	}
	return false, fmt.Errorf("no %s line", field)
}

// CgroupDriver is the cgroup driver containerd (runc) and the kubelet must share.
//
// systemd whenever systemd is PID 1, on cgroup v1 as well as v2: systemd then
// owns the cgroup tree, and a second manager (cgroupfs) writing to the same
// hierarchy behind its back is what the kubelet documentation warns against —
// under pressure the two views diverge. kubeadm defaults to systemd since 1.22
// for the same reason, and systemd 219 (CentOS 7) supports the slices and scopes
// runc creates. cgroupfs is left for hosts where systemd is not PID 1, which
// kubeforge's units could not run on anyway.
func (e Environment) CgroupDriver() string {
	if e.SystemdCgroups {
		return "systemd"
	}
	return "cgroupfs"
}
