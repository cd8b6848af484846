package joinphases

import (
	"crypto/tls"
	"fmt"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// etcdPhase adds this host to the running etcd cluster.
func etcdPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "etcd",
		Short: "Add this host as an etcd member, when it is one",
		Long: `Add this host to the running etcd cluster with the member certificates the
certs phase wrote (issued on the control plane), add it as a learner, start
etcd.service with the current member list, wait until it caught up and promote it.
The membership changes use the one-join etcd credential of the hand-over, held
in memory only; its etcd user is deleted when the member is a voter, so the host
keeps no credential that reads keys or changes the membership. A member that
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
	var joinTLS *tls.Config
	if res, err := data.Discovered(); err == nil && res != nil {
		crt, key := res.Certs[clusterinfo.EtcdJoinCertFile], res.Certs[clusterinfo.EtcdJoinKeyFile]
		if crt != nil && key != nil {
			// Used in memory only, never written: the join deletes its etcd
			// user once this member is a voter.
			if joinTLS, err = etcd.TLSConfigFromPEM(res.Certs["etcd/ca.crt"], crt, key); err != nil {
				return fmt.Errorf("the handed-over etcd join credential: %w", err)
			}
		}
	}
	res, err := etcd.Join(data.Context(), etcd.Options{
		JoinTLS:   joinTLS,
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
