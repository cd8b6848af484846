package initphases

import (
	"fmt"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/controlplane"
	"github.com/kubeforge/kubeforge/components/install"
	"github.com/kubeforge/kubeforge/components/inventory"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

func (r *run) installPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "install-binaries",
		Short: "Install the release binaries from the bundle",
		Long: `Install the binaries this host's roles need (kube-apiserver,
kube-controller-manager, kube-scheduler and kubectl on a control-plane host) from
the bundle into /usr/local/bin. Every binary is checked against the bundle's
manifest first, and on a control-plane host the control-plane endpoint and the
components' ports are checked too: bad input stops the run before the first
change. Binaries already installed with the right checksum are left alone.`,
		Run: r.runInstall,
	}
}

func (r *run) runInstall(d workflow.RunData) error {
	data, err := r.data(d, "install-binaries")
	if err != nil {
		return err
	}
	ctx, h, node := data.Context(), data.Host(), data.Node()
	names := inventory.ForRoles(node.Roles)
	if len(names) == 0 {
		return workflow.Unchanged("host %s has no role that needs binaries from this phase", node.Name)
	}
	// Everything that can be checked is checked before the first write: the
	// bundle files to be installed, then the endpoint and ports.
	plan, err := install.NewPlan(ctx, install.Options{Host: h, BundleDir: data.BundleDir(), Logf: data.Logger().Printf}, names...)
	if err != nil {
		return err
	}
	if node.HasRole(config.RoleControlPlane) {
		if err := controlplane.Precheck(ctx, h, controlPlaneOptions(data), nil); err != nil {
			return err
		}
	}
	res, err := plan.Apply(ctx)
	if err != nil {
		return err
	}
	if !res.Changed() {
		return workflow.Unchanged("%s already installed", strings.Join(res.Unchanged, ", "))
	}
	if len(res.Unchanged) > 0 {
		data.Logger().Printf("already installed: %s", strings.Join(res.Unchanged, ", "))
	}
	data.Logger().Printf("%d binaries installed into %s", len(res.Installed), fmt.Sprint(install.DefaultBinDir))
	return nil
}
