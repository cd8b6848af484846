package initphases

import (
	"bytes"
	"errors"
	"path"
	"slices"
	"strings"

	"github.com/kubeforge/kubeforge/components/controlplane"
	"github.com/kubeforge/kubeforge/phases/workflow"
	"github.com/kubeforge/kubeforge/preflight"
)

// freshHostChecks only make sense before a host's first init: on a host that
// already runs this control plane, its own daemons hold the ports and its own
// files fill /etc/kubernetes.
var freshHostChecks = []string{"Ports", "LeftoverState"}

func (r *run) preflightPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "preflight",
		Short: "Check and prepare the host (kernel, modules, sysctls, swap, ports)",
		Long: `Run the pre-flight checks of 'kubeforge preflight' (without fixing
anything: run 'kubeforge preflight --fix' for that). A failed check stops init
before anything is changed. On a host where init already brought up the control
plane, the fresh-host checks (free ports, empty /etc/kubernetes) are skipped, so
that init can be re-run to converge the host.`,
		Run: r.runPreflight,
	}
}

func (r *run) runPreflight(d workflow.RunData) error {
	data, err := r.data(d, "preflight")
	if err != nil {
		return err
	}
	ctx, h := data.Context(), data.Host()
	var opts preflight.Options
	opts.DryRun = data.DryRun()
	opts.Log = &lineLogger{l: data.Logger()}
	unit, err := h.ReadFile(ctx, path.Join("/etc/systemd/system", controlplane.APIServer+".service"))
	if err == nil && bytes.Contains(unit, []byte("written by kubeforge")) {
		data.Logger().Printf("%s.service is kubeforge's: this host was initialized before, so the fresh-host checks (%s) do not apply",
			controlplane.APIServer, strings.Join(freshHostChecks, ", "))
		opts.Checks = func(e *preflight.Env) []preflight.Checker {
			var out []preflight.Checker
			for _, c := range preflight.Checks(e) {
				if !slices.Contains(freshHostChecks, c.Name()) {
					out = append(out, c)
				}
			}
			return out
		}
	}
	rep, err := preflight.Run(ctx, h, data.Config(), data.Node(), opts)
	var failed *preflight.FailedError
	if err != nil && !errors.As(err, &failed) {
		return err
	}
	if werr := rep.WriteText(&lineLogger{l: data.Logger()}); werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	return workflow.Unchanged("all checks passed on %s", h.Name())
}
