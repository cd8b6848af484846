package cmd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/phases/rundata"
)

func init() { register(newEtcdCmd) }

func newEtcdCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "etcd",
		Short: "Inspect the cluster's etcd members and take, list and verify snapshots",
	}
	c.AddCommand(newEtcdStatusCmd(), newEtcdSnapshotCmd())
	return c
}

func newEtcdStatusCmd() *cobra.Command {
	def := etcd.ClientTLSFiles(rundata.DefaultCertDir)
	var (
		endpoints []string
		files     = def
		output    string
		timeout   time.Duration
	)
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the etcd members: IDs, learners, leader, health, raft index and DB size",
		Long: `Show every member of the etcd cluster as the cluster and the member itself report
it: ID, name, client URL, learner flag, leader, health (a linearizable read for
voting members), raft term and index, database size and version. The member list
comes from the first endpoint that answers; every member is then asked directly.
Exits non-zero when a member is unhealthy.`,
		Example: `  kubeforge etcd status
  kubeforge etcd status --endpoints 192.168.161.151:2379 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			eps := make([]string, 0, len(endpoints))
			for _, e := range endpoints {
				if !strings.Contains(e, "://") {
					e = "https://" + e
				}
				eps = append(eps, e)
			}
			tlsCfg, err := files.Config(etcd.LocalRead)
			if err != nil {
				return err
			}
			cli, err := etcd.NewClient(eps, tlsCfg)
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			st, err := etcd.GetClusterStatus(ctx, cli, tlsCfg)
			if err != nil {
				return err
			}
			if output == "json" {
				err = st.WriteJSON(cmd.OutOrStdout())
			} else {
				err = st.WriteTable(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			var sick []string
			for _, m := range st.Members {
				if !m.Healthy {
					sick = append(sick, m.IDHex)
				}
			}
			if len(sick) > 0 {
				return fmt.Errorf("%d of %d etcd members unhealthy: %s", len(sick), len(st.Members), strings.Join(sick, ", "))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringSliceVar(&endpoints, "endpoints", []string{fmt.Sprintf("https://127.0.0.1:%d", etcd.DefaultClientPort)}, "etcd client URLs (host:port means https)")
	f.StringVar(&files.CA, "cacert", def.CA, "etcd CA certificate")
	f.StringVar(&files.Cert, "cert", def.Cert, "client certificate signed by the etcd CA")
	f.StringVar(&files.Key, "key", def.Key, "client certificate's private key")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&timeout, "timeout", 15*time.Second, "how long to wait for the cluster's answers")
	return c
}
