package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/etcd/snapshot"
	"github.com/kubeforge/kubeforge/phases/rundata"
)

func newEtcdSnapshotCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "snapshot",
		Short: "Save, list, prune and verify etcd snapshots",
		Long: `Snapshots of the local etcd member, taken through etcd's Maintenance API, each
with a JSON sidecar (<file>.json: sha256, revision, members, versions). Files are
named <cluster>-etcd-<UTC time>-rev<revision>.db; list and prune touch nothing else.
kubeforge-etcd-backup.timer runs "backup" (save, verify, prune) on the schedule of
spec.etcd.backup.`,
	}
	c.AddCommand(newSnapshotSaveCmd(), newSnapshotListCmd(), newSnapshotPruneCmd(),
		newSnapshotVerifyCmd(), newSnapshotBackupCmd(), newSnapshotRestoreCmd())
	return c
}

// snapshotFlags are the flags the snapshot commands share.
type snapshotFlags struct {
	dir        string
	configPath string
	endpoint   string
	tls        etcd.TLSFiles
	timeout    time.Duration
	etcdBinary string
}

func (f *snapshotFlags) addDir(fs *pflag.FlagSet) {
	fs.StringVar(&f.dir, "dir", "", "snapshot directory (default: spec.etcd.backup.dir of --config, else "+config.DefaultEtcdBackupDir+")")
	fs.StringVar(&f.configPath, "config", config.HostCopyPath, "cluster configuration (cluster name, Kubernetes version, backup dir)")
}

func (f *snapshotFlags) addEtcd(fs *pflag.FlagSet) {
	// A snapshot is etcd's whole keyspace, which with etcd authentication on
	// only its administrator may read: by default the administrator
	// certificate a control-plane host issues itself in memory from the etcd CA
	// key (see clientTLS), unless --cert and --key name another.
	def := etcd.ClientTLSFiles(rundata.DefaultCertDir)
	f.tls = etcd.TLSFiles{CA: def.CA}
	fs.StringVar(&f.endpoint, "endpoint", fmt.Sprintf("https://127.0.0.1:%d", etcd.DefaultClientPort), "the etcd member to snapshot (host:port means https)")
	fs.StringVar(&f.tls.CA, "cacert", def.CA, "etcd CA certificate")
	fs.StringVar(&f.tls.Cert, "cert", "", "client certificate of an etcd user with the root role (default: the administrator certificate issued in memory from the etcd CA key on a control-plane host)")
	fs.StringVar(&f.tls.Key, "key", "", "that certificate's private key")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Minute, "how long the snapshot may take")
}

func (f *snapshotFlags) addVerify(fs *pflag.FlagSet) {
	fs.StringVar(&f.etcdBinary, "etcd-binary", etcd.BinaryPath, "etcd binary that serves the restored snapshot during verify")
}

// cluster loads --config; needed reports whether a missing file is an error.
func (f *snapshotFlags) cluster(needed bool) (*config.Cluster, error) {
	c, err := config.Load(f.configPath)
	if err != nil {
		if !needed && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w (init writes it; name another with --config)", err)
		}
		return nil, err
	}
	return c, nil
}

func (f *snapshotFlags) resolveDir(c *config.Cluster) string {
	switch {
	case f.dir != "":
		return f.dir
	case c != nil:
		return c.Spec.Etcd.Backup.Dir
	}
	return config.DefaultEtcdBackupDir
}

func progress(w io.Writer, tag string) func(string, ...any) {
	return func(format string, args ...any) { fmt.Fprintf(w, "["+tag+"] "+format+"\n", args...) }
}

func (f *snapshotFlags) save(ctx context.Context, out io.Writer) (string, error) {
	c, err := f.cluster(true)
	if err != nil {
		return "", err
	}
	ep := f.endpoint
	if !strings.Contains(ep, "://") {
		ep = "https://" + ep
	}
	tlsCfg, err := clientTLS(f.tls, rundata.DefaultCertDir, true)
	if err != nil {
		return "", fmt.Errorf("a snapshot needs etcd's administrator credential (run it on a control-plane host, or give --cert/--key of a root user): %w", err)
	}
	cli, err := snapshot.Connect(ep, tlsCfg)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	start := time.Now()
	path, sc, err := snapshot.Save(ctx, snapshot.SaveOptions{
		Client: cli, Endpoint: ep, Dir: f.resolveDir(c), Cluster: c.Metadata.Name,
		KubernetesVersion: c.Spec.KubernetesVersion, Logf: progress(out, "save"),
	})
	if err != nil {
		return "", err
	}
	fmt.Fprintf(out, "[save] saved %s: %d bytes, revision %d, etcd %s, %d members, in %s\n",
		path, sc.Size, sc.Revision, sc.EtcdVersion, len(sc.Members), time.Since(start).Round(time.Millisecond))
	return path, nil
}

func (f *snapshotFlags) verify(ctx context.Context, out io.Writer, file string, noSidecar bool) (*snapshot.Result, error) {
	r, err := snapshot.Verify(ctx, snapshot.VerifyOptions{File: file, NoSidecar: noSidecar, EtcdBinary: f.etcdBinary, Logf: progress(out, "verify")})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "[verify] OK %s: %d keys, revision %d, in %s\n", r.File, r.Keys, r.Revision, r.Took.Round(time.Millisecond))
	return r, nil
}

func newSnapshotSaveCmd() *cobra.Command {
	var f snapshotFlags
	c := &cobra.Command{
		Use:   "save",
		Short: "Save a snapshot of the local etcd member",
		Long: `Stream a snapshot from one etcd member (the local one by default) through the
Maintenance API into the snapshot directory (created 0700): written to a temporary
file, fsynced and renamed, 0600, then its sidecar. The cluster name and Kubernetes
version come from --config.`,
		Example: `  kubeforge etcd snapshot save
  kubeforge etcd snapshot save --dir /srv/etcd-backups`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := f.save(cmd.Context(), cmd.OutOrStdout())
			return err
		},
	}
	f.addDir(c.Flags())
	f.addEtcd(c.Flags())
	return c
}

func newSnapshotListCmd() *cobra.Command {
	var (
		f      snapshotFlags
		output string
	)
	c := &cobra.Command{
		Use:   "list",
		Short: "List kubeforge's snapshots in the snapshot directory, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			cl, err := f.cluster(false)
			if err != nil {
				return err
			}
			ents, err := snapshot.List(f.resolveDir(cl))
			if err != nil {
				return err
			}
			if output == "json" {
				if ents == nil {
					ents = []snapshot.Entry{}
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(ents)
			}
			return snapshot.WriteTable(cmd.OutOrStdout(), ents)
		},
	}
	f.addDir(c.Flags())
	c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return c
}

func newSnapshotPruneCmd() *cobra.Command {
	var (
		f    snapshotFlags
		keep int
	)
	c := &cobra.Command{
		Use:     "prune --keep N",
		Short:   "Delete all but the newest N of kubeforge's snapshots (and their sidecars)",
		Example: `  kubeforge etcd snapshot prune --keep 5`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("keep") {
				return errors.New("--keep is required: how many snapshots to keep")
			}
			cl, err := f.cluster(false)
			if err != nil {
				return err
			}
			return prune(cmd.OutOrStdout(), f.resolveDir(cl), keep)
		},
	}
	f.addDir(c.Flags())
	c.Flags().IntVar(&keep, "keep", 0, "how many of the newest snapshots to keep (at least 1)")
	return c
}

func prune(out io.Writer, dir string, keep int) error {
	removed, err := snapshot.Prune(dir, keep)
	for _, p := range removed {
		fmt.Fprintf(out, "[prune] removed %s\n", p)
	}
	if err == nil {
		fmt.Fprintf(out, "[prune] %d removed, keeping the newest %d in %s\n", len(removed), keep, dir)
	}
	return err
}

func newSnapshotVerifyCmd() *cobra.Command {
	var (
		f         snapshotFlags
		noSidecar bool
		output    string
	)
	c := &cobra.Command{
		Use:   "verify FILE",
		Short: "Prove a snapshot restores: hashes, etcd's restore, a throwaway etcd serving it",
		Long: `Check the snapshot's size and sha256 against its sidecar and the sha256 etcd
appended to it, restore it with etcd's own restore library into a temporary
directory next to it, start a throwaway etcd (--etcd-binary) on loopback with
mutual TLS from a one-time key, and report its key count and revision. The
temporary data is removed. Exits non-zero, naming the file and the problem, when
any step fails.`,
		Example: `  kubeforge etcd snapshot verify /var/lib/kubeforge/etcd-snapshots/kubernetes-etcd-20261203T130000Z-rev4711.db
  kubeforge etcd snapshot verify --no-sidecar /tmp/etcdctl.db`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: want text or json", output)
			}
			log := cmd.OutOrStdout()
			if output == "json" {
				log = cmd.ErrOrStderr()
			}
			r, err := f.verify(cmd.Context(), log, args[0], noSidecar)
			if err != nil {
				return err
			}
			if output == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(r)
			}
			return nil
		},
	}
	f.addVerify(c.Flags())
	c.Flags().BoolVar(&noSidecar, "no-sidecar", false, "verify a snapshot that has no sidecar (saved by etcdctl): skip the sidecar's size and sha256")
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (the result on stdout)")
	return c
}

func newSnapshotBackupCmd() *cobra.Command {
	var (
		f    snapshotFlags
		keep int
	)
	c := &cobra.Command{
		Use:   "backup",
		Short: "Save a snapshot, verify it, then prune: what kubeforge-etcd-backup.service runs",
		Long: `Save a snapshot of the local member, verify that it restores, and only then
delete all but the newest --keep snapshots. A snapshot that fails verification
makes the command fail (and the service with it) and prunes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			cl, err := f.cluster(true)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("keep") {
				keep = cl.Spec.Etcd.Backup.Keep
			}
			path, err := f.save(cmd.Context(), out)
			if err != nil {
				return err
			}
			if _, err := f.verify(cmd.Context(), out, path, false); err != nil {
				return fmt.Errorf("the new snapshot does not restore, nothing pruned: %w", err)
			}
			return prune(out, f.resolveDir(cl), keep)
		},
	}
	f.addDir(c.Flags())
	f.addEtcd(c.Flags())
	f.addVerify(c.Flags())
	c.Flags().IntVar(&keep, "keep", 0, "how many of the newest snapshots to keep (default: spec.etcd.backup.keep of --config)")
	return c
}
