package preflight

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// TimeSyncCheck: etcd leases and certificate validity need agreeing clocks. One
// host of the cluster (spec.timeSync.server) runs the cluster's chrony server;
// every other host follows it.
//
// What is checked, honestly stated:
//   - chrony is installed, its unit active (and enabled), and its configuration
//     (main file plus confdir/sourcedir drop-ins) is right for the host's part:
//     the server has `local` and `allow` rules covering every cluster host (and
//     the upstream servers, if configured); the others have a server/pool line
//     for the time server.
//   - On the time server: `chronyc tracking` does not say "Not synchronised",
//     i.e. it serves time clients accept (its own clock via `local`, or upstream).
//   - On the others: `chronyc sources` lists the time server, its reachability
//     register is non-zero (it answered NTP queries), and chrony selected it
//     ('*'). Being selected means chrony's estimate follows the server. Whether
//     the system clock is disciplined is not checked: lab hosts run chronyd -x
//     (the clock is the machine's), where selection is all there is to see.
type TimeSyncCheck struct{ env *Env }

func (TimeSyncCheck) Name() string { return "TimeSync" }

// waitForSync bounds how long the fix waits for chrony to reach the server after
// a restart (iburst gets the first answers within seconds).
const waitForSync = 40 * time.Second

func (c TimeSyncCheck) server() (*config.Host, error) {
	name := c.env.Cluster.Spec.TimeSync.Server
	if name == "" {
		return nil, errorf("spec.timeSync.server is not set and there is no control-plane host to default to: name the time server host")
	}
	s, ok := c.env.Cluster.Host(name)
	if !ok {
		return nil, errorf("spec.timeSync.server %q is not a host of the cluster", name)
	}
	return s, nil
}

func (c TimeSyncCheck) isServer(s *config.Host) bool { return s.Name == c.env.Node.Name }

// configProblems says what the parsed configuration lacks for this host's part.
func (c TimeSyncCheck) configProblems(ds []chronyDirective, s *config.Host) []string {
	var p []string
	if !c.isServer(s) {
		if !hasSource(ds, s.Address, s.Name) {
			p = append(p, fmt.Sprintf("no `server %s` line (the cluster's time server %s)", s.Address, s.Name))
		}
		return p
	}
	local := false
	for _, d := range ds {
		if d.Key == "local" {
			local = true
		}
	}
	if !local {
		p = append(p, "no `local stratum` line (needed to serve time without upstream)")
	}
	var denied []string
	for _, h := range c.env.Cluster.Spec.Hosts {
		if h.Name == s.Name {
			continue
		}
		a, err := netip.ParseAddr(h.Address)
		if err == nil && !allows(ds, a) {
			denied = append(denied, h.Name+" ("+h.Address+")")
		}
	}
	if len(denied) > 0 {
		p = append(p, "no `allow` rule for "+strings.Join(denied, ", "))
	}
	for _, u := range c.env.Cluster.Spec.TimeSync.UpstreamServers {
		if !hasSource(ds, u) {
			p = append(p, "no `server "+u+"` line (spec.timeSync.upstreamServers)")
		}
	}
	return p
}

type chronyState struct {
	installed bool
	conf      string
	problems  []string // configuration
	unit      host.UnitStatus
}

func (c TimeSyncCheck) state(ctx context.Context, h host.Host, os Configurer, s *config.Host) (chronyState, error) {
	var st chronyState
	d, err := lookPath(ctx, h, "chronyd")
	if err != nil {
		return st, err
	}
	cc, err := lookPath(ctx, h, "chronyc")
	if err != nil {
		return st, err
	}
	st.installed = d != "" && cc != ""
	st.conf = os.ChronyConf()
	ds, exists, err := chronyConfig(ctx, h, st.conf)
	if err != nil {
		return st, err
	}
	if !exists {
		st.problems = []string{st.conf + " does not exist"}
	} else {
		st.problems = c.configProblems(ds, s)
	}
	st.unit, err = h.Units().Status(ctx, os.ChronyService())
	return st, err
}

func (c TimeSyncCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	os, err := c.env.configurer()
	if err != nil {
		return nil, []error{err}
	}
	s, err := c.server()
	if err != nil {
		return nil, []error{err}
	}
	st, err := c.state(ctx, h, os, s)
	if err != nil {
		return nil, []error{err}
	}
	if !st.installed {
		return nil, []error{errorf("chrony is not installed: install %s and configure it for the cluster's time server %s", os.Package("chronyd"), s.Name)}
	}
	if len(st.problems) > 0 {
		part := "follow the cluster's time server " + s.Name
		if c.isServer(s) {
			part = "serve time to the cluster"
		}
		errs = append(errs, errorf("%s is not configured to %s: %s", st.conf, part, strings.Join(st.problems, "; ")))
	}
	unit := os.ChronyService()
	if !st.unit.Active() {
		errs = append(errs, errorf("%s is %s: enable and start it", unit, st.unit.ActiveState))
	} else if st.unit.Enabled != "" && st.unit.Enabled != "enabled" {
		warns = append(warns, errorf("%s is running but %s: it will not start at boot", unit, st.unit.Enabled))
	}
	if len(errs) > 0 {
		return warns, errs // the live state means nothing until the above is right
	}
	w, e := c.live(ctx, h, s)
	return append(warns, w...), append(errs, e...)
}

// live judges what chronyd reports (see the type's comment).
func (c TimeSyncCheck) live(ctx context.Context, h host.Host, s *config.Host) (warns, errs []error) {
	if c.isServer(s) {
		out, err := runRO(ctx, h, "chronyc", "-n", "-c", "tracking")
		if err != nil {
			return nil, []error{err}
		}
		t, err := parseChronyTracking(out)
		if err != nil {
			return nil, []error{err}
		}
		if t.Leap == "Not synchronised" {
			return nil, []error{errorf("chrony on the time server reports \"Not synchronised\": clients would reject its time; check its upstream servers or the `local` line and restart it")}
		}
		if len(c.env.Cluster.Spec.TimeSync.UpstreamServers) > 0 && t.RefID == localRefID {
			return []error{errorf("the time server serves its local clock: none of its upstream servers (%s) is reachable",
				strings.Join(c.env.Cluster.Spec.TimeSync.UpstreamServers, ", "))}, nil
		}
		return nil, nil
	}
	out, err := runRO(ctx, h, "chronyc", "-n", "-c", "sources")
	if err != nil {
		return nil, []error{err}
	}
	for _, src := range parseChronySources(out) {
		if src.Address != s.Address {
			continue
		}
		switch {
		case src.Reach == 0:
			return nil, []error{errorf("the time server %s (%s) does not answer NTP (udp/123): on %s, run `kubeforge preflight --config <cluster configuration> --fix` (it serves its own network) and check that its firewall lets udp/123 in", s.Name, s.Address, s.Name)}
		case src.State != "*":
			return []error{errorf("the time server %s answers but chrony has not selected it yet (state %q): check again in a minute", s.Name, src.State)}, nil
		}
		return nil, nil
	}
	return nil, []error{errorf("chronyd does not use the time server %s (%s) although the configuration names it: restart it", s.Name, s.Address)}
}

func (c TimeSyncCheck) FixDescription() string {
	s, err := c.server()
	if err != nil || c.env.OS == nil {
		return ""
	}
	what := "follow the time server " + s.Name + " (" + s.Address + ")"
	if c.isServer(s) {
		what = "serve time to the cluster"
	}
	return fmt.Sprintf("install chrony if missing, configure %s to %s (backup kept), enable and restart %s",
		c.env.OS.ChronyConf(), what, c.env.OS.ChronyService())
}

func (c TimeSyncCheck) Fix(ctx context.Context, h host.Host) error {
	os, err := c.env.configurer()
	if err != nil {
		return err
	}
	s, err := c.server()
	if err != nil {
		return err
	}
	st, err := c.state(ctx, h, os, s)
	if err != nil {
		return err
	}
	if !st.installed {
		cmd := os.InstallCmd(os.Package("chronyd"))
		r, err := h.Run(ctx, cmd)
		if err != nil {
			return err
		}
		if err := r.Err(h.Name(), cmd); err != nil {
			return err
		}
		if st, err = c.state(ctx, h, os, s); err != nil {
			return err
		}
	}
	restart := false
	if len(st.problems) > 0 {
		want, err := c.desiredConfig(ctx, h, os, s)
		if err != nil {
			return err
		}
		old, exists, err := readOptional(ctx, h, st.conf)
		if err != nil {
			return err
		}
		if old != want {
			if exists {
				if _, err := backup(ctx, h, st.conf, c.env.backupSuffix(), []byte(old)); err != nil {
					return err
				}
			}
			if err := h.WriteFile(ctx, st.conf, []byte(want), host.WriteOptions{Mode: 0o644}); err != nil {
				return err
			}
			restart = true
		}
	}
	unit := os.ChronyService()
	if err := h.Units().Enable(ctx, unit); err != nil {
		return err
	}
	if restart || !st.unit.Active() {
		if err := h.Units().Restart(ctx, unit); err != nil {
			return err
		}
	} else if len(st.problems) == 0 {
		// Configuration and unit are right but chronyd does not use the server:
		// a restart makes it read the configuration again.
		if w, e := c.live(ctx, h, s); len(e) > 0 && len(w) == 0 {
			if err := h.Units().Restart(ctx, unit); err != nil {
				return err
			}
		}
	}
	if c.env.DryRun {
		return nil
	}
	return c.waitLive(ctx, h, s)
}

// waitLive gives chronyd the seconds it needs after a restart, so the re-check
// judges a settled state; running out of time is not a fix error (the check
// says what is wrong).
func (c TimeSyncCheck) waitLive(ctx context.Context, h host.Host, s *config.Host) error {
	deadline := time.Now().Add(c.env.syncWait)
	for {
		w, e := c.live(ctx, h, s)
		if len(w) == 0 && len(e) == 0 || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// desiredConfig is the whole chrony.conf kubeforge writes for this host.
func (c TimeSyncCheck) desiredConfig(ctx context.Context, h host.Host, os Configurer, s *config.Host) (string, error) {
	var b strings.Builder
	if c.isServer(s) {
		fmt.Fprintf(&b, "# Written by kubeforge preflight: %s serves time to cluster %s.\n", s.Name, c.env.Cluster.Metadata.Name)
		for _, u := range c.env.Cluster.Spec.TimeSync.UpstreamServers {
			fmt.Fprintf(&b, "server %s iburst\n", u)
		}
		b.WriteString("# Serve this host's clock when no upstream server is reachable (isolated networks).\nlocal stratum 10\n")
		allow, err := c.allowRules(ctx, h, s)
		if err != nil {
			return "", err
		}
		for _, a := range allow {
			fmt.Fprintf(&b, "allow %s\n", a)
		}
	} else {
		fmt.Fprintf(&b, "# Written by kubeforge preflight: follow the time server %s of cluster %s.\n", s.Name, c.env.Cluster.Metadata.Name)
		fmt.Fprintf(&b, "server %s iburst\n", s.Address)
	}
	fmt.Fprintf(&b, "driftfile %s\nmakestep 1.0 3\nrtcsync\n", os.ChronyDriftFile())
	return b.String(), nil
}

// allowRules: the server's own network (the prefix of the interface holding its
// cluster address, read from `ip -o addr`), so hosts added later in that network
// are served too, plus single-address rules for cluster hosts outside it.
func (c TimeSyncCheck) allowRules(ctx context.Context, h host.Host, s *config.Host) ([]string, error) {
	self, err := netip.ParseAddr(s.Address)
	if err != nil {
		return nil, errorf("time server %s: address %q: %v", s.Name, s.Address, err)
	}
	var rules []string
	var nets []netip.Prefix
	if out, err := runRO(ctx, h, "ip", "-o", "addr", "show"); err == nil {
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			for i := 0; i+1 < len(f); i++ {
				if f[i] != "inet" && f[i] != "inet6" {
					continue
				}
				if p, err := netip.ParsePrefix(f[i+1]); err == nil && p.Addr() == self && p.Bits() > 0 {
					nets = append(nets, p.Masked())
					rules = append(rules, p.Masked().String())
				}
			}
		}
	}
	for _, hh := range c.env.Cluster.Spec.Hosts {
		a, err := netip.ParseAddr(hh.Address)
		if err != nil || hh.Name == s.Name {
			continue
		}
		covered := false
		for _, n := range nets {
			covered = covered || n.Contains(a)
		}
		if !covered {
			rules = append(rules, a.String())
		}
	}
	return rules, nil
}
