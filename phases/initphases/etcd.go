package initphases

import (
	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// etcdPhase starts the first member of the etcd cluster on this host.
func etcdPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "etcd",
		Short: "Install and start the local etcd member",
		Long: `Install etcd from the bundle and start the first member of a new etcd cluster
on this host (the configuration's first etcd host) as etcd.service, with mutual TLS
on client and peer ports, and wait until it is healthy. Hosts without the etcd
role skip the phase; a running, unchanged member reports "unchanged".`,
		RunIf: hasRole(config.RoleEtcd),
		Run:   runEtcd,
	}
}

func runEtcd(d workflow.RunData) error {
	data, err := rundata.From(d, "etcd")
	if err != nil {
		return err
	}
	res, err := etcd.Init(data.Context(), etcd.Options{
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
