package cmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/phases/joinphases"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

func init() { register(newJoinCmd) }

func newJoinCmd() *cobra.Command {
	var (
		flags rundata.Flags
		jf    joinphases.Flags
	)
	runner := workflow.NewRunner()
	for _, p := range joinphases.Phases() {
		runner.AppendPhase(p)
	}
	c := &cobra.Command{
		Use:   "join ENDPOINT --token TOKEN --discovery-token-ca-cert-hash sha256:HASH",
		Short: "Add this host to an existing cluster",
		Long: `Add this host to an existing cluster, found at ENDPOINT (the API server,
host:port) and trusted through the join token and the CA's public-key hash that
'kubeforge init' printed. The cluster configuration comes from the cluster; the
host's roles come from it, and --etcd / --control-plane add roles (with the
certificate key, which decrypts the CA keys those roles need). Every phase is
idempotent, so join can be re-run.

The token and certificate key may be given as $KUBEFORGE_TOKEN and
$KUBEFORGE_CERTIFICATE_KEY instead, which keeps them out of the process list.

Without ENDPOINT, join works from --config alone (e.g. 'join phase etcd' on a
host that holds the etcd CA).`,
		Example: `  kubeforge join 192.168.161.151:6443 --token abcdef.0123456789abcdef \
      --discovery-token-ca-cert-hash sha256:1234...cdef
  kubeforge join 192.168.161.151:6443 --token abcdef.0123456789abcdef \
      --discovery-token-ca-cert-hash sha256:1234...cdef --etcd --certificate-key 5678...
  KUBEFORGE_TOKEN=abcdef.0123456789abcdef kubeforge join 192.168.161.151:6443 \
      --discovery-token-ca-cert-hash sha256:1234...cdef`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error { return runner.Run(args) },
	}
	flags.AddFlags(c.PersistentFlags())
	jf.AddFlags(c.PersistentFlags())
	runner.SetDataInitializer(func(cmd *cobra.Command, args []string) (workflow.RunData, error) {
		// Read the secrets from the environment once and take them out of it,
		// before any phase starts a child process that would inherit them.
		jf.Token, jf.CertificateKey = joinphases.TakeSecrets(jf.Token, jf.CertificateKey)
		if len(args) == 0 && flags.ConfigPath == "" {
			return nil, fmt.Errorf("join needs ENDPOINT (kubeforge join ENDPOINT --token ... --discovery-token-ca-cert-hash ...); without it --config is required, for phases that work from the configuration alone")
		}
		n, err := rundata.New(cmd.Context(), flags, rundata.Options{Out: cmd.OutOrStdout(), RequireConfig: len(args) == 0})
		if err != nil {
			return nil, err
		}
		f := jf
		if len(args) == 1 {
			f.Endpoint = args[0]
		}
		d, err := joinphases.NewData(n, f)
		if err != nil {
			_ = n.Close()
			return nil, err
		}
		return d, nil
	})
	runner.BindToCommand(c)
	return c
}
