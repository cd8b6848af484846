package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/bootstraptoken"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/kubeclient"
)

func init() { register(newTokenCmd) }

func newTokenCmd() *cobra.Command {
	var kubeconfig string
	c := &cobra.Command{
		Use:   "token",
		Short: "Manage bootstrap tokens for joining nodes",
		Long: `Manage the bootstrap tokens joining hosts authenticate with. Tokens are
kube-system Secrets of type bootstrap.kubernetes.io/token, compatible with kubeadm;
the controller-manager deletes them when they expire.`,
	}
	c.PersistentFlags().StringVar(&kubeconfig, "kubeconfig", "/etc/kubernetes/admin.conf", "kubeconfig to reach the cluster with")
	c.AddCommand(newTokenCreateCmd(&kubeconfig), newTokenListCmd(&kubeconfig), newTokenDeleteCmd(&kubeconfig))
	return c
}

func tokenClient(path string) (*kubeclient.Client, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := kubeclient.New(data, kubeclient.Options{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func tokenContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func newTokenCreateCmd(kubeconfig *string) *cobra.Command {
	var (
		ttl         time.Duration
		description string
		printJoin   bool
		waitSigned  time.Duration
	)
	c := &cobra.Command{
		Use:   "create",
		Short: "Create a join token (and print it, or the whole join command)",
		Long: `Create a join token and print it, or with --print-join-command the whole
worker join command. It returns once the controller-manager's bootstrap signer has
signed cluster-info (kube-public) for the token, so the printed command works at
once; a token that is not signed within --signed-timeout is deleted again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < 0 {
				return fmt.Errorf("--ttl %s: must not be negative (0 means the token never expires)", ttl)
			}
			ctx, stop := tokenContext()
			defer stop()
			cli, err := tokenClient(*kubeconfig)
			if err != nil {
				return err
			}
			tok, err := bootstraptoken.Generate(ttl, description)
			if err != nil {
				return err
			}
			if err := createSignedToken(ctx, cli, tok, waitSigned, cmd.ErrOrStderr()); err != nil {
				return err
			}
			if !printJoin {
				_, err = fmt.Fprintln(cmd.OutOrStdout(), tok.String())
				return err
			}
			j, err := joinCommand(ctx, cli, *kubeconfig)
			if err != nil {
				return err
			}
			j.Token = tok.String()
			_, err = fmt.Fprintln(cmd.OutOrStdout(), j.Worker())
			return err
		},
	}
	c.Flags().DurationVar(&ttl, "ttl", bootstraptoken.DefaultTTL, "how long the token is valid (0: never expires)")
	c.Flags().StringVar(&description, "description", "", "what the token is for (shown by token list)")
	c.Flags().BoolVar(&printJoin, "print-join-command", false, "print the whole worker join command instead of the token alone")
	c.Flags().DurationVar(&waitSigned, "signed-timeout", 2*time.Minute, "how long to wait for the bootstrap signer to sign cluster-info for the new token")
	return c
}

// createSignedToken stores tok and returns once cluster-info carries the
// bootstrap signer's signature for it: a join command printed earlier would
// find no signature and wait in discovery (or fail, with an older joiner). A
// token that is never signed is deleted again, since its secret was not shown.
func createSignedToken(ctx context.Context, cli kubernetes.Interface, tok bootstraptoken.Token, timeout time.Duration, progress io.Writer) error {
	if timeout <= 0 {
		return fmt.Errorf("--signed-timeout %s: must be positive", timeout)
	}
	if _, err := bootstraptoken.Create(ctx, cli, tok); err != nil {
		return err
	}
	logf := func(f string, a ...any) { fmt.Fprintf(progress, "[token] "+f+"\n", a...) }
	if _, err := clusterinfo.WaitSigned(ctx, cli, tok, timeout, logf); err != nil {
		// A fresh context: ctx may be what ended.
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if derr := bootstraptoken.Delete(dctx, cli, tok.ID); derr != nil {
			return fmt.Errorf("%w; deleting the unsigned token %s failed too: %v (delete it with `kubeforge token delete %s`)", err, tok.ID, derr, tok.ID)
		}
		return fmt.Errorf("%w; token %s deleted again", err, tok.ID)
	}
	return nil
}

// joinCommand fills in endpoint and CA hash from cluster-info (the endpoint the
// cluster publishes for joining hosts), falling back to the kubeconfig's server
// and CA.
func joinCommand(ctx context.Context, cli *kubeclient.Client, kubeconfig string) (bootstraptoken.JoinCommand, error) {
	var server string
	var caPEM []byte
	cm, err := cli.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
	if err == nil {
		if kc, err := clientcmd.Load([]byte(cm.Data[bootstrapapi.KubeConfigKey])); err == nil {
			for _, c := range kc.Clusters {
				server, caPEM = c.Server, c.CertificateAuthorityData
			}
		}
	}
	if server == "" || len(caPEM) == 0 {
		kc, err := clientcmd.LoadFromFile(kubeconfig)
		if err != nil {
			return bootstraptoken.JoinCommand{}, err
		}
		ctxName := kc.Contexts[kc.CurrentContext]
		if ctxName == nil || kc.Clusters[ctxName.Cluster] == nil {
			return bootstraptoken.JoinCommand{}, fmt.Errorf("%s: no current cluster", kubeconfig)
		}
		cl := kc.Clusters[ctxName.Cluster]
		server, caPEM = cl.Server, cl.CertificateAuthorityData
	}
	ca, err := certs.ParseCertPEM(caPEM)
	if err != nil {
		return bootstraptoken.JoinCommand{}, fmt.Errorf("the cluster's CA certificate: %w", err)
	}
	return bootstraptoken.JoinCommand{Endpoint: strings.TrimPrefix(server, "https://"), CAHash: certs.CAHash(ca)}, nil
}

func newTokenListCmd(kubeconfig *string) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the bootstrap tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := tokenContext()
			defer stop()
			cli, err := tokenClient(*kubeconfig)
			if err != nil {
				return err
			}
			tokens, err := bootstraptoken.List(ctx, cli)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TOKEN\tTTL\tEXPIRES\tUSAGES\tDESCRIPTION\tEXTRA GROUPS")
			now := time.Now()
			for _, t := range tokens {
				ttl, exp := "<forever>", "<never>"
				if !t.Expires.IsZero() {
					exp = t.Expires.Format(time.RFC3339)
					ttl = "<expired>"
					if !t.Expired(now) {
						ttl = t.Expires.Sub(now).Round(time.Minute).String()
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.String(), ttl, exp, orNone(strings.Join(t.Usages, ",")),
					orNone(t.Description), orNone(strings.Join(t.Groups, ",")))
			}
			return tw.Flush()
		},
	}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func newTokenDeleteCmd(kubeconfig *string) *cobra.Command {
	return &cobra.Command{
		Use:   "delete TOKEN|ID...",
		Short: "Delete bootstrap tokens, given as token or token ID",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := tokenContext()
			defer stop()
			cli, err := tokenClient(*kubeconfig)
			if err != nil {
				return err
			}
			for _, a := range args {
				if err := bootstraptoken.Delete(ctx, cli, a); err != nil {
					return err
				}
				id, _, _ := strings.Cut(a, ".")
				fmt.Fprintf(cmd.OutOrStdout(), "bootstrap token %q deleted\n", id)
			}
			return nil
		},
	}
}
