package overlay

import (
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/overlay/subnet"
)

// The subnet managers the agent can use (Config.Backend).
const (
	// BackendKube keeps each node's subnet in its Node (spec.podCIDR from
	// kube-controller-manager, the VTEP as annotations); the default.
	BackendKube = "kube"
	// BackendEtcd keeps leases in etcd; only for hosts with the etcd role.
	BackendEtcd = "etcd"
)

// newManager builds the subnet manager cfg names. The kube one acts as the node
// (cfg.Kubeconfig, the kubelet's own credential, whose client certificate the
// kubelet rotates: client-go reloads it from the file). Its client has no
// request timeout, which would cut every watch.
func newManager(cfg *Config, logf func(string, ...any), problem func(string)) (subnet.Manager, error) {
	switch cfg.Backend {
	case BackendEtcd:
		o := subnet.EtcdOptions{Endpoints: cfg.Etcd.Endpoints, Prefix: cfg.Etcd.Prefix, Network: cfg.Network, TTL: cfg.TTL(), Logf: logf, Problem: problem}
		if cfg.Etcd.CAFile != "" {
			var err error
			o.TLS, err = etcd.TLSFiles{CA: cfg.Etcd.CAFile, Cert: cfg.Etcd.CertFile, Key: cfg.Etcd.KeyFile}.Config(etcd.LocalRead)
			if err != nil {
				return nil, err
			}
		}
		return subnet.NewEtcd(o)
	default:
		rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s (kubeconfig): %w", cfg.Kubeconfig, err)
		}
		rc.Timeout = 0
		rc.UserAgent = "kubeforge-overlay/" + cfg.NodeName
		rc.QPS, rc.Burst = 5, 10
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
		return subnet.NewKube(subnet.KubeOptions{Client: cs, NodeName: cfg.NodeName, Network: *cfg.Network,
			NodeWait: 90 * time.Second, Source: rc.Host, Logf: logf})
	}
}
