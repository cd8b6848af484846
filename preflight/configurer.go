package preflight

import (
	"context"
	"fmt"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// Configurer is everything that differs between distribution families. Checks ask
// it instead of branching on the distribution themselves, so supporting another
// family is one new type here (the shape follows k0sctl's configurer/linux).
type Configurer interface {
	// Family is "enterpriselinux" (CentOS, RHEL, Rocky, Alma) or "debian" (Debian,
	// Ubuntu).
	Family() string
	OS() OSRelease
	// Tested reports whether kubeforge is tested on this release; note explains an
	// untested one.
	Tested() (ok bool, note string)

	// InstallCmd installs packages non-interactively.
	InstallCmd(pkgs ...string) host.Cmd
	// Package names the package that provides a binary ("conntrack" is in
	// conntrack-tools on EL).
	Package(binary string) string

	// ChronyConf, ChronyService and ChronyDriftFile are where chrony lives.
	ChronyConf() string
	ChronyService() string
	ChronyDriftFile() string

	// Firewall returns the host firewall this host runs or would run at boot (nil
	// when none is installed).
	Firewall(ctx context.Context, h host.Host) (Firewall, error)

	// MAC is the family's mandatory access control: "selinux" or "apparmor".
	MAC() string
	// SELinuxDisableCmds are what it takes, besides SELINUX=disabled in
	// /etc/selinux/config, for SELinux to be disabled after the next boot.
	SELinuxDisableCmds() [][]string
}

// Families.
const (
	FamilyEnterpriseLinux = "enterpriselinux"
	FamilyDebian          = "debian"
)

// Detect reads /etc/os-release on h and returns the configurer of its family. An
// error means kubeforge does not know how to manage the host at all (a derivative
// of a known family is accepted and reported as untested).
func Detect(ctx context.Context, h host.Host) (Configurer, error) {
	data, err := h.ReadFile(ctx, "/etc/os-release")
	if host.IsNotExist(err) {
		data, err = h.ReadFile(ctx, "/usr/lib/os-release")
	}
	if err != nil {
		return nil, fmt.Errorf("%s: reading /etc/os-release: %w", h.Name(), err)
	}
	o, err := ParseOSRelease(data)
	if err != nil {
		return nil, fmt.Errorf("%s: /etc/os-release: %w", h.Name(), err)
	}
	return ForOS(o)
}

// ForOS returns the configurer for a parsed os-release.
func ForOS(o OSRelease) (Configurer, error) {
	switch {
	case o.is("rhel", "centos", "rocky", "almalinux", "fedora"):
		return enterpriseLinux{o}, nil
	case o.is("debian", "ubuntu"):
		return debianFamily{o}, nil
	}
	return nil, fmt.Errorf("%s (ID=%s) is neither an Enterprise Linux (CentOS, RHEL, Rocky, Alma) nor a Debian/Ubuntu system", o, o.ID)
}

// enterpriseLinux is CentOS 7, RHEL 8/9 and their rebuilds.
type enterpriseLinux struct{ os OSRelease }

func (enterpriseLinux) Family() string  { return FamilyEnterpriseLinux }
func (c enterpriseLinux) OS() OSRelease { return c.os }

func (c enterpriseLinux) Tested() (bool, string) {
	m := c.os.Major()
	switch c.os.ID {
	case "centos":
		if m == 7 {
			return true, ""
		}
		return false, fmt.Sprintf("CentOS %s is not tested (CentOS 7, and RHEL, Rocky or AlmaLinux 8/9 are)", c.os.VersionID)
	case "rhel", "rocky", "almalinux":
		if m == 8 || m == 9 {
			return true, ""
		}
	}
	return false, fmt.Sprintf("%s is not tested: it is handled as an Enterprise Linux (tested: CentOS 7, RHEL/Rocky/AlmaLinux 8 and 9)", c.os)
}

// InstallCmd uses yum on EL 7 (no dnf there) and dnf from EL 8 on.
func (c enterpriseLinux) InstallCmd(pkgs ...string) host.Cmd {
	pm := "dnf"
	if m := c.os.Major(); m != 0 && m < 8 {
		pm = "yum"
	}
	return host.Cmd{Argv: append([]string{pm, "install", "-y"}, pkgs...)}
}

func (enterpriseLinux) Package(binary string) string {
	switch binary {
	case "conntrack":
		return "conntrack-tools"
	case "ip":
		return "iproute"
	case "sysctl":
		return "procps-ng"
	case "mount", "nsenter":
		return "util-linux"
	case "modprobe":
		return "kmod"
	case "chronyc", "chronyd":
		return "chrony"
	}
	return binary
}

func (enterpriseLinux) ChronyConf() string      { return "/etc/chrony.conf" }
func (enterpriseLinux) ChronyService() string   { return "chronyd.service" }
func (enterpriseLinux) ChronyDriftFile() string { return "/var/lib/chrony/drift" }
func (enterpriseLinux) MAC() string             { return "selinux" }

func (enterpriseLinux) Firewall(ctx context.Context, h host.Host) (Firewall, error) {
	if ok, err := unitInstalled(ctx, h, firewalldUnit); err != nil || !ok {
		return nil, err
	}
	return firewalld{}, nil
}

// SELinuxDisableCmds: from EL 9 on, SELINUX=disabled in /etc/selinux/config no
// longer keeps SELinux from being enabled at boot (the kernel loads it without a
// policy); the kernel argument selinux=0 does, as Red Hat documents.
func (c enterpriseLinux) SELinuxDisableCmds() [][]string {
	if c.os.Major() >= 9 {
		return [][]string{{"grubby", "--update-kernel", "ALL", "--args", "selinux=0"}}
	}
	return nil
}

// debianFamily is Debian and Ubuntu.
type debianFamily struct{ os OSRelease }

func (debianFamily) Family() string  { return FamilyDebian }
func (c debianFamily) OS() OSRelease { return c.os }

func (c debianFamily) Tested() (bool, string) {
	switch c.os.ID {
	case "debian":
		if m := c.os.Major(); m == 11 || m == 12 {
			return true, ""
		}
	case "ubuntu":
		switch c.os.VersionID {
		case "20.04", "22.04", "24.04":
			return true, ""
		}
	}
	return false, fmt.Sprintf("%s is not tested: it is handled as a Debian system (tested: Debian 11/12, Ubuntu 20.04/22.04/24.04 LTS)", c.os)
}

// InstallCmd runs apt-get without prompts; DEBIAN_FRONTEND keeps debconf from
// waiting for an answer nobody will give.
func (debianFamily) InstallCmd(pkgs ...string) host.Cmd {
	return host.Cmd{Argv: append([]string{"apt-get", "install", "-y", "--no-install-recommends"}, pkgs...),
		Env: []string{"DEBIAN_FRONTEND=noninteractive"}}
}

func (debianFamily) Package(binary string) string {
	switch binary {
	case "ip":
		return "iproute2"
	case "sysctl":
		return "procps"
	case "mount", "nsenter":
		return "util-linux"
	case "modprobe":
		return "kmod"
	case "chronyc", "chronyd":
		return "chrony"
	}
	return binary
}

func (debianFamily) ChronyConf() string      { return "/etc/chrony/chrony.conf" }
func (debianFamily) ChronyService() string   { return "chrony.service" }
func (debianFamily) ChronyDriftFile() string { return "/var/lib/chrony/chrony.drift" }
func (debianFamily) MAC() string             { return "apparmor" }

// Firewall: Ubuntu ships ufw; firewalld is packaged too and some sites use it on
// Debian (the lab hosts have it), so an installed firewalld wins.
func (debianFamily) Firewall(ctx context.Context, h host.Host) (Firewall, error) {
	if ok, err := unitInstalled(ctx, h, firewalldUnit); err != nil || ok {
		if ok {
			return firewalld{}, nil
		}
		return nil, err
	}
	if ok, err := lookPath(ctx, h, "ufw"); err != nil || ok == "" {
		return nil, err
	}
	return ufw{}, nil
}

func (debianFamily) SELinuxDisableCmds() [][]string { return nil }

// unitInstalled reports whether systemd knows the unit (its file exists).
func unitInstalled(ctx context.Context, h host.Host, unit string) (bool, error) {
	st, err := h.Units().Status(ctx, unit)
	if err != nil {
		return false, fmt.Errorf("status of %s: %w", unit, err)
	}
	return st.LoadState != "" && st.LoadState != "not-found", nil
}
