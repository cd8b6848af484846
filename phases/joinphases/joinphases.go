// Package joinphases is the phase tree of `kubeforge join`, which adds this host to
// an existing cluster.
//
// Every Run is workflow.NotImplemented until its owner fills it in; see
// phases/initphases for why the tree lands first. Phases get their inputs by
// asserting the run data to rundata.Data.
package joinphases

import (
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// Phases returns the join workflow in execution order.
// TODO(config): give etcd (and control-plane work) a RunIf on the node's roles once
// the run data carries the resolved config node.
func Phases() []workflow.Phase {
	return []workflow.Phase{
		leaf("preflight", "Check and prepare the host (kernel, modules, sysctls, swap, ports)"),
		leaf("discovery", "Find the cluster and verify its CA before trusting it"),
		leaf("install-binaries", "Install the release binaries from the bundle"),
		etcdPhase(),
		leaf("containerd", "Install and start containerd"),
		leaf("images", "Import the bundled container images"),
		leaf("kubelet", "Install the kubelet unit and complete TLS bootstrap"),
		leaf("kube-proxy", "Install and start kube-proxy"),
		overlayPhase(),
		leaf("wait-node", "Wait until the node is registered and Ready"),
	}
}

func leaf(name, short string) workflow.Phase {
	return workflow.Phase{Name: name, Short: short, Run: workflow.NotImplemented}
}
