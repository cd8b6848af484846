package joinphases

import (
	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// etcdPhase adds this host to the running etcd cluster.
func etcdPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "etcd",
		Short: "Add this host as an etcd member, when it is one",
		Long: `Add this host to the running etcd cluster: issue its etcd server and peer
certificates from the etcd CA on the host, add it as a learner, start etcd.service
with the current member list, wait until it caught up and promote it. A member that
does not come up is removed again, so a failed join leaves the cluster as it was.
Hosts without the etcd role skip the phase; a started voting member reports
"unchanged".`,
		RunIf: func(d workflow.RunData) (bool, error) {
			data, err := rundata.From(d, "etcd")
			if err != nil {
				return false, err
			}
			return data.Node() != nil && data.Node().HasRole(config.RoleEtcd), nil
		},
		Run: runEtcd,
	}
}

func runEtcd(d workflow.RunData) error {
	data, err := rundata.From(d, "etcd")
	if err != nil {
		return err
	}
	res, err := etcd.Join(data.Context(), etcd.Options{
		Host:      data.Host(),
		Cluster:   data.Config(),
		Node:      *data.Node(),
		CertDir:   data.CertDir(),
		BundleDir: data.BundleDir(),
		DryRun:    data.DryRun(),
		Logf:      data.Logger().Printf,
	})
	if err != nil {
		return err
	}
	return workflow.Outcome(data.Logger(), res.Changed, res.Detail)
}
