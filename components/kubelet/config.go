package kubelet

import (
	"fmt"
	"net"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/certs"
)

// ConfigOptions are the inputs of the KubeletConfiguration.
type ConfigOptions struct {
	// CgroupDriver must be containerd's (hostenv.Environment.CgroupDriver).
	CgroupDriver string
	// ClusterDNS is the cluster DNS service address: config's
	// Networking.ClusterDNSIP, where the CoreDNS add-on puts Service kube-dns.
	ClusterDNS    string
	ClusterDomain string
	// ClientCAFile verifies client certificates of callers (the apiserver).
	ClientCAFile string
	// ResolvConf is the resolver file pods with dnsPolicy Default inherit.
	ResolvConf string
	// RuntimeEndpoint is containerd's CRI socket, as a unix:// URL.
	RuntimeEndpoint string
}

// RenderConfig returns the KubeletConfiguration (kubelet.config.k8s.io/v1beta1).
//
// Security choices, each the hardened form of a kubelet default:
//   - anonymous access off and the webhook authenticator on: every request to
//     the kubelet API carries a client certificate of the cluster CA or a
//     token the apiserver vouches for;
//   - authorization mode Webhook: the apiserver decides (SubjectAccessReview)
//     who may read logs or exec, instead of AlwaysAllow;
//   - readOnlyPort 0: no unauthenticated port 10255;
//   - rotateCertificates: the client certificate is renewed through CSRs before
//     it expires; serverTLSBootstrap: the serving certificate too is issued by
//     the cluster CA through a CSR (kubeforge's CSR approver approves it after
//     checking it names only this node), not self-signed, so the apiserver can
//     verify the kubelet it talks to.
func RenderConfig(o ConfigOptions) ([]byte, error) {
	if o.CgroupDriver != "systemd" && o.CgroupDriver != "cgroupfs" {
		return nil, fmt.Errorf("kubelet config: cgroup driver %q is neither systemd nor cgroupfs", o.CgroupDriver)
	}
	if net.ParseIP(o.ClusterDNS) == nil {
		return nil, fmt.Errorf("kubelet config: cluster DNS %q is not an IP address", o.ClusterDNS)
	}
	if o.ClusterDomain == "" || !strings.HasPrefix(o.ClientCAFile, "/") || !strings.HasPrefix(o.ResolvConf, "/") || !strings.HasPrefix(o.RuntimeEndpoint, "unix:///") {
		return nil, fmt.Errorf("kubelet config: cluster domain, client CA file, resolv.conf and runtime endpoint must all be set (got %+v)", o)
	}
	cfg := map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1",
		"kind":       "KubeletConfiguration",
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true, "cacheTTL": "2m0s"},
			"x509":      map[string]any{"clientCAFile": o.ClientCAFile},
		},
		"authorization": map[string]any{
			"mode":    "Webhook",
			"webhook": map[string]any{"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"},
		},
		"cgroupDriver":             o.CgroupDriver,
		"clusterDNS":               []string{o.ClusterDNS},
		"clusterDomain":            o.ClusterDomain,
		"containerRuntimeEndpoint": o.RuntimeEndpoint,
		"resolvConf":               o.ResolvConf,
		"rotateCertificates":       true,
		"serverTLSBootstrap":       true,
		"readOnlyPort":             0,
		"healthzBindAddress":       "127.0.0.1",
		"healthzPort":              10248,
		// Control-plane components run as systemd units, not static pods.
		"staticPodPath":   "",
		"failSwapOn":      true,
		"tlsMinVersion":   certs.TLSMinVersion,
		"tlsCipherSuites": certs.TLSCipherSuites,
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return append([]byte("# KubeletConfiguration, written by kubeforge; changes are overwritten.\n"), out...), nil
}
