package initphases

import (
	"path"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/controlplane"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

func (r *run) controlPlanePhase() workflow.Phase {
	short := map[string]string{
		controlplane.APIServer:         "kube-apiserver unit",
		controlplane.ControllerManager: "kube-controller-manager unit",
		controlplane.Scheduler:         "kube-scheduler unit",
	}
	var subs []workflow.Phase
	for _, n := range controlplane.Names {
		subs = append(subs, workflow.Phase{Name: strings.TrimPrefix(n, "kube-"), Short: short[n], Run: r.runComponent(n)})
	}
	return workflow.Phase{
		Name:  "control-plane",
		Short: "Install and start the control-plane units",
		Long: `Write the configuration files and systemd units of kube-apiserver,
kube-controller-manager and kube-scheduler, enable and start them. A unit whose
inputs (flags, certificates, keys, kubeconfigs, binary) changed is restarted; one
that is running as configured is left alone.`,
		RunIf:  hasRole(config.RoleControlPlane),
		Phases: subs,
	}
}

func (r *run) runComponent(name string) func(workflow.RunData) error {
	return func(d workflow.RunData) error {
		data, err := r.data(d, "control-plane/"+name)
		if err != nil {
			return err
		}
		ctx, h := data.Context(), data.Host()
		o := controlPlaneOptions(data)
		var enc []byte
		if name == controlplane.APIServer {
			var created bool
			if enc, created, err = controlplane.EnsureEncryptionConfig(ctx, h, o.EncryptionConfigPath()); err != nil {
				return err
			}
			if created {
				data.Logger().Printf("generated a new key for encrypting Secrets at rest (%s, 0600)", o.EncryptionConfigPath())
			}
		}
		c, err := o.Component(name, enc)
		if err != nil {
			return err
		}
		res, err := controlplane.Ensure(ctx, h, c, data.Logger().Printf)
		if err != nil {
			return err
		}
		return workflow.Outcome(data.Logger(), res.Changed, res.Detail(c))
	}
}

func (r *run) waitPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "wait-control-plane",
		Short: "Wait until the API server answers and the control plane is healthy",
		Long: `Poll kube-apiserver's /readyz and the /healthz endpoints of
kube-controller-manager and kube-scheduler until all are healthy, then wait for
both to hold their leader lease. Progress is printed while waiting; on failure the
last journal lines of the failing unit are shown.`,
		RunIf: hasRole(config.RoleControlPlane),
		Run:   r.runWait,
	}
}

func (r *run) runWait(d workflow.RunData) error {
	data, err := r.data(d, "wait-control-plane")
	if err != nil {
		return err
	}
	ctx, h, log := data.Context(), data.Host(), data.Logger()
	o := controlPlaneOptions(data)
	var comps []controlplane.Component
	for _, n := range controlplane.Names {
		c, err := o.Component(n, []byte("-")) // only the health endpoints matter here
		if err != nil {
			return err
		}
		comps = append(comps, c)
	}
	if data.DryRun() {
		for _, c := range comps {
			log.Printf("dry run: would wait for %s at %s", c.Name, c.HealthURL)
		}
		return nil
	}
	ca, err := h.ReadFile(ctx, path.Join(data.CertDir(), "ca.crt"))
	if err != nil {
		return err
	}
	res, err := controlplane.Wait(ctx, controlplane.WaitOptions{Host: h, Components: comps, CACert: ca, Logf: log.Printf})
	if err != nil {
		return err
	}
	cli, err := r.client(data)
	if err != nil {
		return err
	}
	leases, err := controlplane.WaitLeaders(ctx, cli, []string{controlplane.ControllerManager, controlplane.Scheduler}, 2*time.Minute, log.Printf)
	if err != nil {
		return err
	}
	log.Printf("control plane healthy after %s; leaders: %s", res.Total.Round(10*time.Millisecond), leases)
	// Converged: everything answered at the first probe, nothing was waited for.
	if res.Total < time.Second {
		return workflow.Unchanged("control plane is healthy")
	}
	return nil
}
