package cmd

import (
	"log"
	"os"
	"os/signal"
	"path"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/kubelet/csrapprover"
	"github.com/kubeforge/kubeforge/components/kubeproxy"
	"github.com/kubeforge/kubeforge/components/noderuntime"
	"github.com/kubeforge/kubeforge/components/noderuntime/features"
	"github.com/kubeforge/kubeforge/components/overlay"
)

func newNodeRunCmd() *cobra.Command {
	o := noderuntime.RunOptions{}
	var roles string
	c := &cobra.Command{
		Use:   "run",
		Short: "Run this host's node runtime (what " + noderuntime.UnitName + " starts)",
		Long: `Run kubeforge's one process on this host in the foreground: the overlay agent
(every host), the CSR approver (control-plane hosts) and the node-local API load
balancer on loopback (every host), each a goroutine under one supervisor that
restarts a failed feature with backoff, until SIGTERM. Each feature uses its own
credential. The init and join phases install it as a unit; it is not meant to be
run by hand.`,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, r := range strings.Split(roles, ",") {
				if r = strings.TrimSpace(r); r != "" {
					o.Roles = append(o.Roles, config.Role(r))
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// journald timestamps each line already.
			logger := log.New(os.Stderr, "", 0)
			return features.Run(ctx, o, logger.Printf)
		},
	}
	f := c.Flags()
	f.StringVar(&roles, "roles", "", "This host's roles, comma-separated (control-plane, etcd, worker): they choose the features")
	f.StringVar(&o.OverlayConfig, "overlay-config", overlay.ConfigPath, "The overlay agent's configuration file; empty runs no overlay agent (another CNI networks the pods)")
	f.StringVar(&o.ApproverKubeconfig, "approver-kubeconfig", path.Join(certs.DefaultKubeconfigDir, csrapprover.KubeconfigName), "Kubeconfig of the CSR approver's own identity (control-plane hosts)")
	f.StringVar(&o.APIServerCert, "apiserver-cert", "", "The apiserver's serving certificate on this host: no kubelet serving certificate may carry its names")
	f.StringVar(&o.APILBKubeconfig, "apilb-kubeconfig", kubeproxy.KubeconfigPath(certs.DefaultKubeconfigDir), "Kubeconfig the API load balancer reads the kubernetes EndpointSlices with (kube-proxy's)")
	f.StringVar(&o.APILBListen, "apilb-listen", noderuntime.DefaultAPILBListen, "Loopback address of the node-local API load balancer")
	f.StringVar(&o.StatusAddress, "status-address", noderuntime.DefaultStatusAddress, "Loopback address of the runtime's /status")
	return c
}

func newNodeStatusCmd() *cobra.Command {
	return newDaemonStatusCmd("Show this host's node runtime: its features and the API load balancer's pool",
		"The runtime's status address (host:port)", noderuntime.DefaultStatusAddress, noderuntime.FetchStatus)
}
