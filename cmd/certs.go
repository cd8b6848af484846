package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/certs"
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
		dirs   certDirFlags
		output string
	)
	c := &cobra.Command{
		Use:   "check-expiration",
		Short: "List every certificate, kubeconfig client certificate and CA with its expiry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			r, err := certs.CheckExpiration(certs.LocalFS{}, dirs.certDir, dirs.kubeconfigDir, time.Now())
			if err != nil {
				return err
			}
			return writeReport(cmd.OutOrStdout(), output, r, r.WriteText)
		},
	}
	dirs.add(c)
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}

func newCertsRenewCmd() *cobra.Command {
	var (
		dirs      certDirFlags
		dryRun    bool
		backupDir string
		output    string
	)
	c := &cobra.Command{
		Use:   "renew all|NAME...",
		Short: "Re-sign certificates and kubeconfig client certificates from their existing CA",
		Long: `Re-sign certificates from their existing CA, keeping subject, SANs and key
usages, with a new private key of the same kind, and rewrite the client
certificates embedded in kubeconfigs. The replaced files are copied to a
timestamped backup directory first. Certificates whose CA key is absent
(externally managed) are skipped. Restart the control-plane units afterwards.

Names: all, ` + strings.Join(certs.RenewableNames(), ", "),
		Args: cobra.MinimumNArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return append([]string{"all"}, certs.RenewableNames()...), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			if len(args) > 1 {
				for _, a := range args {
					if a == "all" {
						return fmt.Errorf(`"all" cannot be combined with other names`)
					}
				}
			}
			res, err := certs.Renew(certs.RenewOptions{
				CertDir: dirs.certDir, KubeconfigDir: dirs.kubeconfigDir,
				DryRun: dryRun, BackupDir: backupDir,
			}, args...)
			if err != nil {
				return err
			}
			return writeReport(cmd.OutOrStdout(), output, res, res.WriteText)
		},
	}
	dirs.add(c)
	c.Flags().BoolVar(&dryRun, "dry-run", false, "only list what would be renewed")
	c.Flags().StringVar(&backupDir, "backup-dir", "", "where to copy the replaced files (default <cert-dir>/../tmp/kubeforge-certs-backup-<timestamp>)")
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
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
