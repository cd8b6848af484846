package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/renewal"
	"github.com/kubeforge/kubeforge/phases/initphases"
)

func init() { register(newCertsCmd) }

func newCertsCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "certs",
		Short: "Inspect and renew the cluster's certificates on this host",
	}
	c.AddCommand(newCertsCheckExpirationCmd(), newCertsRenewCmd(), newCertsCertificateKeyCmd())
	return c
}

// certDirFlags are the two directories every certs subcommand works on.
type certDirFlags struct{ certDir, kubeconfigDir string }

func (f *certDirFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.certDir, "cert-dir", certs.DefaultCertDir, "directory of the certificates and keys")
	c.Flags().StringVar(&f.kubeconfigDir, "kubeconfig-dir", certs.DefaultKubeconfigDir, "directory of the kubeconfig files")
}

func newCertsCheckExpirationCmd() *cobra.Command {
	var (
		dirs       certDirFlags
		output     string
		warnWithin time.Duration
		configPath string
	)
	c := &cobra.Command{
		Use:   "check-expiration",
		Short: "List every certificate, kubeconfig client certificate and CA with its expiry",
		Long: `List every certificate, kubeconfig client certificate and CA with its expiry.
A certificate or CA that expires within the renewal window (--warn-within, by
default spec.certificates.autoRenew.renewBefore of the cluster configuration,
else 720h) gets a WARNING line on stderr with text output (the exit status stays 0: the report
itself succeeded; kubeforge-certs-renew.timer renews what is due).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			r, err := certs.CheckExpiration(certs.LocalFS{}, dirs.certDir, dirs.kubeconfigDir, time.Now())
			if err != nil {
				return err
			}
			if err := writeReport(cmd.OutOrStdout(), output, r, r.WriteText); err != nil {
				return err
			}
			if !cmd.Flags().Changed("warn-within") {
				if cfg, err := config.Load(configPath); err == nil {
					warnWithin = cfg.Spec.Certificates.AutoRenew.RenewBefore.Duration()
				}
				if warnWithin <= 0 {
					warnWithin = config.DefaultCertRenewBefore.Duration()
				}
			}
			if output == "text" {
				writeExpiryWarnings(cmd.ErrOrStderr(), r, warnWithin)
			}
			return nil
		},
	}
	dirs.add(c)
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	c.Flags().DurationVar(&warnWithin, "warn-within", 0, "warn about what expires within this long (default: spec.certificates.autoRenew.renewBefore of --config, else 720h)")
	c.Flags().StringVar(&configPath, "config", initphases.ClusterConfigPath, "cluster configuration with the renewal window")
	return c
}

// writeExpiryWarnings prints a WARNING line for each certificate and CA that
// expires within d and returns how many.
func writeExpiryWarnings(w io.Writer, r *certs.ExpirationReport, d time.Duration) int {
	n := 0
	for _, c := range r.Certificates {
		if c.Missing || c.Residual >= d {
			continue
		}
		n++
		how := "renew it: kubeforge certs renew " + c.Name
		if c.ExternallyManaged {
			how = "it is externally managed (no CA key here): renew it where its CA key is"
		}
		fmt.Fprintf(w, "WARNING: certificate %s (%s) expires %s, within the renewal window of %s; %s\n", c.Name, c.Path, expiresIn(c.Residual), d, how)
	}
	for _, c := range r.CAs {
		if c.Missing || c.Residual >= d {
			continue
		}
		n++
		fmt.Fprintf(w, "WARNING: CA %s (%s) expires %s, within the renewal window of %s; a CA is not renewed, it has to be rotated\n", c.Name, c.Path, expiresIn(c.Residual), d)
	}
	return n
}

func expiresIn(d time.Duration) string {
	if d <= 0 {
		return "expired"
	}
	return "in " + d.Round(time.Minute).String()
}

func newCertsRenewCmd() *cobra.Command {
	var (
		dirs       certDirFlags
		dryRun     bool
		noRestart  bool
		backupDir  string
		output     string
		configPath string
		nodeName   string
		within     time.Duration
	)
	c := &cobra.Command{
		Use:   "renew all|NAME...",
		Short: "Re-sign certificates and kubeconfig client certificates, then make the units that read them load them",
		Long: `Re-sign certificates from their existing CA, keeping subject, SANs and key
usages, with a new private key of the same kind, and rewrite the client
certificates embedded in kubeconfigs. The replaced files are copied to a
timestamped backup directory first. Certificates whose CA key is absent
(externally managed) are skipped.

Then the units on this host that read a renewed file and are running are dealt
with one at a time, in the order etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kubelet, kube-proxy, kubeforge-overlay, each only once the one
before is healthy again. etcd and kube-apiserver re-read every renewable file
they use by themselves: they are not restarted (no API request fails); instead
the certificates they serve (etcd's client and peer ports, the apiserver's
secure port) are checked to be the renewed ones, and a daemon still serving the
old one after 90s is restarted after all. The others are restarted; the
control-plane units are re-ensured from the cluster configuration (--config,
else the copy init keeps in ` + initphases.ClusterConfigPath + `), so their units
record the new inputs. A unit that does not get healthy stops the sequence; the
message names the backup to roll back from. --no-restart only renews;
--dry-run lists the files that would be renewed and what would happen to each
unit, and changes nothing.
--expiring-within D renews only those of the names that expire within D (what
kubeforge-certs-renew.timer runs); with none due it changes nothing.

Names: all, ` + strings.Join(certs.RenewableNames(), ", "),
		Example: `  kubeforge certs renew all
  kubeforge certs renew all --dry-run
  kubeforge certs renew apiserver front-proxy-client --config cluster.yaml
  kubeforge certs renew admin.conf --no-restart`,
		Args: cobra.MinimumNArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return append([]string{"all"}, certs.RenewableNames()...), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			ctx, stop := signal.NotifyContext(cmdContext(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			h := local.New(local.Options{Name: nodeName})
			defer h.Close()
			rep, err := renewal.Run(ctx, renewal.RunOptions{
				Host: h, Names: args, CertDir: dirs.certDir, KubeconfigDir: dirs.kubeconfigDir, BackupDir: backupDir,
				Config: renewal.ConfigSource{Path: configPath, HostCopy: initphases.ClusterConfigPath, NodeName: nodeName},
				Within: within, DryRun: dryRun, NoRestart: noRestart, Out: cmd.OutOrStdout(),
				Logf: func(format string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), "[renew] "+format+"\n", a...) },
			})
			if rep != nil {
				// Also on a failed restart: the report names the backup.
				if werr := writeReport(cmd.OutOrStdout(), output, rep, rep.WriteText); err == nil {
					err = werr
				}
			}
			return err
		},
	}
	dirs.add(c)
	c.Flags().BoolVar(&dryRun, "dry-run", false, "only list what would be renewed, and restarted or checked")
	c.Flags().BoolVar(&noRestart, "no-restart", false, "renew the files but restart or check no unit")
	c.Flags().StringVar(&backupDir, "backup-dir", "", "where to copy the replaced files (default <cert-dir>/../tmp/kubeforge-certs-backup-<timestamp>)")
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	c.Flags().StringVar(&configPath, "config", "", "cluster configuration for rebuilding the control-plane units (default: "+initphases.ClusterConfigPath+" on this host, if present)")
	c.Flags().StringVar(&nodeName, "node-name", "", "this host's name in the cluster configuration (default: found by hostname or address)")
	c.Flags().DurationVar(&within, "expiring-within", 0, "renew only the named certificates that expire within this long (e.g. 720h)")
	return c
}

// cmdContext is the command's context, or a background one for a command run
// without ExecuteContext (tests).
func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

func newCertsCertificateKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "certificate-key",
		Short: "Print a new random key for the encrypted hand-over of the CAs to joining control-plane hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := certs.NewCertificateKey()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), k)
			return err
		},
	}
}

func writeReport(w io.Writer, output string, v any, text func(io.Writer) error) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return text(w)
}
