package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/phases/apply"
)

func init() { register(newApplyCmd) }

type applyFlags struct {
	ssh                        sshFlags
	configPath, bundle, binary string
	runDir                     string
	fix                        bool
}

func newApplyCmd() *cobra.Command {
	var f applyFlags
	c := &cobra.Command{
		Use:   "apply",
		Short: "Make or converge the whole cluster of a configuration over SSH",
		Long: `From one machine, reach every host of the configuration over SSH (host keys
must be known), install kubeforge, the configuration and the bundle files a host
misses (by checksum), run preflight on every host in parallel (with --fix its
fixes), 'kubeforge init' on the first control-plane host and 'kubeforge join' on
the others: etcd members one at a time, plain workers in parallel. Ends with a
table of hosts; a log per host is kept in the run directory.

Every host is reached before anything changes: a wrong key, a changed host key or
an unreachable host stops apply naming the host. A second apply changes nothing;
an interrupted one converges when run again. A host added to the file is joined
by the next apply; 'kubeforge reset --all' tears the cluster down.`,
		Example: `  kubeforge apply -f cluster.yaml
  kubeforge apply -f cluster.yaml --fix --bundle ~/.cache/kubeforge/bundles/v1.34.4-v3.6.16
  kubeforge apply -f cluster.yaml --known-hosts ./known_hosts --identity ~/.ssh/id_ed25519`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runApply(cmd, f) },
	}
	fs := c.Flags()
	fs.StringVarP(&f.configPath, "file", "f", "", "Path to the kubeforge cluster configuration file")
	fs.StringVar(&f.bundle, "bundle", "", "Local bundle directory to copy to hosts that miss files of it (default: every host has one at "+apply.RemoteBundle+")")
	fs.StringVar(&f.binary, "binary", "", "kubeforge executable to install on the hosts (default: this one)")
	fs.StringVar(&f.runDir, "run-dir", "", "Directory for the per-host logs (default: a new directory under ~/.cache/kubeforge/apply)")
	fs.BoolVar(&f.fix, "fix", false, "Let preflight and join apply the fixes of failed checks")
	f.ssh.addFlags(fs)
	_ = c.MarkFlagRequired("file")
	return c
}

func runApply(cmd *cobra.Command, f applyFlags) error {
	raw, err := os.ReadFile(f.configPath)
	if err != nil {
		return err
	}
	cluster, err := config.Load(f.configPath)
	if err != nil {
		return err
	}
	if f.binary == "" {
		if f.binary, err = os.Executable(); err != nil {
			return err
		}
	}
	if f.runDir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("--run-dir: %w", err)
		}
		f.runDir = filepath.Join(cache, "kubeforge", "apply", cluster.Metadata.Name+"-"+time.Now().UTC().Format("20060102T150405Z"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err = apply.Apply(ctx, apply.Options{
		Cluster:    cluster,
		ConfigYAML: raw,
		Binary:     f.binary,
		BundleDir:  f.bundle,
		Fix:        f.fix,
		RunDir:     f.runDir,
		Out:        cmd.OutOrStdout(),
		Dial: func(_ context.Context, h config.Host) (host.Host, error) {
			return f.ssh.open(h)
		},
	})
	if err != nil {
		return errors.New("apply: " + err.Error())
	}
	return nil
}
