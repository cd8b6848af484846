package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
	"github.com/kubeforge/kubeforge/components/renewal"
	"github.com/kubeforge/kubeforge/phases/apply"
	"github.com/kubeforge/kubeforge/phases/initphases"
	"github.com/kubeforge/kubeforge/phases/status"
)

func init() { register(newStatusCmd) }

func newStatusCmd() *cobra.Command {
	var (
		dirs       certDirFlags
		ssh        sshFlags
		file       string
		nodeName   string
		output     string
		timeout    time.Duration
		configPath string
	)
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the health of this host, or of every host of a configuration",
		Long: `On a host: kubeforge's units and whether each runs, the installed versions, the
soonest certificate expiry and what expires within the renewal window, the etcd
cluster (members, health, leader), this host's Node (on a control-plane host all
Nodes), the overlay agent's subnet and peers, and the etcd backups (snapshots,
the last scheduled run). Every problem gets one line; the command exits non-zero
when there is any.

With -f, every host of the configuration is asked over SSH (as apply reaches
them) and the answer is one row a host, then every host's problems.`,
		Example: `  kubeforge status
  kubeforge status -o json
  kubeforge status -f cluster.yaml --identity ~/.ssh/id_ed25519`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: want text or json", output)
			}
			ctx, cancel := context.WithTimeout(cmdContext(cmd), timeout)
			defer cancel()
			if file != "" {
				return statusOfCluster(ctx, cmd, file, ssh, output)
			}
			h := local.New(local.Options{Name: nodeName})
			cfg, node, _, cfgErr := renewal.LoadConfig(ctx, h, renewal.ConfigSource{Path: configPath, HostCopy: initphases.ClusterConfigPath, NodeName: nodeName})
			name := nodeName
			if node != nil {
				name = node.Name
			} else if name == "" {
				name, _ = os.Hostname()
			}
			rep, err := status.Host(ctx, status.Options{
				Host: h, Cluster: cfg, NodeName: name, CertDir: dirs.certDir, KcDir: dirs.kubeconfigDir,
				KubeforgeVer: Version, Probes: status.LocalProbes(cfg, dirs.certDir, dirs.kubeconfigDir),
			})
			if err != nil {
				return err
			}
			if cfgErr != nil {
				rep.Problems = append([]string{"configuration: " + cfgErr.Error()}, rep.Problems...)
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				err = enc.Encode(rep)
			} else {
				err = rep.WriteText(cmd.OutOrStdout(), time.Now())
			}
			if err != nil {
				return err
			}
			if n := len(rep.Problems); n > 0 {
				return fmt.Errorf("%s: %d problems", name, n)
			}
			return nil
		},
	}
	dirs.add(c)
	ssh.addFlags(c.Flags())
	c.Flags().StringVarP(&file, "file", "f", "", "ask every host of this cluster configuration over SSH")
	c.Flags().StringVar(&configPath, "config", "", "this host's cluster configuration (default: "+initphases.ClusterConfigPath+", if present)")
	c.Flags().StringVar(&nodeName, "node-name", "", "this host's name in the cluster configuration (default: found by hostname or address)")
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	c.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for every answer")
	return c
}

func statusOfCluster(ctx context.Context, cmd *cobra.Command, file string, ssh sshFlags, output string) error {
	cluster, err := config.Load(file)
	if err != nil {
		return err
	}
	reps := status.Cluster(ctx, status.ClusterOptions{
		Hosts:  cluster.Spec.Hosts,
		Binary: apply.RemoteBinary,
		Dial: func(_ context.Context, h config.Host) (host.Host, error) {
			return ssh.open(h)
		},
	})
	if output == "json" {
		type row struct {
			Host   string         `json:"host"`
			Report *status.Report `json:"report,omitempty"`
			Error  string         `json:"error,omitempty"`
		}
		rows := make([]row, len(reps))
		for i, r := range reps {
			rows[i] = row{Host: r.Name, Report: r.Report}
			if r.Err != nil {
				rows[i].Error = r.Err.Error()
			}
		}
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		err = enc.Encode(rows)
	} else {
		err = status.WriteClusterTable(cmd.OutOrStdout(), reps, time.Now())
	}
	if err != nil {
		return err
	}
	if n := status.Problems(reps); n > 0 {
		return fmt.Errorf("%s: %d problems on %d hosts", cluster.Metadata.Name, n, len(reps))
	}
	return nil
}
