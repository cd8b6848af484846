package preflight

import (
	"context"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

const selinuxConfig = "/etc/selinux/config"

// SELinuxCheck: the upstream binaries ship without an SELinux policy, so an
// enforcing SELinux denies etcd and the kubelet in ways that surface far from
// the cause. No getenforce (Debian/Ubuntu use AppArmor) or a kernel without
// SELinux ("Disabled") passes.
type SELinuxCheck struct{ env *Env }

func (SELinuxCheck) Name() string { return "SELinux" }

// state returns getenforce's answer ("" when SELinux tools are absent) and the
// SELINUX= value of /etc/selinux/config ("" when unset or missing).
func (c SELinuxCheck) state(ctx context.Context, h host.Host) (runtime, boot string, err error) {
	p, err := lookPath(ctx, h, "getenforce")
	if err != nil || p == "" {
		return "", "", err
	}
	out, err := runRO(ctx, h, p)
	if err != nil {
		return "", "", err
	}
	conf, _, err := readOptional(ctx, h, selinuxConfig)
	if err != nil {
		return "", "", err
	}
	return strings.ToLower(strings.TrimSpace(out)), strings.ToLower(confValue(conf, "SELINUX")), nil
}

func (c SELinuxCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	runtime, boot, err := c.state(ctx, h)
	if err != nil {
		return nil, []error{err}
	}
	if runtime == "" || runtime == "disabled" {
		return nil, nil
	}
	if c.env.SELinux == config.SELinuxEnforcingKeep {
		if runtime == "enforcing" {
			return []error{errorf("SELinux is enforcing and kept so (security.selinux=enforcing-keep): make sure a policy covers the kubeforge binaries and paths")}, nil
		}
		return nil, nil
	}
	if runtime == "enforcing" {
		errs = append(errs, errorf("SELinux is enforcing: the upstream binaries have no policy and will be denied; set it to %s (security.selinux)", c.env.SELinux))
	}
	if boot == "enforcing" || boot == "" {
		errs = append(errs, errorf("%s has SELINUX=%s: SELinux would enforce again after a reboot; set SELINUX=%s", selinuxConfig, orUnset(boot), c.env.SELinux))
	}
	return nil, errs
}

func orUnset(s string) string {
	if s == "" {
		return "(unset)"
	}
	return s
}

func (c SELinuxCheck) FixDescription() string {
	if c.env.SELinux == config.SELinuxEnforcingKeep {
		return ""
	}
	return "setenforce 0 and set SELINUX=" + string(c.env.SELinux) + " in " + selinuxConfig + " (backup kept)"
}

func (c SELinuxCheck) Fix(ctx context.Context, h host.Host) error {
	if c.env.SELinux == config.SELinuxEnforcingKeep {
		return nil
	}
	runtime, boot, err := c.state(ctx, h)
	if err != nil || runtime == "" || runtime == "disabled" {
		return err
	}
	if runtime == "enforcing" {
		if _, err := host.MustRun(ctx, h, "setenforce", "0"); err != nil {
			return err
		}
	}
	want := string(c.env.SELinux)
	if boot != want && (boot == "enforcing" || boot == "") {
		old, exists, err := readOptional(ctx, h, selinuxConfig)
		if err != nil {
			return err
		}
		if exists {
			if _, err := backup(ctx, h, selinuxConfig, c.env.backupSuffix(), []byte(old)); err != nil {
				return err
			}
		}
		if err := h.WriteFile(ctx, selinuxConfig, []byte(setSELinuxLine(old, want)), host.WriteOptions{Mode: 0o644}); err != nil {
			return err
		}
	}
	if c.env.SELinux == config.SELinuxDisabled && c.env.OS != nil {
		for _, argv := range c.env.OS.SELinuxDisableCmds() {
			if _, err := host.MustRun(ctx, h, argv...); err != nil {
				return err
			}
		}
	}
	return nil
}

// setSELinuxLine replaces every active SELINUX= line (not SELINUXTYPE=) and keeps
// the rest of the file, comments included; it appends one when there is none.
func setSELinuxLine(content, mode string) string {
	lines := strings.Split(strings.TrimSuffix(content, "\n"), "\n")
	if content == "" {
		lines = nil
	}
	found := false
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "SELINUX=") {
			lines[i] = "SELINUX=" + mode
			found = true
		}
	}
	if !found {
		lines = append(lines, "SELINUX="+mode)
	}
	return strings.Join(lines, "\n") + "\n"
}
