package nodephases

import (
	"fmt"
	"path"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/kubelet/csrapprover"
	"github.com/kubeforge/kubeforge/components/kubeproxy"
	"github.com/kubeforge/kubeforge/components/noderuntime"
	"github.com/kubeforge/kubeforge/components/overlay"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// RunOptions are the node runtime's settings for a host of these roles with
// these directories.
func RunOptions(roles []config.Role, certDir, kubeconfigDir string) noderuntime.RunOptions {
	return noderuntime.RunOptions{
		Roles:              roles,
		OverlayConfig:      overlay.ConfigPath,
		ApproverKubeconfig: path.Join(kubeconfigDir, csrapprover.KubeconfigName),
		APIServerCert:      path.Join(certDir, "apiserver.crt"),
		APILBKubeconfig:    kubeproxy.KubeconfigPath(kubeconfigDir),
		APILBListen:        noderuntime.DefaultAPILBListen,
		StatusAddress:      noderuntime.DefaultStatusAddress,
	}
}

// NodeRuntimePhase installs and starts kubeforge-node.service.
func NodeRuntimePhase() workflow.Phase {
	return workflow.Phase{
		Name:  "node-runtime",
		Short: "Run kubeforge's one process on this host: overlay agent, CSR approver, API load balancer",
		Long: `Install the kubeforge binary as ` + noderuntime.BinaryPath + ` and ` + noderuntime.UnitName + `
(` + "`kubeforge node run`" + `), and start it, or restart it when the binary, the unit or a
file a feature reads changed. It is kubeforge's one process on the host, its
features chosen by the host's roles, each a goroutine under one supervisor that
restarts a failed feature with backoff: the overlay agent (every host; its
config from the overlay phase; none when that phase was skipped for another CNI), the CSR approver (control-plane hosts; its
kubeconfig from the csr-approver phase) and the node-local API load balancer
on ` + noderuntime.DefaultAPILBListen + ` (every host; its pool from the kubernetes
EndpointSlices, read with kube-proxy's identity). Each feature uses its own
credential. The per-feature units of earlier versions (` + strings.Join(noderuntime.LegacyUnits, ", ") + `)
are stopped, disabled and removed. The phase ends when the overlay agent holds
its subnet and has programmed every peer.`,
		Run: func(d workflow.RunData) error {
			data, err := rundata.From(d, "node-runtime")
			if err != nil {
				return err
			}
			if data.Node() == nil {
				return fmt.Errorf("phase node-runtime needs the cluster configuration (--config, or the join command's discovery)")
			}
			ctx, h := data.Context(), data.Host()
			o := RunOptions(data.Node().Roles, data.CertDir(), data.KubeconfigDir())
			if _, err := h.Stat(ctx, o.OverlayConfig); err != nil && !data.DryRun() {
				if !host.IsNotExist(err) {
					return err
				}
				// The overlay phase was skipped: the pods are another CNI's.
				data.Logger().Printf("no %s (the overlay phase did not run): no overlay agent; the pod network is left to another CNI", o.OverlayConfig)
				o.OverlayConfig = ""
			}
			changed, err := noderuntime.Install(ctx, noderuntime.InstallOptions{
				Host: h, Args: o.Args(), Inputs: o.Inputs(), Logf: data.Logger().Printf,
			})
			if err != nil {
				return err
			}
			detail := fmt.Sprintf("%s running: %s", noderuntime.UnitName, strings.Join(o.Features(), ", "))
			if !data.DryRun() && o.OverlayConfig != "" {
				s, err := overlay.RemoteStatus(ctx, h)
				if err != nil {
					return err
				}
				detail += fmt.Sprintf("; overlay: %s holds %s on %s, %d peers programmed", s.Node, s.Subnet, s.Device, len(s.Peers))
			}
			if !changed {
				detail += " (unchanged)"
			}
			return workflow.Outcome(data.Logger(), changed, detail)
		},
	}
}
