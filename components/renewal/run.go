package renewal

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
)

// RunOptions are what `kubeforge certs renew` asks for.
type RunOptions struct {
	Host host.Host
	// Names are the certificates to renew: "all" or RenewableNames.
	Names         []string
	CertDir       string
	KubeconfigDir string
	// BackupDir is where replaced files go ("" for the timestamped default).
	BackupDir string
	// Config is where the cluster configuration comes from: --config, else the
	// copy init keeps on the host.
	Config ConfigSource
	// Within > 0 renews only those of Names that expire within it.
	Within    time.Duration
	DryRun    bool
	NoRestart bool
	// Out receives the "[renew]" lines about what is due.
	Out  io.Writer
	Logf func(format string, a ...any)
}

// Run renews certificates and deals with the units that read them: everything
// is worked out first without writing (what would be renewed, which running
// units read it, whether they can be rebuilt), then the files are replaced and
// the units handled one at a time (Restarter). It returns the report to print,
// also when a unit failed (the report then names the backup to roll back
// from); a nil report means there was nothing to do.
func Run(ctx context.Context, o RunOptions) (*Report, error) {
	if len(o.Names) > 1 {
		for _, a := range o.Names {
			if a == "all" {
				return nil, fmt.Errorf(`"all" cannot be combined with other names`)
			}
		}
	}
	h := o.Host
	cfg, node, _, cfgErr := LoadConfig(ctx, h, o.Config)
	if cfgErr != nil && o.Config.Path != "" {
		return nil, cfgErr
	}
	names := o.Names
	if o.Within > 0 {
		due, err := expiringWithin(certs.HostFS{Ctx: ctx, Host: h}, o.CertDir, o.KubeconfigDir, o.Within, names)
		if err != nil {
			return nil, err
		}
		if len(due) == 0 {
			fmt.Fprintf(o.Out, "[renew] no certificate of %s expires within %s; nothing to do\n", strings.Join(names, ", "), o.Within)
			return nil, nil
		}
		fmt.Fprintf(o.Out, "[renew] expiring within %s: %s\n", o.Within, strings.Join(due, ", "))
		names = due
	}
	opts := certs.RenewOptions{
		CertDir: o.CertDir, KubeconfigDir: o.KubeconfigDir,
		FS: certs.HostFS{Ctx: ctx, Host: h}, BackupDir: o.BackupDir,
	}
	if cfg != nil {
		// kubeadm's renewal too takes the validity from the configuration.
		opts.Validity = cfg.Spec.Certificates.Validity.Duration()
	}
	preview := opts
	preview.DryRun = true
	pre, err := certs.Renew(preview, names...)
	if err != nil {
		return nil, err
	}
	plan, err := NewPlan(ctx, h, Renewed(pre))
	if err != nil {
		return nil, err
	}
	rep := &Report{Renewal: pre, Plan: plan, NoRestart: o.NoRestart}
	if o.DryRun {
		return rep, nil
	}
	restarter, err := prepareRestarts(ctx, o, cfg, node, cfgErr, pre.BackupDir, plan)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if pre.BackupDir != "" {
		opts.BackupDir = pre.BackupDir // the directory the plan and the messages name
	}
	res, err := certs.Renew(opts, names...)
	if err != nil {
		return nil, err
	}
	rep.Renewal = res
	if restarter != nil {
		r, err := restarter.Run(ctx)
		rep.Restart, rep.Total = &r, time.Since(start)
		if err != nil {
			return rep, err
		}
	}
	rep.Total = time.Since(start)
	return rep, nil
}

// prepareRestarts checks, before any file is replaced, that the units the plan
// names can be checked or restarted: a broken or missing configuration only
// matters when one of them needs it.
func prepareRestarts(ctx context.Context, o RunOptions, cfg *config.Cluster, node *config.Host, cfgErr error, backupDir string, plan Plan) (*Restarter, error) {
	if o.NoRestart || len(plan.Units()) == 0 {
		return nil, nil
	}
	if need := plan.NeedConfig(); len(need) > 0 && cfgErr != nil {
		return nil, fmt.Errorf("%s run on this host and read files being renewed; checking or restarting them needs the cluster configuration: %w; pass --config, or --no-restart to renew only; nothing was changed",
			strings.Join(need, ", "), cfgErr)
	}
	if need := plan.NeedConfig(); len(need) > 0 && cfg == nil {
		return nil, fmt.Errorf("%s run on this host and read files being renewed; checking or restarting them needs the cluster configuration, "+
			"and there is no --config and no %s (init keeps one): pass --config, or --no-restart to renew only and restart them yourself; nothing was changed",
			strings.Join(need, ", "), o.Config.HostCopy)
	}
	r, err := Prepare(ctx, Options{
		Host: o.Host, Cluster: cfg, Node: node,
		CertDir: o.CertDir, KubeconfigDir: o.KubeconfigDir, BackupDir: backupDir, Logf: o.Logf,
	}, plan)
	if err != nil {
		return nil, fmt.Errorf("%w; nothing was changed", err)
	}
	return r, nil
}

// expiringWithin are those of names ("all" meaning every renewable one) that
// exist here, are not externally managed, and expire within d.
func expiringWithin(fsys certs.FS, certDir, kubeconfigDir string, d time.Duration, names []string) ([]string, error) {
	r, err := certs.CheckExpiration(fsys, certDir, kubeconfigDir, time.Now())
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var due []string
	for _, c := range r.Certificates {
		if (want["all"] || want[c.Name]) && !c.Missing && !c.ExternallyManaged && c.Residual < d {
			due = append(due, c.Name)
		}
	}
	return due, nil
}
