package cmd

import (
	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/components/cleanup"
	"github.com/kubeforge/kubeforge/phases/resetphases"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

func init() { register(newResetCmd) }

func newResetCmd() *cobra.Command {
	var (
		flags rundata.Flags
		force bool
	)
	runner := workflow.NewRunner()
	for _, p := range resetphases.Phases() {
		runner.AppendPhase(p)
	}
	c := &cobra.Command{
		Use:   "reset",
		Short: "Remove what kubeforge init or join set up on this host",
		Example: `  kubeforge reset --config cluster.yaml
  kubeforge reset --config cluster.yaml --force`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, args []string) error { return runner.Run(args) },
	}
	flags.AddFlags(c.PersistentFlags())
	c.PersistentFlags().BoolVarP(&force, "force", "f", false, "Reset without asking for confirmation")
	runner.SetDataInitializer(nodeData(&flags, false, func(c *cobra.Command, n *rundata.Node) error {
		// Before the question and before any phase: reset never removes a
		// system directory someone named as kubeforge's.
		if err := cleanup.CheckDirs(n.Context(), n.Host(), n.Config(), n.CertDir(), n.KubeconfigDir()); err != nil {
			return err
		}
		// A dry run removes nothing, so there is nothing to confirm.
		if force || n.DryRun() {
			return nil
		}
		return resetphases.Confirm(c.InOrStdin(), c.OutOrStdout(), n.NodeName())
	}))
	runner.BindToCommand(c)
	return c
}
