package preflight

import (
	"context"
	"fmt"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// FirewallCheck looks at the host firewall (firewalld, or ufw on Debian/Ubuntu;
// the name is kubeadm's). With security.firewall=disable (the default, as the
// classic binary-install guides do) a running or boot-enabled firewall is an
// error and the fix stops and disables it. With open-ports the firewall stays
// and the fix opens exactly the ports the host's roles need (NeededPorts).
type FirewallCheck struct{ env *Env }

func (FirewallCheck) Name() string { return "Firewalld" }

func (c FirewallCheck) wanted() ([]PortRange, map[string]string) {
	var ports []PortRange
	who := map[string]string{}
	for _, rp := range NeededPorts(c.env.Cluster, c.env.Node) {
		ports = append(ports, rp.Port)
		who[rp.Port.String()] = rp.Who
	}
	return ports, who
}

func (c FirewallCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	os, err := c.env.configurer()
	if err != nil {
		return nil, []error{err}
	}
	fw, err := os.Firewall(ctx, h)
	if err != nil {
		return nil, []error{err}
	}
	if fw == nil {
		return nil, nil
	}
	active, atBoot, err := fw.State(ctx, h)
	if err != nil {
		return nil, []error{err}
	}
	if c.env.Firewall == config.FirewallDisable {
		switch {
		case active:
			return nil, []error{errorf("%s is active and would drop cluster traffic (kubelet, etcd, VXLAN, NodePorts): stop and disable it, or keep it with --firewall=open-ports (spec.security.firewall)", fw.Name())}
		case atBoot:
			return nil, []error{errorf("%s is not running but enabled: it would start at the next boot and drop cluster traffic; disable it", fw.Name())}
		}
		return nil, nil
	}
	if !active {
		if atBoot {
			return []error{errorf("%s is enabled but not running: its ports cannot be checked until it runs; start it and run preflight again", fw.Name())}, nil
		}
		return nil, nil
	}
	want, who := c.wanted()
	missing, err := fw.Missing(ctx, h, want)
	if err != nil {
		return nil, []error{err}
	}
	if len(missing) > 0 {
		parts := make([]string, len(missing))
		for i, p := range missing {
			parts[i] = fmt.Sprintf("%s (%s)", p, who[p.String()])
		}
		return nil, []error{errorf("%s is active and does not allow %s: open these ports", fw.Name(), strings.Join(parts, ", "))}
	}
	return nil, nil
}

func (c FirewallCheck) FixDescription() string {
	if c.env.Firewall == config.FirewallOpenPorts {
		want, _ := c.wanted()
		s := make([]string, len(want))
		for i, p := range want {
			s[i] = p.String()
		}
		return "open " + strings.Join(s, " ") + " in the host firewall (permanent, then reload)"
	}
	return "stop and disable the host firewall (" + firewalldUnit + " or ufw)"
}

func (c FirewallCheck) Fix(ctx context.Context, h host.Host) error {
	os, err := c.env.configurer()
	if err != nil {
		return err
	}
	fw, err := os.Firewall(ctx, h)
	if err != nil || fw == nil {
		return err
	}
	if c.env.Firewall == config.FirewallDisable {
		return fw.Disable(ctx, h)
	}
	active, _, err := fw.State(ctx, h)
	if err != nil || !active {
		return err
	}
	want, _ := c.wanted()
	missing, err := fw.Missing(ctx, h, want)
	if err != nil {
		return err
	}
	return fw.Open(ctx, h, missing)
}
