package cmd

import (
	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/phases/joinphases"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

func init() { register(newJoinCmd) }

func newJoinCmd() *cobra.Command {
	var flags rundata.Flags
	runner := workflow.NewRunner()
	for _, p := range joinphases.Phases() {
		runner.AppendPhase(p)
	}
	c := &cobra.Command{
		Use:   "join",
		Short: "Add this host to an existing cluster",
		Long: `Add this host to an existing cluster with the roles the cluster configuration
gives it (etcd member, worker). Every phase is idempotent, so join can be re-run.`,
		Example: `  kubeforge join --config cluster.yaml
  kubeforge join --config cluster.yaml --skip-phases images`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, args []string) error { return runner.Run(args) },
	}
	flags.AddFlags(c.PersistentFlags())
	runner.SetDataInitializer(nodeData(&flags, true, nil))
	runner.BindToCommand(c)
	return c
}
