package initphases

import (
	"errors"
	"strings"

	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/components/controlplane"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/phases/workflow"
	"github.com/kubeforge/kubeforge/preflight"
)

// RerunUnits tell a re-run of init from a first run: the units init writes
// first (etcd's, then the API server's). apply asks the same.
var RerunUnits = []string{etcd.UnitName, controlplane.APIServer + ".service"}

func (r *run) preflightPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "preflight",
		Short: "Check and prepare the host (kernel, modules, sysctls, swap, ports)",
		Long: `Run the pre-flight checks of 'kubeforge preflight' (without fixing
anything: run 'kubeforge preflight --fix' for that). A failed check stops init
before anything is changed. On a host that init set up before, in whole or in
part (its etcd or kube-apiserver unit is kubeforge's, or kubeforge created
/etc/kubernetes), the fresh-host checks (free ports, empty /etc/kubernetes) are skipped, so
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
	unit, err := component.SetUpBefore(ctx, h, data.KubeconfigDir(), RerunUnits...)
	if err != nil {
		return err
	}
	if unit != "" {
		data.Logger().Printf("%s is kubeforge's: init ran here before, so the fresh-host checks (%s) do not apply",
			unit, strings.Join(preflight.FreshHostChecks, ", "))
		opts.Checks = preflight.RerunChecks
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
