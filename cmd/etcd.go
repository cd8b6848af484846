package cmd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/phases/rundata"
)

func init() { register(newEtcdCmd) }

func newEtcdCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "etcd",
		Short: "Inspect the cluster's etcd members and take, list and verify snapshots",
	}
	c.AddCommand(newEtcdStatusCmd(), newEtcdRemoveMemberCmd(), newEtcdSnapshotCmd())
	return c
}

// clientTLS is the credential of the etcd commands: the certificate and key
// given, or else the administrator certificate a control-plane host (one with
// the etcd CA key) issues itself in memory, or else the health-check client.
func clientTLS(files etcd.TLSFiles, certDir string, needAdmin bool) (*tls.Config, error) {
	if files.Cert != "" || files.Key != "" {
		return files.Config(etcd.LocalRead)
	}
	admin, err := etcd.AdminTLS(etcd.LocalRead, certDir)
	if err == nil {
		return admin, nil
	}
	if needAdmin || !errors.Is(err, etcd.ErrNoAdminCredential) {
		return nil, err
	}
	def := etcd.ClientTLSFiles(certDir)
	def.CA = files.CA
	return def.Config(etcd.LocalRead)
}

// clusterStatus connects to the endpoints (host:port means https) and reads
// the cluster's members and their health; the caller closes the client.
func clusterStatus(ctx context.Context, endpoints []string, tlsCfg *tls.Config) (*clientv3.Client, *etcd.ClusterStatus, error) {
	eps := make([]string, 0, len(endpoints))
	for _, e := range endpoints {
		if !strings.Contains(e, "://") {
			e = "https://" + e
		}
		eps = append(eps, e)
	}
	cli, err := etcd.NewClient(eps, tlsCfg)
	if err != nil {
		return nil, nil, err
	}
	st, err := etcd.GetClusterStatus(ctx, cli, tlsCfg)
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	return cli, st, nil
}

func newEtcdRemoveMemberCmd() *cobra.Command {
	var (
		endpoints []string
		certDir   string
		force     bool
		timeout   time.Duration
	)
	c := &cobra.Command{
		Use:   "remove-member NAME",
		Short: "Remove an etcd member from the cluster (on a control-plane host)",
		Long: `Remove the named member from the etcd cluster. Only etcd's administrator may
change the membership, and only a control-plane host (one holding the etcd CA key)
has that credential: etcd member hosts cannot remove members, so run this on the
control plane before ` + "`kubeforge reset`" + ` of a member host. It refuses, changing nothing,
when the removal would leave the remaining members without a healthy quorum or
would remove the last voting member (--force overrides the quorum check).`,
		Example: `  kubeforge etcd remove-member node02`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			tlsCfg, err := clientTLS(etcd.TLSFiles{}, certDir, true)
			if err != nil {
				return fmt.Errorf("remove-member needs etcd's administrator credential: %w", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			cli, st, err := clusterStatus(ctx, endpoints, tlsCfg)
			if err != nil {
				return err
			}
			defer cli.Close()
			out := cmd.OutOrStdout()
			id, err := checkEtcdRemoval(out, st, name, force)
			if err != nil || id == 0 {
				return err
			}
			if err := removeEtcdMember(ctx, out, cli, tlsCfg, st, id); err != nil {
				return err
			}
			fmt.Fprintf(out, "[etcd] removed member %s (%x); run `kubeforge reset` on %s to remove etcd from it\n", name, id, name)
			return nil
		},
	}
	f := c.Flags()
	f.StringSliceVar(&endpoints, "endpoints", []string{fmt.Sprintf("https://127.0.0.1:%d", etcd.DefaultClientPort)}, "etcd client URLs (host:port means https)")
	f.StringVar(&certDir, "cert-dir", rundata.DefaultCertDir, "directory of the PKI (etcd/ca.crt and etcd/ca.key)")
	f.BoolVar(&force, "force", false, "remove even when the remaining members would have no healthy quorum")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the cluster")
	return c
}

// checkEtcdRemoval finds member name and checks that removing it keeps a
// healthy quorum (--force overrides that, never the last voting member). It
// returns the member's ID, 0 when name is not a member (said on out).
func checkEtcdRemoval(out io.Writer, st *etcd.ClusterStatus, name string, force bool) (uint64, error) {
	var id uint64
	for _, m := range st.Members {
		if m.Name == name {
			id = m.ID
		}
	}
	if id == 0 {
		fmt.Fprintf(out, "[etcd] %s is not a member of the etcd cluster; nothing to do\n", name)
		return 0, nil
	}
	if err := etcd.CheckRemoval(st, id); err != nil {
		if !force || errors.Is(err, etcd.ErrLastMember) {
			return 0, fmt.Errorf("refusing to remove etcd member %s: %w", name, err)
		}
		fmt.Fprintf(out, "[etcd] WARNING: %v (forced)\n", err)
	}
	return id, nil
}

// removeEtcdMember removes member id (checked by checkEtcdRemoval).
func removeEtcdMember(ctx context.Context, out io.Writer, cli *clientv3.Client, tlsCfg *tls.Config, st *etcd.ClusterStatus, id uint64) error {
	logf := func(f string, a ...any) { fmt.Fprintf(out, "[etcd] "+f+"\n", a...) }
	return etcd.RemoveMember(ctx, cli, tlsCfg, st, id, logf)
}

func newEtcdStatusCmd() *cobra.Command {
	def := etcd.ClientTLSFiles(rundata.DefaultCertDir)
	var (
		endpoints []string
		files     = etcd.TLSFiles{CA: def.CA}
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
Exits non-zero when a member is unhealthy.

etcd runs with authentication: on a control-plane host (one with the etcd CA key)
the command is etcd's administrator and shows everything; on an etcd member host
it has only the health-check certificate, which shows health but not the raft
and database details.`,
		Example: `  kubeforge etcd status
  kubeforge etcd status --endpoints 192.168.161.151:2379 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			tlsCfg, err := clientTLS(files, rundata.DefaultCertDir, false)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			cli, st, err := clusterStatus(ctx, endpoints, tlsCfg)
			if err != nil {
				return err
			}
			defer cli.Close()
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
	f.StringVar(&files.Cert, "cert", "", "client certificate signed by the etcd CA (default: an administrator certificate issued in memory on a host with the etcd CA key, else "+def.Cert+")")
	f.StringVar(&files.Key, "key", "", "client certificate's private key (with --cert)")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&timeout, "timeout", 15*time.Second, "how long to wait for the cluster's answers")
	return c
}
