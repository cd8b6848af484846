// Package cmd wires kubeforge's cobra commands to the packages that do the work.
// Nothing here holds logic: a command parses flags, builds the objects it needs and
// calls into bootstrap/, certs/, preflight/, phases/ or components/.
package cmd

import (
	"github.com/spf13/cobra"
)

// registered holds the constructors of the top-level subcommands. Each command file
// registers its own constructor from init(), so adding a command touches one file.
var registered []func() *cobra.Command

func register(f func() *cobra.Command) { registered = append(registered, f) }

// NewRootCommand builds the kubeforge command tree.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "kubeforge",
		Short: "Bootstrap a production Kubernetes cluster from plain Linux hosts, the binary way",
		Long: `kubeforge installs, configures and supervises the real upstream binaries
(etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet,
kube-proxy) as systemd units, with a cfssl-issued PKI and a VXLAN overlay.`,
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	for _, f := range registered {
		root.AddCommand(f())
	}
	return root
}
