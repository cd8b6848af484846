package preflight

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// Env is what the checks of one run share: the cluster, the node being checked,
// the effective security settings and the host's OS configurer.
type Env struct {
	Cluster  *config.Cluster
	Node     *config.Host
	Firewall config.FirewallMode
	SELinux  config.SELinuxMode
	Now      func() time.Time
	// DryRun: fixes are recorded, not made, so they must not wait for effects.
	DryRun bool
	// syncWait bounds how long the TimeSync fix waits for chrony to settle.
	syncWait time.Duration

	// OS is the host's configurer; nil when the distribution is not one kubeforge
	// knows how to manage (OSErr says why).
	OS    Configurer
	OSErr error
}

// NewEnv settles the effective settings: options override spec.security.
func NewEnv(cluster *config.Cluster, node *config.Host, opts Options) (*Env, error) {
	e := &Env{Cluster: cluster, Node: node, Firewall: cluster.Spec.Security.Firewall, SELinux: cluster.Spec.Security.SELinux, Now: opts.Now, DryRun: opts.DryRun}
	if opts.Firewall != "" {
		e.Firewall = opts.Firewall
	}
	if opts.SELinux != "" {
		e.SELinux = opts.SELinux
	}
	if e.Firewall == "" {
		e.Firewall = config.DefaultFirewall
	}
	if e.SELinux == "" {
		e.SELinux = config.DefaultSELinux
	}
	switch e.Firewall {
	case config.FirewallDisable, config.FirewallOpenPorts:
	default:
		return nil, fmt.Errorf("firewall mode %q: must be %q or %q", e.Firewall, config.FirewallDisable, config.FirewallOpenPorts)
	}
	switch e.SELinux {
	case config.SELinuxDisabled, config.SELinuxPermissive, config.SELinuxEnforcingKeep:
	default:
		return nil, fmt.Errorf("selinux mode %q: must be %q, %q or %q", e.SELinux, config.SELinuxDisabled, config.SELinuxPermissive, config.SELinuxEnforcingKeep)
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	e.syncWait = waitForSync
	return e, nil
}

// Detect (re)reads the host's /etc/os-release and picks its configurer.
func (e *Env) Detect(ctx context.Context, h host.Host) {
	e.OS, e.OSErr = Detect(ctx, h)
}

// configurer returns the OS configurer or the error a check reports when there is
// none.
func (e *Env) configurer() (Configurer, error) {
	if e.OS == nil {
		return nil, fmt.Errorf("cannot run on an unsupported OS (see the OS check): %v", e.OSErr)
	}
	return e.OS, nil
}

// backupSuffix names backups of files a fix rewrites: one per change, so a second
// fix never overwrites the pristine copy of the first.
func (e *Env) backupSuffix() string {
	return ".kubeforge-bak-" + e.Now().UTC().Format("20060102T150405Z")
}

// FreshHostChecks only make sense before kubeforge first set a host up:
// afterwards its own daemons hold the ports and its own files fill
// /etc/kubernetes.
var FreshHostChecks = []string{"Ports", "LeftoverState"}

// RerunChecks is the standard list without FreshHostChecks: the checks of a
// re-run of init or join on a host they set up before, so the re-run
// converges the host instead of refusing it.
func RerunChecks(e *Env) []Checker {
	var out []Checker
	for _, c := range Checks(e) {
		if !slices.Contains(FreshHostChecks, c.Name()) {
			out = append(out, c)
		}
	}
	return out
}

// Checks is the standard list, in the order they run and fix. Order matters for
// fixes: kernel modules come before the sysctls that exist only once
// br_netfilter is loaded, and the hostname before the hosts file.
func Checks(e *Env) []Checker {
	return []Checker{
		&PrivilegedUserCheck{},
		&OSCheck{env: e},
		&CPUCheck{env: e},
		&MemCheck{env: e},
		&BinariesCheck{env: e},
		&FirewallCheck{env: e},
		&SELinuxCheck{env: e},
		&SwapCheck{env: e},
		&KernelModulesCheck{env: e},
		&SysctlsCheck{env: e},
		&HostnameCheck{env: e},
		&HostsFileCheck{env: e},
		&TimeSyncCheck{env: e},
		&PortsCheck{env: e},
		&LeftoverStateCheck{env: e},
	}
}
