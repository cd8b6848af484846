package cmd

import (
	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/phases/initphases"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

func init() { register(newInitCmd) }

func newInitCmd() *cobra.Command {
	var flags rundata.Flags
	runner := workflow.NewRunner()
	for _, p := range initphases.Phases() {
		runner.AppendPhase(p)
	}
	c := &cobra.Command{
		Use:   "init",
		Short: "Make this host the first control-plane node of a new cluster",
		Long: `Make this host the first control-plane node of a new cluster: PKI, etcd,
control-plane units, bootstrap token and overlay. Every phase is idempotent, so
init can be re-run; phases already in place report "unchanged".`,
		Example: `  kubeforge init --config cluster.yaml
  kubeforge init --config cluster.yaml --dry-run
  kubeforge init phase certs apiserver --config cluster.yaml`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, args []string) error { return runner.Run(args) },
	}
	// Persistent, so `init phase ...` subcommands take them as well.
	flags.AddFlags(c.PersistentFlags())
	runner.SetDataInitializer(nodeData(&flags, true, nil))
	runner.BindToCommand(c)
	return c
}

// nodeData returns the data initializer shared by init, join and reset. The flags
// are read when a run starts, after cobra parsed them. check, when set, runs once
// the data exists (reset's confirmation).
func nodeData(flags *rundata.Flags, requireConfig bool, check func(*cobra.Command, *rundata.Node) error) func(*cobra.Command, []string) (workflow.RunData, error) {
	return func(c *cobra.Command, _ []string) (workflow.RunData, error) {
		n, err := rundata.New(c.Context(), *flags, rundata.Options{Out: c.OutOrStdout(), RequireConfig: requireConfig})
		if err != nil {
			return nil, err
		}
		if check != nil {
			if err := check(c, n); err != nil {
				_ = n.Close()
				return nil, err
			}
		}
		return n, nil
	}
}
