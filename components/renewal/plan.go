package renewal

import (
	"context"
	"fmt"
	"path"
	"slices"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// UnitDir is where kubeforge writes its units (host.Units.WriteUnit).
const UnitDir = "/etc/systemd/system"

// Step is one unit that reads a renewed file.
type Step struct {
	Unit string `json:"unit"`
	// Reads are the renewed names the unit loads.
	Reads []string `json:"reads"`
	// Reload: the unit re-reads every one of Reads by itself while it runs
	// (Reloads), so it is not restarted; the renewal checks that it serves the
	// renewed certificates instead, and restarts it only if it does not.
	Reload bool `json:"reload,omitempty"`
	// Skip says why the unit is left alone ("" when it is checked or
	// restarted): it is not installed on this host, or not running (it loads
	// the new files whenever it starts next).
	Skip string `json:"skip,omitempty"`
}

// Plan is every unit a renewal affects, in Order.
type Plan struct {
	Host  string `json:"host"`
	Steps []Step `json:"steps"`
}

// NewPlan looks for every unit that reads one of renewed (names as in
// certs.RenewableNames) and keeps those whose unit file kubeforge wrote and that
// systemd reports active: to be checked when they reload every renewed file they
// read by themselves, to be restarted otherwise. It only reads, so it is what a
// dry run shows.
func NewPlan(ctx context.Context, h host.Host, renewed []string) (Plan, error) {
	p := Plan{Host: h.Name()}
	for _, u := range Affected(renewed) {
		s := Step{Unit: u, Reload: true}
		for _, n := range renewed {
			if slices.Contains(UnitsReading(n), u) {
				s.Reads = append(s.Reads, n)
				s.Reload = s.Reload && Reloads(n, u)
			}
		}
		// The unit file first: on a host kubeforge never set up (a copy of the
		// PKI on an admin machine) there is no systemd to ask, and no need.
		if _, err := h.Stat(ctx, path.Join(UnitDir, u)); err != nil {
			if !host.IsNotExist(err) {
				return Plan{}, fmt.Errorf("%s: %w", h.Name(), err)
			}
			s.Skip = "not installed on this host"
			p.Steps = append(p.Steps, s)
			continue
		}
		st, err := h.Units().Status(ctx, u)
		if err != nil {
			return Plan{}, fmt.Errorf("%s: status of %s: %w", h.Name(), u, err)
		}
		switch {
		case st.LoadState == "not-found" || st.LoadState == "":
			s.Skip = "not installed on this host"
		case !st.Active():
			s.Skip = fmt.Sprintf("not running (%s/%s); it loads the new files when it starts", st.ActiveState, st.SubState)
		}
		p.Steps = append(p.Steps, s)
	}
	return p, nil
}

// Units lists the units the plan acts on (checks or restarts), in order.
func (p Plan) Units() []string {
	var out []string
	for _, s := range p.Steps {
		if s.Skip == "" {
			out = append(out, s.Unit)
		}
	}
	return out
}

// Restarts lists the units the plan restarts, in order.
func (p Plan) Restarts() []string {
	var out []string
	for _, s := range p.Steps {
		if s.Skip == "" && !s.Reload {
			out = append(out, s.Unit)
		}
	}
	return out
}

// Reloads lists the units the plan does not restart because they reload the
// renewed files themselves, in order.
func (p Plan) Reloads() []string {
	var out []string
	for _, s := range p.Steps {
		if s.Skip == "" && s.Reload {
			out = append(out, s.Unit)
		}
	}
	return out
}

// NeedConfig lists the units to check or restart that need the cluster
// configuration (etcd and the control plane).
func (p Plan) NeedConfig() []string {
	var out []string
	for _, u := range p.Units() {
		if needsConfig(u) {
			out = append(out, u)
		}
	}
	return out
}

// step returns the plan's step of unit.
func (p Plan) step(unit string) Step {
	for _, s := range p.Steps {
		if s.Unit == unit {
			return s
		}
	}
	return Step{Unit: unit}
}
