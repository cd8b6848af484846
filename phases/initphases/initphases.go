// Package initphases is the phase tree of `kubeforge init`, which turns this host
// into the first control-plane node.
//
// The tree lands before the phases do: every Run is workflow.NotImplemented until
// its owner fills it in, so the command wiring, --skip-phases names and the
// generated `kubeforge init phase ...` subcommands exist now and an unfinished
// phase can never look like it succeeded. Phases get their inputs by asserting the
// run data to rundata.Data.
package initphases

import (
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// CertNames are the certs subphases, CAs before the certificates they sign.
// They match the certs package's catalog (certs.CertNames).
// TODO(certs): build the list from certs.CertNames once that package is committed,
// so the phase names cannot drift from what is actually issued.
var CertNames = []struct{ Name, Short string }{
	{"ca", "Issue the Kubernetes cluster CA"},
	{"apiserver", "Issue the API server's serving certificate"},
	{"apiserver-kubelet-client", "Issue the client certificate the API server uses to reach kubelets"},
	{"front-proxy-ca", "Issue the front proxy (aggregation layer) CA"},
	{"front-proxy-client", "Issue the front proxy's client certificate"},
	{"etcd-ca", "Issue the etcd CA"},
	{"etcd-server", "Issue etcd's serving certificate"},
	{"etcd-peer", "Issue the etcd members' peer certificate"},
	{"etcd-healthcheck-client", "Issue the client certificate for etcd health checks"},
	{"apiserver-etcd-client", "Issue the client certificate the API server uses to reach etcd"},
	{"etcd-overlay-client", "Issue the overlay agent's client certificate for etcd"},
	{"sa", "Create the service account token signing key pair"},
}

// Phases returns the init workflow in execution order.
func Phases() []workflow.Phase {
	certs := make([]workflow.Phase, 0, len(CertNames))
	for _, c := range CertNames {
		certs = append(certs, workflow.Phase{Name: c.Name, Short: c.Short, Run: workflow.NotImplemented})
	}
	return []workflow.Phase{
		{Name: "preflight", Short: "Check and prepare the host (kernel, modules, sysctls, swap, ports)", Run: workflow.NotImplemented},
		{Name: "install-binaries", Short: "Install the release binaries from the bundle", Run: workflow.NotImplemented},
		{Name: "certs", Short: "Create the cluster PKI", Phases: certs},
		{Name: "kubeconfig", Short: "Write the kubeconfig files of clients and components", Phases: []workflow.Phase{
			leaf("admin", "Kubeconfig for the cluster administrator"),
			leaf("super-admin", "Kubeconfig that bypasses RBAC (break-glass)"),
			leaf("controller-manager", "Kubeconfig for kube-controller-manager"),
			leaf("scheduler", "Kubeconfig for kube-scheduler"),
			leaf("kubelet", "Kubeconfig for this node's kubelet"),
			leaf("kube-proxy", "Kubeconfig for kube-proxy"),
		}},
		etcdPhase(),
		{Name: "control-plane", Short: "Install and start the control-plane units", Phases: []workflow.Phase{
			leaf("apiserver", "kube-apiserver unit"),
			leaf("controller-manager", "kube-controller-manager unit"),
			leaf("scheduler", "kube-scheduler unit"),
		}},
		leaf("wait-control-plane", "Wait until the API server answers and the control plane is healthy"),
		leaf("upload-config", "Store the cluster configuration in the cluster for later joins"),
		leaf("upload-certs", "Store the encrypted control-plane certificates for joining control-plane nodes"),
		leaf("bootstrap-token", "Create the bootstrap token and RBAC for node TLS bootstrap"),
		leaf("overlay", "Set up the VXLAN overlay on this node"),
		leaf("show-join-command", "Print the command that joins further nodes"),
	}
}

func leaf(name, short string) workflow.Phase {
	return workflow.Phase{Name: name, Short: short, Run: workflow.NotImplemented}
}
