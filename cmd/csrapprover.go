package cmd

import (
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/components/kubeclient"
	"github.com/kubeforge/kubeforge/components/kubelet/csrapprover"
)

func init() { register(newCSRApproverCmd) }

func newCSRApproverCmd() *cobra.Command {
	var kubeconfig, apiserverCert string
	var resync time.Duration
	c := &cobra.Command{
		Use:   "csr-approver",
		Short: "Approve kubelet serving and kube-proxy CSRs of known nodes (runs as " + csrapprover.UnitName + ")",
		Long: `Watch CertificateSigningRequests and approve those kubeforge's nodes need and
Kubernetes does not approve itself: kubelet serving certificates for exactly the
requesting node's own name and the addresses the cluster configuration records
for it, and kube-proxy client certificates requested by a
node identity. Everything else is left pending. Also deletes Nodes whose
'kubeforge reset' asked for it. 'kubeforge init' installs it as a unit on the
control-plane host; it is not meant to be run by hand.`,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := os.ReadFile(kubeconfig)
			if err != nil {
				return err
			}
			cli, err := kubeclient.New(data, kubeclient.Options{Timeout: kubeclient.NoTimeout})
			if err != nil {
				return fmt.Errorf("%s: %w", kubeconfig, err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			logger := log.New(cmd.ErrOrStderr(), "", 0)
			logger.Printf("kubeforge csr-approver: watching CSRs and Nodes as %s", csrapprover.User)
			a := &csrapprover.Approver{Client: cli, Logf: logger.Printf, APIServerCert: apiserverCert}
			return a.Run(ctx, resync)
		},
	}
	c.Flags().StringVar(&kubeconfig, "kubeconfig", "/etc/kubernetes/"+csrapprover.KubeconfigName, "Kubeconfig of the approver's own identity")
	c.Flags().StringVar(&apiserverCert, "apiserver-cert", "", "The apiserver's serving certificate on this host: no kubelet serving certificate may carry its names")
	c.Flags().DurationVar(&resync, "resync", 30*time.Second, "Look at all pending CSRs at least this often, besides watching")
	return c
}
