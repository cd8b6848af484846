package preflight

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

const (
	modulesLoadFile = "/etc/modules-load.d/kubeforge.conf"
	sysctlFile      = "/etc/sysctl.d/99-kubeforge.conf"
)

// requiredModules: overlay for containerd's snapshotter, br_netfilter so bridged
// pod traffic passes through iptables (kube-proxy's service NAT).
var requiredModules = []string{"overlay", "br_netfilter"}

// moduleLoadDirs are read by systemd-modules-load at boot (plus Debian's
// /etc/modules).
var moduleLoadDirs = []string{"/etc/modules-load.d", "/run/modules-load.d", "/usr/lib/modules-load.d"}

// KernelModulesCheck: each module must be loaded now and load again at boot. A
// module compiled into the kernel (modules.builtin) is always there.
type KernelModulesCheck struct{ env *Env }

func (KernelModulesCheck) Name() string { return "KernelModules" }

type moduleState struct {
	loaded, builtin, atBoot bool
}

// moduleProof is a path that exists only while the module's feature is in the
// kernel: it catches modules compiled in without a /sys/module entry (no
// parameters) on kernels whose modules.builtin is not installed.
var moduleProof = map[string]string{
	"br_netfilter": "/proc/sys/net/bridge/bridge-nf-call-iptables",
}

// moduleStates works out, per required module, whether it is in the kernel now
// and whether it will be after a reboot. A module that is active but not in
// /proc/modules is compiled in: every loaded loadable module is listed there.
func moduleStates(ctx context.Context, h host.Host) (map[string]moduleState, error) {
	procModules, _, err := readOptional(ctx, h, "/proc/modules")
	if err != nil {
		return nil, err
	}
	filesystems, _, err := readOptional(ctx, h, "/proc/filesystems")
	if err != nil {
		return nil, err
	}
	release, _, err := readOptional(ctx, h, "/proc/sys/kernel/osrelease")
	if err != nil {
		return nil, err
	}
	builtin := ""
	if r := strings.TrimSpace(release); r != "" {
		if builtin, _, err = readOptional(ctx, h, path.Join("/lib/modules", r, "modules.builtin")); err != nil {
			return nil, err
		}
	}
	bootLists, err := moduleLoadLists(ctx, h)
	if err != nil {
		return nil, err
	}
	exists := func(p string) (bool, error) {
		_, err := h.Stat(ctx, p)
		if host.IsNotExist(err) {
			return false, nil
		}
		return err == nil, err
	}
	out := map[string]moduleState{}
	for _, m := range requiredModules {
		var st moduleState
		for _, l := range strings.Split(builtin, "\n") {
			// modules.builtin holds paths such as kernel/net/bridge/br_netfilter.ko;
			// module names treat - and _ alike.
			base := strings.TrimSuffix(path.Base(strings.TrimSpace(l)), ".ko")
			if base != "" && normModule(base) == normModule(m) {
				st.builtin = true
			}
		}
		inProc := false
		for _, l := range strings.Split(procModules, "\n") {
			if f := strings.Fields(l); len(f) > 0 && normModule(f[0]) == normModule(m) {
				inProc = true
			}
		}
		for _, l := range strings.Split(filesystems, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[len(f)-1] == m {
				st.loaded = true // overlay registers the "overlay" filesystem
			}
		}
		if ok, err := exists("/sys/module/" + m); err != nil {
			return nil, err
		} else if ok {
			st.loaded = true
		}
		if p := moduleProof[m]; p != "" {
			if ok, err := exists(p); err != nil {
				return nil, err
			} else if ok {
				st.loaded = true
			}
		}
		st.builtin = st.builtin || (st.loaded && !inProc)
		st.loaded = st.loaded || inProc || st.builtin
		for _, l := range strings.Split(bootLists, "\n") {
			if t := strings.TrimSpace(l); t != "" && normModule(t) == normModule(m) {
				st.atBoot = true
			}
		}
		st.atBoot = st.atBoot || st.builtin
		out[m] = st
	}
	return out, nil
}

func normModule(s string) string { return strings.ReplaceAll(s, "-", "_") }

// moduleLoadLists concatenates the module lists read at boot, without comments.
func moduleLoadLists(ctx context.Context, h host.Host) (string, error) {
	var files []string
	for _, d := range moduleLoadDirs {
		names, err := listDir(ctx, h, d)
		if err != nil {
			return "", err
		}
		for _, n := range names {
			if strings.HasSuffix(n, ".conf") {
				files = append(files, path.Join(d, n))
			}
		}
	}
	files = append(files, "/etc/modules")
	var b strings.Builder
	for _, f := range files {
		data, _, err := readOptional(ctx, h, f)
		if err != nil {
			return "", err
		}
		for _, l := range strings.Split(data, "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") && !strings.HasPrefix(t, ";") {
				b.WriteString(strings.Fields(t)[0] + "\n")
			}
		}
	}
	return b.String(), nil
}

// listDir lists a directory's entries; a missing directory is empty.
func listDir(ctx context.Context, h host.Host, d string) ([]string, error) {
	fi, err := h.Stat(ctx, d)
	if host.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, nil
	}
	out, err := runRO(ctx, h, "ls", "-A", "--", d)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

func (c KernelModulesCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	states, err := moduleStates(ctx, h)
	if err != nil {
		return nil, []error{err}
	}
	for _, m := range requiredModules {
		st := states[m]
		switch {
		case !st.loaded:
			errs = append(errs, errorf("kernel module %s is not loaded: modprobe %s and list it in %s", m, m, modulesLoadFile))
		case !st.atBoot:
			warns = append(warns, errorf("kernel module %s is loaded but not listed in any modules-load.d file: it will be missing after a reboot", m))
		}
	}
	return warns, errs
}

func (KernelModulesCheck) FixDescription() string {
	return "write " + modulesLoadFile + " (" + strings.Join(requiredModules, ", ") + ") and modprobe the missing modules"
}

func (c KernelModulesCheck) Fix(ctx context.Context, h host.Host) error {
	content := "# Written by kubeforge preflight: kernel modules Kubernetes networking needs.\n" + strings.Join(requiredModules, "\n") + "\n"
	if err := h.WriteFile(ctx, modulesLoadFile, []byte(content), host.WriteOptions{Mode: 0o644}); err != nil {
		return err
	}
	states, err := moduleStates(ctx, h)
	if err != nil {
		return err
	}
	for _, m := range requiredModules {
		if !states[m].loaded {
			if _, err := host.MustRun(ctx, h, "modprobe", m); err != nil {
				return err
			}
		}
	}
	return nil
}

// requiredSysctls must be 1: forwarding for pod traffic, and bridged traffic
// through iptables for kube-proxy (both address families).
var requiredSysctls = []string{
	"net.ipv4.ip_forward",
	"net.bridge.bridge-nf-call-iptables",
	"net.bridge.bridge-nf-call-ip6tables",
}

// SysctlsCheck: the running values must be 1, and the boot-time configuration
// must keep them so. Of the files kubeforge can reason about, /etc/sysctl.conf is
// applied after /etc/sysctl.d/99-kubeforge.conf (it sorts as 99-sysctl.conf), so
// a 0 there wins at boot.
type SysctlsCheck struct{ env *Env }

func (SysctlsCheck) Name() string { return "Sysctls" }

func procSysPath(key string) string { return "/proc/sys/" + strings.ReplaceAll(key, ".", "/") }

// sysctlAssignments returns key -> value of a sysctl.conf-format file.
func sysctlAssignments(content string) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(content, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(t, "-"), "=")
		if ok {
			out[strings.ReplaceAll(strings.TrimSpace(k), "/", ".")] = strings.TrimSpace(v)
		}
	}
	return out
}

func (c SysctlsCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	ours, _, err := readOptional(ctx, h, sysctlFile)
	if err != nil {
		return nil, []error{err}
	}
	etc, _, err := readOptional(ctx, h, "/etc/sysctl.conf")
	if err != nil {
		return nil, []error{err}
	}
	oursA, etcA := sysctlAssignments(ours), sysctlAssignments(etc)
	for _, k := range requiredSysctls {
		v, exists, err := readOptional(ctx, h, procSysPath(k))
		switch {
		case err != nil:
			errs = append(errs, err)
			continue
		case !exists:
			errs = append(errs, errorf("%s does not exist: load the br_netfilter module (see KernelModules)", k))
			continue
		case strings.TrimSpace(v) != "1":
			errs = append(errs, errorf("%s is %s, must be 1: set it in %s and apply it", k, strings.TrimSpace(v), sysctlFile))
			continue
		}
		switch ev, set := etcA[k]; {
		case set && ev != "1":
			warns = append(warns, errorf("/etc/sysctl.conf sets %s = %s, which wins at boot over %s: remove that line", k, ev, sysctlFile))
		case !set && oursA[k] != "1":
			warns = append(warns, errorf("%s is 1 now but not set in %s: a reboot may reset it", k, sysctlFile))
		}
	}
	return warns, errs
}

func (SysctlsCheck) FixDescription() string {
	return "write " + sysctlFile + " (" + strings.Join(requiredSysctls, "=1, ") + "=1) and apply it with sysctl -p"
}

func sysctlContent() string {
	var b strings.Builder
	b.WriteString("# Written by kubeforge preflight: kernel settings Kubernetes networking needs.\n")
	for _, k := range requiredSysctls {
		fmt.Fprintf(&b, "%s = 1\n", k)
	}
	return b.String()
}

func (c SysctlsCheck) Fix(ctx context.Context, h host.Host) error {
	if err := h.WriteFile(ctx, sysctlFile, []byte(sysctlContent()), host.WriteOptions{Mode: 0o644}); err != nil {
		return err
	}
	// Only this file: `sysctl --system` would also re-apply /etc/sysctl.conf, which
	// is the operator's, and may hold the very 0 being fixed.
	_, err := host.MustRun(ctx, h, "sysctl", "-p", sysctlFile)
	return err
}
