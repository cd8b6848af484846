package preflight

import (
	"context"
	"fmt"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// Firewall is a host firewall service kubeforge knows how to turn off or open.
type Firewall interface {
	Name() string
	// State reports whether it filters now and whether it will after a reboot.
	State(ctx context.Context, h host.Host) (active, atBoot bool, err error)
	// Disable stops it now and keeps it from starting at boot.
	Disable(ctx context.Context, h host.Host) error
	// Missing returns the ports of want that are not open, both now and after a
	// reload/reboot. It is only meaningful while the firewall is active.
	Missing(ctx context.Context, h host.Host, want []PortRange) ([]PortRange, error)
	// Open opens ports permanently and in the running firewall.
	Open(ctx context.Context, h host.Host, ports []PortRange) error
}

const firewalldUnit = "firewalld.service"

// firewalld is managed through its unit and firewall-cmd, in the default zone.
// Ports opened as firewalld "services" (--add-service) are not recognised: the
// check looks at port entries only, and asks for ports kubeforge then adds.
type firewalld struct{}

func (firewalld) Name() string { return "firewalld" }

func (firewalld) State(ctx context.Context, h host.Host) (bool, bool, error) {
	st, err := h.Units().Status(ctx, firewalldUnit)
	if err != nil {
		return false, false, err
	}
	return st.Active() || st.ActiveState == "activating", st.Enabled == "enabled", nil
}

func (firewalld) Disable(ctx context.Context, h host.Host) error {
	if err := h.Units().Stop(ctx, firewalldUnit); err != nil {
		return err
	}
	return h.Units().Disable(ctx, firewalldUnit)
}

func (firewalld) Missing(ctx context.Context, h host.Host, want []PortRange) ([]PortRange, error) {
	runtime, err := firewalldPorts(ctx, h, false)
	if err != nil {
		return nil, err
	}
	permanent, err := firewalldPorts(ctx, h, true)
	if err != nil {
		return nil, err
	}
	var missing []PortRange
	for _, w := range want {
		if !anyCovers(runtime, w) || !anyCovers(permanent, w) {
			missing = append(missing, w)
		}
	}
	return missing, nil
}

func firewalldPorts(ctx context.Context, h host.Host, permanent bool) ([]PortRange, error) {
	argv := []string{"firewall-cmd", "--list-ports"}
	if permanent {
		argv = []string{"firewall-cmd", "--permanent", "--list-ports"}
	}
	out, err := runRO(ctx, h, argv...)
	if err != nil {
		return nil, err
	}
	var ports []PortRange
	for _, f := range strings.Fields(out) {
		if p, err := ParsePortRange(f); err == nil {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// Open adds the ports to the permanent configuration and reloads, so the running
// firewall and the one after a reboot are the same.
func (firewalld) Open(ctx context.Context, h host.Host, ports []PortRange) error {
	if len(ports) == 0 {
		return nil
	}
	argv := []string{"firewall-cmd", "--permanent"}
	for _, p := range ports {
		argv = append(argv, "--add-port="+p.String())
	}
	if _, err := host.MustRun(ctx, h, argv...); err != nil {
		return err
	}
	_, err := host.MustRun(ctx, h, "firewall-cmd", "--reload")
	return err
}

// ufw is Ubuntu's firewall front end. Its systemd unit is a oneshot that stays
// "active" even when ufw is disabled, so the state comes from ufw itself.
type ufw struct{}

func (ufw) Name() string { return "ufw" }

func (ufw) State(ctx context.Context, h host.Host) (bool, bool, error) {
	out, err := runRO(ctx, h, "ufw", "status")
	if err != nil {
		return false, false, err
	}
	active := strings.Contains(out, "Status: active")
	atBoot := active
	if conf, err := h.ReadFile(ctx, "/etc/ufw/ufw.conf"); err == nil {
		atBoot = confValue(string(conf), "ENABLED") == "yes"
	}
	return active, atBoot, nil
}

func (ufw) Disable(ctx context.Context, h host.Host) error {
	_, err := host.MustRun(ctx, h, "ufw", "disable")
	return err
}

// Missing reads `ufw status`: a port counts as open when a rule allows it from
// anywhere ("6443/tcp  ALLOW  Anywhere"); rules limited to a source do not count.
func (ufw) Missing(ctx context.Context, h host.Host, want []PortRange) ([]PortRange, error) {
	out, err := runRO(ctx, h, "ufw", "status")
	if err != nil {
		return nil, err
	}
	return ufw{}.missingFrom(out, want)
}

func (ufw) missingFrom(out string, want []PortRange) ([]PortRange, error) {
	var open []PortRange
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || f[1] != "ALLOW" || f[len(f)-1] != "Anywhere" {
			continue
		}
		if p, err := ParsePortRange(f[0]); err == nil {
			open = append(open, p)
		} else if !strings.Contains(f[0], "/") {
			for _, proto := range []string{"tcp", "udp"} {
				if p, err := ParsePortRange(f[0] + "/" + proto); err == nil {
					open = append(open, p)
				}
			}
		}
	}
	var missing []PortRange
	for _, w := range want {
		if !anyCovers(open, w) {
			missing = append(missing, w)
		}
	}
	return missing, nil
}

// Open adds one allow rule per port; ufw applies it at once and keeps it.
func (ufw) Open(ctx context.Context, h host.Host, ports []PortRange) error {
	for _, p := range ports {
		spec := fmt.Sprintf("%d/%s", p.From, p.Proto)
		if p.From != p.To {
			spec = fmt.Sprintf("%d:%d/%s", p.From, p.To, p.Proto)
		}
		if _, err := host.MustRun(ctx, h, "ufw", "allow", spec); err != nil {
			return err
		}
	}
	return nil
}

func anyCovers(have []PortRange, w PortRange) bool {
	for _, p := range have {
		if p.covers(w) {
			return true
		}
	}
	return false
}
