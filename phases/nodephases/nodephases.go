// Package nodephases are the phases that make a host a Kubernetes node — the
// container runtime, the bundled images, the kubelet, kube-proxy and waiting for
// the Node to be Ready — shared by `kubeforge init` (the control-plane host is a
// node too, tainted) and `kubeforge join`. Each is a thin wrapper around its
// component package.
//
// Phases read the run data as rundata.Data. A joining host's run data also
// implements Joining, which supplies what discovery established (the pinned CA,
// the API server, the join token); without it a phase works from the files init
// wrote on the control-plane host.
package nodephases

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/containerd"
	"github.com/kubeforge/kubeforge/components/images"
	"github.com/kubeforge/kubeforge/components/kubeclient"
	"github.com/kubeforge/kubeforge/components/kubelet"
	"github.com/kubeforge/kubeforge/components/kubeproxy"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// data asserts the run data (resolved: join's discovery has run) and insists on
// a resolved node.
func data(d workflow.RunData, phase string) (rundata.Data, error) {
	data, err := rundata.From(d, phase)
	if err != nil {
		return nil, err
	}
	if data.Config() == nil || data.Node() == nil {
		return nil, fmt.Errorf("phase %s needs the cluster configuration (--config, or the join command's discovery)", phase)
	}
	return data, nil
}

// ContainerdPhase installs and starts containerd.
func ContainerdPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "containerd",
		Short: "Install, configure and start containerd with runc and the CNI plugins",
		Long: `Install containerd, its runc shim, runc and the CNI plugins from the bundle,
write /etc/containerd/config.toml (cgroup driver shared with the kubelet, the
bundled pause image pinned as sandbox so nothing is ever pulled) and
containerd.service, start it and check its health through its API. Settings that
follow from the host (a container host, a missing capability, an overlayfs state
directory) are printed as "adjusted for this host".`,
		Run: func(d workflow.RunData) error {
			data, err := data(d, "containerd")
			if err != nil {
				return err
			}
			res, err := containerd.Ensure(data.Context(), containerd.Options{Host: data.Host(), BundleDir: data.BundleDir(),
				SandboxImage: images.PauseImage, DryRun: data.DryRun(), Logf: data.Logger().Printf})
			if err != nil {
				return err
			}
			return workflow.Outcome(data.Logger(), res.Changed, res.Detail)
		},
	}
}

// ImagesPhase imports the bundle's images.
func ImagesPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "images",
		Short: "Import the bundled images (pause, CoreDNS, test programs) into containerd",
		Long: `Import every images/*.tar of the bundle into containerd's k8s.io namespace,
unpacked into the snapshotter the CRI uses, and verify each by name and digest.
Images already present are left alone.`,
		Run: func(d workflow.RunData) error {
			data, err := data(d, "images")
			if err != nil {
				return err
			}
			b, err := bundle.Open(data.BundleDir())
			if err != nil {
				return err
			}
			if _, err := images.BundleArchives(b); err != nil {
				return err
			}
			if data.DryRun() {
				data.Logger().Printf("dry run: would import the bundle's images into containerd")
				return nil
			}
			ctx, h := data.Context(), data.Host()
			c, snap, err := containerd.ConnectForImages(ctx, h, containerd.Socket, "")
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := images.EnsureBundle(ctx, c, b, snap, data.Logger().Printf)
			if err != nil {
				return err
			}
			if !res.Changed() {
				return workflow.Unchanged("%d images already imported", len(res.Unchanged))
			}
			data.Logger().Printf("%d images imported into containerd (%s), %d already there", len(res.Imported), snap, len(res.Unchanged))
			return nil
		},
	}
}

// taints are the taints a node registers with: control-plane hosts that are not
// also workers keep ordinary pods off, as kubeadm does.
func taints(n *config.Host) []string {
	if n.HasRole(config.RoleControlPlane) && !n.HasRole(config.RoleWorker) {
		return []string{kubelet.ControlPlaneTaint}
	}
	return nil
}

// joinServer is the API server a joining host's kubelet and kube-proxy use:
// the one discovery found (the control-plane endpoint), except on a
// control-plane host, whose node components talk to its own apiserver (as
// kubeadm's ControlPlaneKubeletLocalMode): they keep working while another
// control-plane host, or the endpoint's, is down.
func joinServer(data rundata.Data, discovered string) (string, error) {
	if !data.Node().HasRole(config.RoleControlPlane) {
		return discovered, nil
	}
	spec, err := certs.SpecFromConfig(data.Config(), data.Node().Name)
	if err != nil {
		return "", err
	}
	return spec.LocalAPIServerURL(), nil
}

// KubeletPhase installs and starts the kubelet (TLS bootstrap on a joining host).
func KubeletPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "kubelet",
		Short: "Install and start the kubelet; on a joining host, TLS bootstrap with the join token",
		Long: `Install the kubelet, write its KubeletConfiguration and kubelet.service and start
it. On a joining host the kubelet first authenticates with the join token
(bootstrap-kubelet.conf, 0600) and obtains its client certificate through a CSR
that the controller-manager approves; its serving certificate is requested the
same way and approved by kubeforge's CSR approver. The phase ends when the
kubelet holds its client certificate.`,
		Run: func(d workflow.RunData) error {
			data, err := data(d, "kubelet")
			if err != nil {
				return err
			}
			o := kubelet.Options{Host: data.Host(), Cluster: data.Config(), Node: *data.Node(), BundleDir: data.BundleDir(),
				CertDir: data.CertDir(), KubeconfigDir: data.KubeconfigDir(), Taints: taints(data.Node()), DryRun: data.DryRun(),
				Logf: data.Logger().Printf}
			disc, err := data.Discovered()
			if err != nil {
				return err
			}
			if disc != nil { // joining: bootstrap with the token
				server, err := joinServer(data, disc.Server)
				if err != nil {
					return err
				}
				o.Bootstrap = &kubelet.Bootstrap{Server: server, CAPEM: disc.CAPEM, Token: disc.Token.String()}
			}
			res, err := kubelet.Ensure(data.Context(), o)
			if err != nil {
				return err
			}
			return workflow.Outcome(data.Logger(), res.Changed, res.Detail)
		},
	}
}

// KubeProxyPhase installs and starts kube-proxy.
func KubeProxyPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "kube-proxy",
		Short: "Install and start kube-proxy (iptables mode) with its own identity",
		Long: `Install kube-proxy, write its KubeProxyConfiguration (iptables mode) and
kube-proxy.service and start it. On the control-plane host its kubeconfig is
issued from the cluster CA; a joined node requests a system:kube-proxy client
certificate with a CSR under its own node identity. The phase ends when
kube-proxy has programmed its service rules.`,
		Run: func(d workflow.RunData) error {
			data, err := data(d, "kube-proxy")
			if err != nil {
				return err
			}
			ctx, h := data.Context(), data.Host()
			var creds kubeproxy.Credentials
			disc, err := data.Discovered()
			if err != nil {
				return err
			}
			if disc != nil { // joining: a CSR under the node's identity
				server, err := joinServer(data, disc.Server)
				if err != nil {
					return err
				}
				creds = &lazyCSR{data: data, server: server, caPEM: disc.CAPEM}
			} else {
				spec, err := certs.SpecFromConfig(data.Config(), data.Node().Name)
				if err != nil {
					return err
				}
				creds = kubeproxy.StaticCredentials{Issue: func(ctx context.Context) ([]byte, error) {
					p := &certs.PKI{Spec: spec, CertDir: data.CertDir(), KubeconfigDir: data.KubeconfigDir(), FS: certs.HostFS{Ctx: ctx, Host: h}}
					if err := p.CreateKubeconfigs(certs.KubeconfigKubeProxy); err != nil {
						return nil, err
					}
					return h.ReadFile(ctx, kubeproxy.KubeconfigPath(data.KubeconfigDir()))
				}}
			}
			res, err := kubeproxy.Ensure(ctx, kubeproxy.Options{Host: h, Cluster: data.Config(), Node: *data.Node(), BundleDir: data.BundleDir(),
				CertDir: data.CertDir(), KubeconfigDir: data.KubeconfigDir(), Credentials: creds, DryRun: data.DryRun(), Logf: data.Logger().Printf})
			if err != nil {
				return err
			}
			return workflow.Outcome(data.Logger(), res.Changed, res.Detail)
		},
	}
}

// lazyCSR builds the node-identity client only when a certificate is needed.
type lazyCSR struct {
	data   rundata.Data
	server string
	caPEM  []byte
}

func (l *lazyCSR) Describe() string {
	return "client certificate requested by node " + l.data.Node().Name + " with a CSR"
}

func (l *lazyCSR) Kubeconfig(ctx context.Context) ([]byte, error) {
	// No request timeout: the client watches the CSR until it is signed.
	cli, err := nodeClient(ctx, l.data, kubeclient.NoTimeout)
	if err != nil {
		return nil, err
	}
	c := &kubeproxy.CSRCredentials{Client: cli, NodeName: l.data.Node().Name, ClusterName: l.data.Config().Metadata.Name,
		Server: l.server, CAPEM: l.caPEM, KeyAlg: certs.KeyAlgorithm(l.data.Config().Spec.Certificates.KeyAlgorithm)}
	return c.Kubeconfig(ctx)
}

// NodeClient is an API client acting as this node (its kubelet.conf).
func NodeClient(ctx context.Context, data rundata.Data) (*kubeclient.Client, error) {
	return nodeClient(ctx, data, 0)
}

func nodeClient(ctx context.Context, data rundata.Data, timeout time.Duration) (*kubeclient.Client, error) {
	p := path.Join(data.KubeconfigDir(), "kubelet.conf")
	kc, err := data.Host().ReadFile(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (the kubelet phase writes it)", p, err)
	}
	return kubeclient.New(kc, kubeclient.Options{Timeout: timeout})
}

// WaitNodePhase waits until the Node is Ready and its kubelet holds an approved
// serving certificate; on a joining host it then deletes the bootstrap
// kubeconfig, whose token is no longer needed.
func WaitNodePhase() workflow.Phase {
	return workflow.Phase{
		Name:  "wait-node",
		Short: "Wait until the node is registered and Ready",
		Long: `Wait (up to 4 minutes) until this host's Node is Ready and the kubelet's
serving certificate, issued through an approved CSR, is on disk. Then the
bootstrap kubeconfig with the join token is deleted: the kubelet has its own
certificate and renews it itself.`,
		Run: func(d workflow.RunData) error {
			data, err := data(d, "wait-node")
			if err != nil {
				return err
			}
			if data.DryRun() {
				data.Logger().Printf("dry run: would wait for Node %s to be Ready", data.Node().Name)
				return nil
			}
			ctx, h := data.Context(), data.Host()
			if !containerd.HasCNIConfig(ctx, h) {
				return workflow.Unchanged("no CNI configuration in %s (was the overlay phase skipped?): Node %s cannot become Ready until a pod network is configured, so not waiting",
					containerd.CNIConfDir, data.Node().Name)
			}
			cli, err := NodeClient(ctx, data)
			if err != nil {
				return err
			}
			took, err := kubelet.WaitReady(ctx, cli, data.Node().Name, 4*time.Minute, data.Logger().Printf)
			if err != nil {
				return err
			}
			if err := kubelet.WaitServingCert(ctx, h, 2*time.Minute); err != nil {
				return err
			}
			removed := false
			bk := path.Join(data.KubeconfigDir(), "bootstrap-kubelet.conf")
			if _, err := h.Stat(ctx, bk); err == nil {
				if err := h.Remove(ctx, bk); err != nil {
					return err
				}
				removed = true
			}
			if took < time.Second && !removed {
				return workflow.Unchanged("Node %s is Ready", data.Node().Name)
			}
			msg := fmt.Sprintf("Node %s is Ready (after %s), serving certificate issued", data.Node().Name, took.Round(10*time.Millisecond))
			if removed {
				msg += "; removed " + bk + " (the join token is no longer needed)"
			}
			data.Logger().Printf("%s", msg)
			return nil
		},
	}
}
