package cmd

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/etcd/snapshot"
	"github.com/kubeforge/kubeforge/components/renewal"
	"github.com/kubeforge/kubeforge/phases/initphases"
	"github.com/kubeforge/kubeforge/phases/rundata"
)

// controlPlaneUnits are the units a restore stops before and starts after,
// in start order.
var controlPlaneUnits = []string{renewal.UnitAPIServer, renewal.UnitControllerManager, renewal.UnitScheduler}

type restoreFlags struct {
	snapshotFlags
	sha256           string
	initialCluster   string
	token            string
	stopControlPlane bool
	certDir          string
	nodeName         string
	waitTimeout      time.Duration
}

func newSnapshotRestoreCmd() *cobra.Command {
	var f restoreFlags
	c := &cobra.Command{
		Use:   "restore FILE",
		Short: "Disaster recovery: rebuild this host's etcd member from a snapshot (run on every member)",
		Long: `Restore the whole etcd cluster from one snapshot. Run the same command, with the
same FILE (and its sidecar) and the same --sha256, on every etcd member host; the
hosts may run it in any order or at once. On each host it:

  1. refuses while an API server runs: this host's (unless --stop-control-plane)
     or another control-plane host's of the configuration;
  2. verifies FILE (hashes, etcd's restore, a throwaway etcd serving it) and
     checks its sha256 against --sha256, so no member restores another snapshot;
  3. stops the control plane (with --stop-control-plane) and etcd, moves the data
     dir aside to <data-dir>.before-restore-<time>, and restores FILE into it
     with etcd's restore library as a member of the snapshot's voting members
     (or --initial-cluster), with a new cluster token derived from the file's
     sha256 and the revision bumped by 1e9 and marked compacted, so every
     watcher lists again;
  4. starts etcd and waits until every member is restored and healthy;
  5. on a control-plane host: makes sure etcd's users and roles are the ones
     kubeforge needs, then starts kube-apiserver, kube-controller-manager and
     kube-scheduler one at a time, each healthy before the next.

The old data dir is kept; remove it once the cluster is good. See
docs/backup-restore.md for the runbook.`,
		Example: `  # on every etcd member host (the first one prints the sha256):
  kubeforge etcd snapshot restore --stop-control-plane \
      --sha256 3f5e... /var/lib/kubeforge/etcd-snapshots/kubernetes-etcd-20261203T130000Z-rev4711.db`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmdContext(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return f.restore(ctx, cmd.OutOrStdout(), args[0])
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.sha256, "sha256", "", "sha256 FILE must have; the same on every member (required when the restored cluster has more than one member)")
	fl.BoolVar(&f.stopControlPlane, "stop-control-plane", false, "stop this host's kube-apiserver, kube-controller-manager and kube-scheduler for the restore (started again afterwards)")
	fl.StringVar(&f.initialCluster, "initial-cluster", "", "members of the restored cluster, name=https://ip:2380,... (default: the voting members in FILE's sidecar)")
	fl.StringVar(&f.token, "cluster-token", "", "cluster token of the restored cluster (default: "+snapshot.TokenPrefix+"<first 16 hex digits of the sha256>)")
	fl.StringVar(&f.configPath, "config", initphases.ClusterConfigPath, "cluster configuration (control-plane hosts, etcd users)")
	fl.StringVar(&f.nodeName, "node-name", "", "this host's name in the configuration (default: found by hostname or address)")
	fl.StringVar(&f.certDir, "cert-dir", rundata.DefaultCertDir, "certificate directory")
	fl.DurationVar(&f.waitTimeout, "wait-timeout", 30*time.Minute, "how long to wait for the other members and the control plane")
	f.addVerify(fl)
	return c
}

func (f *restoreFlags) restore(ctx context.Context, out io.Writer, file string) error {
	t0 := time.Now()
	logf := progress(out, "restore")
	step := func(what string, since time.Time) {
		logf("%s (%s)", what, time.Since(since).Round(time.Millisecond))
	}
	h := local.New(local.Options{Name: f.nodeName})
	defer h.Close()
	cfg, node, _, err := renewal.LoadConfig(ctx, h, renewal.ConfigSource{Path: pathIfNotDefault(f.configPath), HostCopy: initphases.ClusterConfigPath, NodeName: f.nodeName})
	if err != nil {
		return err
	}
	if cfg == nil {
		return fmt.Errorf("no cluster configuration %s on this host (init keeps one on its host; on a host that joined, copy that file here and name it with --config)", initphases.ClusterConfigPath)
	}
	member, err := snapshot.ReadLocalMember(ctx, h, etcd.ConfigPath)
	if err != nil {
		return err
	}

	// 1. No API server may write to etcd while it is replaced under it.
	running, err := activeUnits(ctx, h, controlPlaneUnits)
	if err != nil {
		return err
	}
	if len(running) > 0 && !f.stopControlPlane {
		return fmt.Errorf("%s runs on %s: a restore replaces the data under it; rerun with --stop-control-plane (it is started again after the restore)", strings.Join(running, ", "), node.Name)
	}
	for _, cp := range cfg.HostsWithRole(config.RoleControlPlane) {
		if cp.Name == node.Name {
			continue
		}
		addr := net.JoinHostPort(cp.Address, strconv.Itoa(config.DefaultAPIServerPort))
		if conn, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", addr); err == nil {
			conn.Close()
			return fmt.Errorf("the API server of %s answers at %s: stop the control plane there first (systemctl stop kube-apiserver kube-controller-manager kube-scheduler, or run this restore there with --stop-control-plane); nothing changed", cp.Name, addr)
		}
	}

	// 2. The file: proven to restore, and the one every member restores.
	t := time.Now()
	r, err := f.verify(ctx, out, file, false)
	if err != nil {
		return fmt.Errorf("refusing to restore: %w", err)
	}
	sc, err := snapshot.ReadSidecar(file)
	if err != nil {
		return err
	}
	var peers []etcd.Peer
	if f.initialCluster != "" {
		if peers, err = etcd.ParseInitialCluster(f.initialCluster); err != nil {
			return fmt.Errorf("--initial-cluster: %w", err)
		}
	} else if peers, err = snapshot.InitialClusterOf(sc); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	switch {
	case f.sha256 != "" && !strings.EqualFold(f.sha256, r.SHA256):
		return fmt.Errorf("refusing to restore: %s has sha256 %s, not %s (--sha256): every member must restore the same snapshot; nothing changed", file, r.SHA256, f.sha256)
	case f.sha256 == "" && len(peers) > 1:
		return fmt.Errorf("the restored cluster has %d members (%s): rerun with --sha256 %s on this and every other member, which proves they all restore this same file; nothing changed", len(peers), etcd.FormatInitialCluster(peers), r.SHA256)
	}
	step(fmt.Sprintf("%s verified: sha256 %s, revision %d, %d keys", file, r.SHA256, r.Revision, r.Keys), t)
	token := f.token
	if token == "" {
		token = snapshot.RestoreToken(r.SHA256)
	}

	// 3. Stop, set aside, restore.
	t = time.Now()
	for i := len(running) - 1; i >= 0; i-- {
		if err := h.Units().Stop(ctx, running[i]); err != nil {
			return fmt.Errorf("stopping %s: %w", running[i], err)
		}
		logf("stopped %s", running[i])
	}
	aside, err := snapshot.RestoreMember(ctx, snapshot.RestoreMemberOptions{
		Host: h, File: file, Member: member, InitialCluster: peers, Token: token, Logf: logf,
	})
	if err != nil {
		if len(running) > 0 {
			err = fmt.Errorf("%w; stopped, not started again: %s", err, strings.Join(running, ", "))
		}
		return err
	}
	step("member "+member.Name+" restored", t)

	// 4. etcd: its start job ends only once the member is in a quorum, which
	// needs the other members restored too, so it is not waited for here.
	t = time.Now()
	go func() { _ = h.Units().Start(ctx, etcd.UnitName) }()
	logf("started %s; the other members: run the same command there (--sha256 %s)", etcd.UnitName, r.SHA256)
	healthTLS, err := etcd.ClientTLSFiles(f.certDir).Config(etcd.LocalRead)
	if err != nil {
		return err
	}
	names := make([]string, len(peers))
	for i, p := range peers {
		names[i] = p.Name
	}
	st, err := snapshot.WaitMembers(ctx, snapshot.WaitMembersOptions{
		Endpoint: member.ClientURL, TLS: healthTLS, Members: names, Timeout: f.waitTimeout, Logf: logf,
	})
	if err != nil {
		return fmt.Errorf("%w; the old data dir is %s", err, aside)
	}
	step(fmt.Sprintf("etcd healthy: %d of %d members", st.HealthyVoters(), len(peers)), t)

	// 5. The control plane: etcd's users first (the apiserver's identity must
	// be one the restored data knows), then the daemons in order.
	if node.HasRole(config.RoleControlPlane) {
		t = time.Now()
		if msg, err := ensureRestoredAuth(ctx, cfg, member.ClientURL, f.certDir); err != nil {
			return err
		} else {
			logf("etcd auth: %s", msg)
		}
		var units []string
		for _, u := range controlPlaneUnits {
			if _, err := h.Stat(ctx, path.Join(renewal.UnitDir, u)); err == nil {
				units = append(units, u)
			}
		}
		plan := renewal.Plan{Host: h.Name()}
		for _, u := range units {
			plan.Steps = append(plan.Steps, renewal.Step{Unit: u})
		}
		rs, err := renewal.Prepare(ctx, renewal.Options{Host: h, Cluster: cfg, Node: node, CertDir: f.certDir, Timeout: f.waitTimeout, Logf: logf}, plan)
		if err != nil {
			return err
		}
		if _, err := rs.Run(ctx); err != nil {
			return err
		}
		step("control plane started: "+strings.Join(units, ", "), t)
	}
	if aside != "" {
		logf("the data before the restore is in %s; remove it once the cluster is good", aside)
	}
	step(fmt.Sprintf("done: member %s of %s restored from %s (revision %d + %d)", member.Name, etcd.FormatInitialCluster(peers), file, r.Revision, snapshot.RevisionBump), t0)
	return nil
}

// pathIfNotDefault is p unless it is the host copy, which LoadConfig reads
// through the host itself.
func pathIfNotDefault(p string) string {
	if p == initphases.ClusterConfigPath {
		return ""
	}
	return p
}

// activeUnits are those of units that run on h.
func activeUnits(ctx context.Context, h host.Host, units []string) ([]string, error) {
	var out []string
	for _, u := range units {
		st, err := h.Units().Status(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("%s: status of %s: %w", h.Name(), u, err)
		}
		if st.Active() || st.ActiveState == "activating" {
			out = append(out, u)
		}
	}
	return out, nil
}

// ensureRestoredAuth makes the restored etcd's users and roles what kubeforge
// needs (the snapshot carries those of its time) and deletes the one-join
// users it brought back: their credentials were for a join long over.
func ensureRestoredAuth(ctx context.Context, cfg *config.Cluster, endpoint, certDir string) (string, error) {
	adminTLS, err := etcd.AdminTLS(etcd.LocalRead, certDir)
	if err != nil {
		return "", err
	}
	cli, err := etcd.NewClient([]string{endpoint}, adminTLS)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	plan, err := etcd.AuthPlanFor(cfg)
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	changed, err := etcd.EnsureAuth(cctx, cli, plan)
	if err != nil {
		return "", fmt.Errorf("etcd users and roles after the restore: %w", err)
	}
	users, err := cli.UserList(cctx)
	if err != nil {
		return "", fmt.Errorf("etcd users after the restore: %w", err)
	}
	for _, u := range users.Users {
		if strings.HasPrefix(u, etcd.JoinUserPrefix) {
			if err := etcd.DeleteUser(cctx, cli, u); err != nil {
				return "", err
			}
			changed = append(changed, "deleted the stale join user "+u)
		}
	}
	if len(changed) == 0 {
		return "the restored users and roles are kubeforge's, unchanged", nil
	}
	return strings.Join(changed, "; "), nil
}
