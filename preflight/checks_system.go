package preflight

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// PrivilegedUserCheck: every later phase writes /etc and manages units.
type PrivilegedUserCheck struct{}

func (PrivilegedUserCheck) Name() string { return "IsPrivilegedUser" }

func (PrivilegedUserCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	out, err := runRO(ctx, h, "id", "-u")
	if err != nil {
		return nil, []error{err}
	}
	if uid := strings.TrimSpace(out); uid != "0" {
		return nil, []error{errorf("running as uid %s: kubeforge must run as root (or over SSH as a user with password-less sudo)", uid)}
	}
	return nil, nil
}

// OSCheck reports the detected distribution. An untested release of a known
// family is a warning; a distribution kubeforge cannot manage is an error.
type OSCheck struct{ env *Env }

func (OSCheck) Name() string { return "OS" }

func (c OSCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	if c.env.OS == nil {
		return nil, []error{errorf("unsupported operating system: %v", c.env.OSErr)}
	}
	if ok, note := c.env.OS.Tested(); !ok {
		return []error{errorf("%s", note)}, nil
	}
	return nil, nil
}

// CPUCheck: the control plane needs two CPUs (kubeadm's NumCPU).
type CPUCheck struct{ env *Env }

func (CPUCheck) Name() string { return "NumCPU" }

func (c CPUCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	if !c.env.Node.HasRole(config.RoleControlPlane) {
		return nil, nil
	}
	// nproc honours the CPU affinity of the process (containers, cpusets), which
	// is what the control plane will get; /proc/cpuinfo is the fallback.
	n := 0
	if out, err := runRO(ctx, h, "nproc"); err == nil {
		n, _ = strconv.Atoi(strings.TrimSpace(out))
	}
	if n == 0 {
		data, err := h.ReadFile(ctx, "/proc/cpuinfo")
		if err != nil {
			return nil, []error{err}
		}
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "processor") {
				n++
			}
		}
	}
	if n < 2 {
		return nil, []error{errorf("the control plane needs at least 2 CPUs, this host has %d: give it more CPUs", n)}
	}
	return nil, nil
}

// MemCheck: below ~1.7 GB a control plane with etcd gets OOM-killed under load
// (kubeadm's threshold).
type MemCheck struct{ env *Env }

func (MemCheck) Name() string { return "Mem" }

const minControlPlaneMemMB = 1700

func (c MemCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	if !c.env.Node.HasRole(config.RoleControlPlane) {
		return nil, nil
	}
	data, err := h.ReadFile(ctx, "/proc/meminfo")
	if err != nil {
		return nil, []error{err}
	}
	kb := int64(-1)
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	if kb < 0 {
		return nil, []error{errorf("no MemTotal in /proc/meminfo")}
	}
	if mb := kb / 1024; mb < minControlPlaneMemMB {
		return nil, []error{errorf("the control plane needs at least %d MB of memory, this host has %d MB: give it more memory", minControlPlaneMemMB, mb)}
	}
	return nil, nil
}

// BinariesCheck: tools the components call at run time (kube-proxy runs iptables
// and conntrack, the kubelet mount and nsenter, kubeforge itself modprobe and
// sysctl). The fix installs their packages.
type BinariesCheck struct{ env *Env }

func (BinariesCheck) Name() string { return "RequiredBinaries" }

func (c BinariesCheck) binaries() []string {
	bins := []string{"iptables", "ip", "mount", "nsenter", "modprobe", "sysctl"}
	if c.env.Node.HasRole(config.RoleWorker) {
		bins = append(bins, "conntrack")
	}
	return bins
}

func (c BinariesCheck) missing(ctx context.Context, h host.Host) ([]string, error) {
	var missing []string
	for _, b := range c.binaries() {
		p, err := lookPath(ctx, h, b)
		if err != nil {
			return nil, err
		}
		if p == "" {
			missing = append(missing, b)
		}
	}
	return missing, nil
}

func (c BinariesCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	missing, err := c.missing(ctx, h)
	if err != nil {
		return nil, []error{err}
	}
	if len(missing) > 0 {
		return nil, []error{errorf("missing %s (not found in %s): install %s",
			strings.Join(missing, ", "), strings.Join(binDirs, ":"), strings.Join(c.packages(missing), " "))}
	}
	return nil, nil
}

func (c BinariesCheck) packages(bins []string) []string {
	var pkgs []string
	for _, b := range bins {
		p := b
		if c.env.OS != nil {
			p = c.env.OS.Package(b)
		}
		if !slices.Contains(pkgs, p) {
			pkgs = append(pkgs, p)
		}
	}
	return pkgs
}

func (c BinariesCheck) FixDescription() string {
	if c.env.OS == nil {
		return ""
	}
	return "install the packages that provide the missing binaries"
}

func (c BinariesCheck) Fix(ctx context.Context, h host.Host) error {
	os, err := c.env.configurer()
	if err != nil {
		return err
	}
	missing, err := c.missing(ctx, h)
	if err != nil || len(missing) == 0 {
		return err
	}
	cmd := os.InstallCmd(c.packages(missing)...)
	r, err := h.Run(ctx, cmd)
	if err != nil {
		return err
	}
	return r.Err(h.Name(), cmd)
}

// LeftoverStateCheck: a host that already carries a cluster's files would mix
// two clusters' certificates and data; `kubeforge reset` removes them.
type LeftoverStateCheck struct{ env *Env }

func (LeftoverStateCheck) Name() string { return "LeftoverState" }

func (c LeftoverStateCheck) dirs() []string {
	dirs := []string{"/etc/kubernetes"}
	if c.env.Node.HasRole(config.RoleEtcd) {
		d := c.env.Cluster.Spec.Etcd.DataDir
		if d == "" {
			d = config.DefaultEtcdDataDir
		}
		dirs = append(dirs, d)
	}
	return dirs
}

func (c LeftoverStateCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	for _, d := range c.dirs() {
		fi, err := h.Stat(ctx, d)
		if host.IsNotExist(err) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !fi.IsDir() {
			errs = append(errs, errorf("%s exists and is not a directory: remove it", d))
			continue
		}
		out, err := runRO(ctx, h, "ls", "-A", "--", d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if entries := strings.Fields(out); len(entries) > 0 {
			errs = append(errs, fmt.Errorf("%s is not empty (%s): this host holds state of an earlier installation; run `kubeforge reset` first",
				d, preview(entries, 4)))
		}
	}
	return nil, errs
}

func preview(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}
