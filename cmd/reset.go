package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/phases/apply"

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
		all   bool
		ssh   sshFlags
	)
	runner := workflow.NewRunner()
	for _, p := range resetphases.Phases() {
		runner.AppendPhase(p)
	}
	c := &cobra.Command{
		Use:   "reset",
		Short: "Remove what kubeforge init or join set up on this host",
		Example: `  kubeforge reset --config cluster.yaml
  kubeforge reset --config cluster.yaml --force
  kubeforge reset --all --config cluster.yaml --force     # every host, over SSH`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all {
				return runResetAll(cmd, flags.ConfigPath, force, ssh)
			}
			if ssh != (sshFlags{}) {
				return errors.New("--identity, --known-hosts and --ssh-accept-new-host-key only apply with --all")
			}
			return runner.Run(args)
		},
	}
	flags.AddFlags(c.PersistentFlags())
	c.PersistentFlags().BoolVarP(&force, "force", "f", false, "Reset without asking for confirmation, also the cluster's last control-plane host")
	c.Flags().BoolVar(&all, "all", false, "Reset every host of --config over SSH, in parallel (the inverse of 'kubeforge apply')")
	ssh.addFlags(c.Flags())
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
		// The last control-plane host takes the cluster's API with it: only
		// with --force.
		if err := resetphases.CheckNotLastControlPlane(n.Context(), n.Host(), n.KubeconfigDir()); err != nil {
			return err
		}
		return resetphases.Confirm(c.InOrStdin(), c.OutOrStdout(), n.NodeName())
	}))
	runner.BindToCommand(c)
	return c
}

// runResetAll resets every host of the configuration over SSH.
func runResetAll(cmd *cobra.Command, configPath string, force bool, f sshFlags) error {
	if configPath == "" {
		return errors.New("--all needs --config: the hosts to reset come from the cluster configuration")
	}
	cluster, err := config.Load(configPath)
	if err != nil {
		return err
	}
	if !force {
		fmt.Fprintf(cmd.OutOrStdout(), "[reset] every host of cluster %q will be reset: %v\n", cluster.Metadata.Name, cluster.HostNames())
		if err := resetphases.Confirm(cmd.InOrStdin(), cmd.OutOrStdout(), strings.Join(cluster.HostNames(), ", ")); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err = apply.ResetAll(ctx, apply.Options{
		Cluster: cluster,
		Out:     cmd.OutOrStdout(),
		Dial:    func(_ context.Context, h config.Host) (host.Host, error) { return f.open(h) },
	})
	return err
}
