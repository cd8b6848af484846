package resetphases

import (
	"github.com/spf13/pflag"

	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// etcdPhase removes this host's etcd member. Its override flag exists on
// `reset phase etcd` only: breaking a cluster's quorum should take a command
// aimed at exactly that.
func etcdPhase() workflow.Phase {
	var force bool
	fs := pflag.NewFlagSet("etcd", pflag.ContinueOnError)
	fs.BoolVar(&force, "force-etcd-removal", false,
		"Remove the etcd member even when that breaks quorum, it is the last member, or the cluster cannot be reached")
	return workflow.Phase{
		Name:  "etcd",
		Short: "Remove this host's etcd member from the cluster",
		Long: `Remove this host's etcd member from the cluster, then stop, disable and delete
etcd.service, its config file and its data dir. The removal is refused, and nothing
changed, when the remaining members would not have a healthy quorum, when this is
the last voting member, or when the cluster cannot be reached; --force-etcd-removal
overrides that.`,
		LocalFlags: fs,
		Run: func(d workflow.RunData) error {
			data, err := rundata.From(d, "etcd")
			if err != nil {
				return err
			}
			res, err := etcd.Reset(data.Context(), etcd.ResetOptions{
				Host:     data.Host(),
				Cluster:  data.Config(),
				NodeName: data.NodeName(),
				CertDir:  data.CertDir(),
				Force:    force,
				DryRun:   data.DryRun(),
				Logf:     data.Logger().Printf,
			})
			if err != nil {
				return err
			}
			return workflow.Outcome(data.Logger(), res.Changed, res.Detail)
		},
	}
}
