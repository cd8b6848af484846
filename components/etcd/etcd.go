package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// Options are what Init and Join need to act on one host.
type Options struct {
	// Host is the machine the member runs on (local, SSH or dry-run).
	Host host.Host
	// Cluster is the loaded, validated cluster config; Node is Host's entry in it.
	Cluster *config.Cluster
	Node    config.Host
	// CertDir holds the PKI (<CertDir>/etcd/...); BundleDir the bundle with bin/etcd.
	CertDir   string
	BundleDir string
	// DryRun: Host records instead of acting, so nothing is started and the
	// cluster's membership is only read, never changed.
	DryRun bool
	// Timeout bounds waiting for the member (healthy, or promoted for a join);
	// 5 minutes when zero.
	Timeout time.Duration
	Logf    func(format string, a ...any)
	// JoinTLS is the one-join credential the control plane handed over for this
	// member (Join): it adds and promotes the member, and the join deletes its
	// etcd user at the end. Nil means the host's own administrator credential,
	// which only a host holding the etcd CA key has (AdminTLS).
	JoinTLS *tls.Config
}

// Result says what a run did.
type Result struct {
	// Changed is false when the host already was as it should be.
	Changed bool
	// Detail is a one-line summary (the "unchanged" reason, or what was done).
	Detail string
	// Timings of the run, from its start: when the member was healthy (Init), or
	// started and promoted (Join).
	Healthy, Started, Promoted time.Duration
}

func (o *Options) defaults() {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
}

func (o *Options) check(verb string) error {
	if o.Host == nil || o.Cluster == nil {
		return fmt.Errorf("etcd %s: no host or no cluster configuration", verb)
	}
	if !o.Node.HasRole(config.RoleEtcd) {
		return fmt.Errorf("etcd %s: host %s does not have the %q role in the cluster configuration", verb, o.Node.Name, config.RoleEtcd)
	}
	return nil
}

// memberConfig is the node's member config with the cluster's settings; the
// initial cluster is filled in by the caller.
func (o *Options) memberConfig() MemberConfig {
	return MemberConfig{
		Member:              MemberOf(o.Node),
		ListenLocalhost:     true,
		DataDir:             o.Cluster.Spec.Etcd.DataDir,
		PKIDir:              PKIDir(o.CertDir),
		InitialClusterToken: o.Cluster.Metadata.Name,
		Settings:            o.Cluster.Spec.Etcd,
	}
}

func (o *Options) member() *hostMember {
	return &hostMember{h: o.Host, cfg: o.memberConfig(), logf: o.Logf}
}

// clientTLS reads the health-check client credentials from the host.
func (o *Options) clientTLS(ctx context.Context) (*tls.Config, error) {
	cfg, err := ClientTLSFiles(o.CertDir).Config(HostRead(ctx, o.Host))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Host.Name(), err)
	}
	return cfg, nil
}

// otherEndpoints are the client URLs of the config's other etcd hosts.
func (o *Options) otherEndpoints() []string {
	var out []string
	for _, h := range o.Cluster.HostsWithRole(config.RoleEtcd) {
		if h.Name != o.Node.Name {
			out = append(out, MemberOf(h).ClientURL())
		}
	}
	return out
}

// prepare installs the binary and the certificates; it reports a change.
func (o *Options) prepare(ctx context.Context, createCA bool) (bool, error) {
	certsChanged, err := EnsureCerts(ctx, o.Host, o.Cluster, o.Node, o.CertDir, createCA, o.Logf)
	if err != nil {
		return false, err
	}
	binChanged, err := InstallBinary(ctx, o.Host, o.BundleDir)
	if err != nil {
		return false, fmt.Errorf("%s: installing etcd: %w", o.Host.Name(), err)
	}
	if binChanged {
		o.Logf("installed %s from the bundle", BinaryPath)
	}
	return certsChanged || binChanged, nil
}

// Init makes the host the first member of a new etcd cluster: certificates (the
// etcd CA included, when missing), binary, config, unit, started and healthy. It
// must be the config's first etcd host. A rerun on a converged host changes
// nothing (Result.Changed false). It refuses to start a new cluster when another
// etcd host of the config already answers as a member, since that would make a
// second cluster beside the first (join the host instead).
func Init(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	t0 := time.Now()
	if err := o.check("init"); err != nil {
		return Result{}, err
	}
	if first := o.Cluster.HostsWithRole(config.RoleEtcd)[0]; first.Name != o.Node.Name {
		return Result{}, fmt.Errorf("etcd init: host %s is not the first etcd host (%s is, in the configuration's order): init bootstraps the cluster there; run `kubeforge join` on %s",
			o.Node.Name, first.Name, o.Node.Name)
	}
	changed, err := o.prepare(ctx, true)
	if err != nil {
		return Result{}, err
	}
	r := o.member()
	r.cfg.InitialCluster = []Peer{{Name: o.Node.Name, PeerURL: r.cfg.Member.PeerURL()}}
	r.cfg.InitialClusterState = ClusterStateNew
	hasData, err := r.hasData(ctx)
	if err != nil {
		return Result{}, err
	}
	tlsCfg, err := o.clientTLS(ctx)
	if err != nil {
		return Result{}, err
	}
	if hasData {
		cur, err := r.currentConfig(ctx)
		if err != nil {
			return Result{}, err
		}
		r.cfg.keepBootstrap(cur)
	} else if err := o.refuseSecondCluster(ctx, tlsCfg); err != nil {
		return Result{}, err
	}
	filesChanged, err := r.writeFiles(ctx)
	if err != nil {
		return Result{}, err
	}
	changed = changed || filesChanged
	res, err := o.runMember(ctx, r, tlsCfg, changed, t0)
	if err != nil {
		return res, err
	}
	authChanged, err := o.ensureAuth(ctx)
	if err != nil {
		return res, err
	}
	if authChanged && !res.Changed {
		res.Changed, res.Detail = true, fmt.Sprintf("member %s is running and healthy; etcd authentication set up", o.Node.Name)
	}
	return res, nil
}

// ensureAuth sets up etcd's users and roles and enables authentication, as the
// administrator this host (the holder of the etcd CA key) can issue itself.
func (o *Options) ensureAuth(ctx context.Context) (bool, error) {
	if o.DryRun {
		o.Logf("dry run: would enable etcd authentication with per-client roles")
		return false, nil
	}
	plan, err := AuthPlanFor(o.Cluster)
	if err != nil {
		return false, err
	}
	admin, err := AdminTLS(HostRead(ctx, o.Host), o.CertDir)
	if err != nil {
		return false, fmt.Errorf("%s: %w", o.Host.Name(), err)
	}
	cli, err := NewClient([]string{o.memberConfig().Member.ClientURL()}, admin)
	if err != nil {
		return false, err
	}
	defer cli.Close()
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	changed, err := EnsureAuth(actx, cli, plan)
	if err != nil {
		return false, fmt.Errorf("%s: etcd authentication: %w", o.Host.Name(), err)
	}
	if len(changed) > 0 {
		o.Logf("etcd authentication: %s", strings.Join(changed, ", "))
	}
	return len(changed) > 0, nil
}

// membershipTLS is the credential for adding, promoting and removing members:
// the handed-over one-join credential, or the administrator certificate a host
// with the etcd CA key issues itself.
func (o *Options) membershipTLS(ctx context.Context) (*tls.Config, error) {
	if o.JoinTLS != nil {
		return o.JoinTLS, nil
	}
	cfg, err := AdminTLS(HostRead(ctx, o.Host), o.CertDir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; a joining etcd member gets a one-join credential from the control plane: run `kubeforge join ENDPOINT ... --etcd --certificate-key KEY` with the command `kubeforge init` (or `kubeforge init phase upload-certs` on a control-plane host) printed", o.Host.Name(), err)
	}
	return cfg, nil
}

// runMember brings the member's unit to "active and healthy": started if it is
// not running, restarted if its binary, certificates or config changed.
func (o *Options) runMember(ctx context.Context, r *hostMember, tlsCfg *tls.Config, changed bool, t0 time.Time) (Result, error) {
	st, err := o.Host.Units().Status(ctx, UnitName)
	if err != nil {
		return Result{}, err
	}
	if o.DryRun {
		if !st.Active() || changed {
			o.Logf("dry run: would (re)start %s and wait until member %s is healthy", UnitName, o.Node.Name)
			_ = o.Host.Units().Restart(ctx, UnitName)
			return Result{Changed: true, Detail: "dry run"}, nil
		}
		return Result{Detail: fmt.Sprintf("member %s is running", o.Node.Name)}, nil
	}
	switch {
	case st.Active() && !changed:
		if err := r.waitHealthy(ctx, tlsCfg, o.Timeout); err != nil {
			return Result{}, err
		}
		return Result{Detail: fmt.Sprintf("member %s is running and healthy", o.Node.Name)}, nil
	case st.Active():
		o.Logf("restarting %s on %s to apply the changes", UnitName, o.Host.Name())
		r.startAsync(ctx, true)
	default:
		o.Logf("starting %s on %s", UnitName, o.Host.Name())
		r.startAsync(ctx, false)
	}
	defer r.stopPendingStart()
	if err := r.waitHealthy(ctx, tlsCfg, o.Timeout); err != nil {
		return Result{}, err
	}
	return Result{Changed: true, Detail: fmt.Sprintf("member %s is running and healthy", o.Node.Name), Healthy: time.Since(t0)}, nil
}

// refuseSecondCluster fails when another etcd host of the config already runs a
// member: initialising a new cluster then would split the cluster in two.
func (o *Options) refuseSecondCluster(ctx context.Context, tlsCfg *tls.Config) error {
	eps := o.otherEndpoints()
	type answer struct {
		ep      string
		members int
	}
	var mu sync.Mutex
	var found []answer
	var wg sync.WaitGroup
	for _, ep := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Nothing listening is the common case (a fresh cluster) and a TCP
			// refusal says so at once; the etcd client would retry until its timeout.
			if u, err := url.Parse(ep); err == nil {
				c, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
				if err != nil {
					return
				}
				c.Close()
			}
			_ = withEndpoint(tlsCfg, ep, func(cli *clientv3.Client) error {
				lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				resp, err := cli.MemberList(lctx)
				if err == nil {
					mu.Lock()
					found = append(found, answer{ep, len(resp.Members)})
					mu.Unlock()
				}
				return err
			})
		}()
	}
	wg.Wait()
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("etcd init on %s: an etcd cluster already runs at %s (%d members); initialising a new one would split the cluster: run `kubeforge join` on %s instead",
		o.Node.Name, found[0].ep, found[0].members, o.Node.Name)
}

// Join adds the host to the running cluster: certificates issued from the etcd CA
// on the host, binary, then JoinMember (learner, start, catch up, promote, or
// roll back). A host that is already a started voting member is only brought to
// the desired config (restarted if it changed) and otherwise left alone.
func Join(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	t0 := time.Now()
	if err := o.check("join"); err != nil {
		return Result{}, err
	}
	changed, err := o.prepare(ctx, false)
	if err != nil {
		return Result{}, err
	}
	tlsCfg, err := o.clientTLS(ctx)
	if err != nil {
		return Result{}, err
	}
	eps := o.otherEndpoints()
	if len(eps) == 0 {
		return Result{}, fmt.Errorf("etcd join: %s is the only etcd host of the configuration; there is no cluster to join (use init)", o.Node.Name)
	}
	// Listing members needs no privilege; adding and promoting this member does,
	// but a host that is a voting member already needs none.
	adminTLS, adminErr := o.membershipTLS(ctx)
	listTLS := adminTLS
	if adminErr != nil {
		listTLS = tlsCfg
	}
	cli, err := NewClient(eps, listTLS)
	if err != nil {
		return Result{}, err
	}
	defer cli.Close()
	members, err := listMembers(ctx, cli)
	if err != nil {
		return Result{}, fmt.Errorf("etcd join of %s: no member of the cluster answers (%w); is etcd initialised on %s?",
			o.Node.Name, err, o.Cluster.HostsWithRole(config.RoleEtcd)[0].Name)
	}
	// From here on only talk to members that exist, not to config hosts that
	// have not joined (yet).
	var started []string
	for _, m := range members {
		if len(m.ClientURLs) > 0 && !m.IsLearner {
			started = append(started, m.ClientURLs...)
		}
	}
	if len(started) > 0 {
		cli.SetEndpoints(started...)
	}
	r := o.member()
	self, err := findMember(members, r.cfg.Member)
	if err != nil {
		return Result{}, fmt.Errorf("etcd join of %s: %w", o.Node.Name, err)
	}
	if self != nil && !self.IsLearner && self.Name != "" {
		return o.convergeVoter(ctx, r, cli, members, self, tlsCfg, changed, t0)
	}
	if self == nil {
		// A host that is not a member must start with an empty data dir; data in it
		// belongs to an earlier member, and etcd would start as that member.
		hasData, err := r.hasData(ctx)
		if err != nil {
			return Result{}, err
		}
		if hasData {
			return Result{}, fmt.Errorf("etcd join of %s: %s holds data of an earlier etcd member, but %s is not a member of the cluster; run `kubeforge reset phase etcd` on it (or remove %s) and join again",
				o.Node.Name, r.cfg.DataDir, o.Node.Name, r.cfg.DataDir)
		}
	}
	if adminErr != nil {
		return Result{}, adminErr
	}
	if o.DryRun {
		return o.dryRunJoin(ctx, r, members, self)
	}
	jr, err := JoinMember(ctx, JoinRequest{
		Client:  cli,
		TLS:     adminTLS,
		Member:  r.cfg.Member,
		Runner:  r,
		Timeout: o.Timeout,
		Logf:    o.Logf,
	})
	r.stopPendingStart()
	if err != nil {
		return Result{}, fmt.Errorf("etcd join of %s: %w", o.Node.Name, err)
	}
	if err := o.dropJoinUser(ctx, cli); err != nil {
		return Result{}, err
	}
	return Result{Changed: true, Detail: fmt.Sprintf("%s joined as voting member %x", o.Node.Name, jr.ID),
		Started: jr.StartedAfter, Promoted: jr.PromotedAfter}, nil
}

// convergeVoter handles a host that is already a voting member: its files are
// brought to the desired config (keeping its bootstrap settings) and the unit
// restarted only if they changed.
func (o *Options) convergeVoter(ctx context.Context, r *hostMember, cli *clientv3.Client, members []*etcdserverpb.Member, self *etcdserverpb.Member, tlsCfg *tls.Config, changed bool, t0 time.Time) (Result, error) {
	cur, err := r.currentConfig(ctx)
	if err != nil {
		return Result{}, err
	}
	r.cfg.InitialCluster = initialCluster(members, self.ID, r.cfg.Member)
	r.cfg.InitialClusterState = ClusterStateExisting
	r.cfg.keepBootstrap(cur)
	fc, err := r.writeFiles(ctx)
	if err != nil {
		return Result{}, err
	}
	res, err := o.runMember(ctx, r, tlsCfg, changed || fc, t0)
	if err == nil && !res.Changed {
		res.Detail = fmt.Sprintf("%s is already a started voting member (%x)", o.Node.Name, self.ID)
	}
	if err == nil {
		err = o.dropJoinUser(ctx, cli)
	}
	return res, err
}

// dryRunJoin writes the files a join would write to the dry-run host and says
// what the join would do, without touching the cluster.
func (o *Options) dryRunJoin(ctx context.Context, r *hostMember, members []*etcdserverpb.Member, self *etcdserverpb.Member) (Result, error) {
	what := "add it as a learner"
	if self != nil {
		what = fmt.Sprintf("resume learner %x", self.ID)
	}
	o.Logf("dry run: would %s, start %s with the %d current members and promote it once it caught up", what, UnitName, len(members))
	r.cfg.InitialCluster = append(initialCluster(members, 0, r.cfg.Member), Peer{Name: o.Node.Name, PeerURL: r.cfg.Member.PeerURL()})
	r.cfg.InitialClusterState = ClusterStateExisting
	if _, err := r.writeFiles(ctx); err != nil {
		return Result{}, err
	}
	_ = o.Host.Units().Start(ctx, UnitName)
	return Result{Changed: true, Detail: "dry run"}, nil
}

// dropJoinUser deletes the etcd user of the handed-over one-join credential once
// the member is a voter: from then on nothing on this host can change the
// cluster's membership or read its keys.
func (o *Options) dropJoinUser(ctx context.Context, cli *clientv3.Client) error {
	if o.JoinTLS == nil {
		return nil
	}
	user := UserOf(o.JoinTLS)
	if !strings.HasPrefix(user, JoinUserPrefix) {
		return fmt.Errorf("etcd join of %s: the handed-over credential is for %q, not a one-join user", o.Node.Name, user)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	deleted, err := DeleteOwnUser(dctx, cli, user)
	if err != nil {
		return fmt.Errorf("etcd join of %s: %w", o.Node.Name, err)
	}
	if !deleted {
		return nil // spent by an earlier run
	}
	o.Logf("deleted the one-join etcd user %s: this host keeps no etcd credential beyond its member certificates", user)
	return nil
}

// ResetOptions are what Reset needs.
type ResetOptions struct {
	Host host.Host
	// Cluster may be nil (reset works without a config); it supplies the data dir
	// and the other members' endpoints.
	Cluster  *config.Cluster
	NodeName string
	CertDir  string
	// Force removes the local member even when removing it breaks quorum, it is
	// the last member or the cluster cannot be reached.
	Force  bool
	DryRun bool
	Logf   func(format string, a ...any)
}

// Reset removes the host's member from the cluster and deletes it from the host:
// unit stopped, disabled and removed, config file and data dir deleted. Without
// Force it refuses, changing nothing, when the removal would leave the remaining
// members without a healthy quorum, when the member is the last voting member, or
// when the cluster cannot be reached to remove it.
func Reset(ctx context.Context, o ResetOptions) (Result, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	h := o.Host
	dataDir := config.DefaultEtcdDataDir
	if o.Cluster != nil {
		dataDir = o.Cluster.Spec.Etcd.DataDir
	}
	cur, err := h.ReadFile(ctx, ConfigPath)
	if err != nil && !host.IsNotExist(err) {
		return Result{}, err
	}
	if vals, err := configValues(cur); err == nil {
		if d, ok := vals["data-dir"].(string); ok && d != "" {
			dataDir = d // the member's own record wins over a config that may have changed
		}
	}
	// Before anything changes: a data dir that is a system directory is the
	// operator's, not something reset may delete.
	if err := config.CheckOwnDir("etcd data dir (spec.etcd.dataDir, or data-dir in "+ConfigPath+")", dataDir); err != nil {
		return Result{}, fmt.Errorf("%s: reset refused, nothing removed: %w", h.Name(), err)
	}
	r := &hostMember{h: h, cfg: MemberConfig{DataDir: dataDir}, logf: o.Logf}
	// Files first: a host kubeforge never put etcd on has none of them, and is
	// then left alone without even asking its systemd.
	present := cur != nil
	for _, p := range []string{dataDir, unitFile} {
		_, err := h.Stat(ctx, p)
		if err == nil {
			present = true
		} else if !host.IsNotExist(err) {
			return Result{}, err
		}
	}
	if !present {
		st, err := h.Units().Status(ctx, UnitName)
		if err != nil || st.LoadState != "loaded" {
			return Result{Detail: "no etcd member on " + h.Name()}, nil
		}
	}

	if err := o.leave(ctx, cur); err != nil {
		if !o.Force {
			return Result{}, err
		}
		o.Logf("WARNING: %v; removing the local member anyway (forced)", err)
	}
	if o.DryRun {
		o.Logf("dry run: would stop and remove %s, %s and %s", UnitName, ConfigPath, dataDir)
	}
	if err := r.Remove(ctx); err != nil {
		return Result{}, fmt.Errorf("%s: removing the etcd member: %w", h.Name(), err)
	}
	return Result{Changed: true, Detail: fmt.Sprintf("etcd member removed from %s", h.Name())}, nil
}

// leave removes this host's member from the cluster's member list. With Force, a
// failed safety check is only a warning and the removal is still tried, except
// for the last voting member, which etcd cannot remove. It is long because it
// must first find the cluster three ways (the member's own config, the cluster
// configuration, its peers' client ports), each the only one left after a
// different earlier failure, before it can ask anything.
func (o *ResetOptions) leave(ctx context.Context, cur []byte) error {
	h := o.Host
	vals, _ := configValues(cur)
	name, _ := vals["name"].(string)
	if name == "" {
		name = o.NodeName
	}
	peerURL, _ := vals["initial-advertise-peer-urls"].(string)
	var eps []string
	if s, _ := vals["advertise-client-urls"].(string); s != "" {
		eps = append(eps, strings.Split(s, ",")...)
	}
	if o.Cluster != nil {
		for _, eh := range o.Cluster.HostsWithRole(config.RoleEtcd) {
			if ep := MemberOf(eh).ClientURL(); eh.Name != name && !contains(eps, ep) {
				eps = append(eps, ep)
			}
		}
	}
	// The peers this member started with, at its own client port: once the
	// control plane removed this member (`etcd remove-member`), the local etcd
	// has stopped, and without a configuration they are how reset finds the
	// cluster to confirm it.
	eps = append(eps, peerClientURLs(vals, eps)...)
	if len(eps) == 0 {
		return fmt.Errorf("%s: neither %s nor a cluster configuration says where the etcd cluster is; cannot remove member %s from it", h.Name(), ConfigPath, name)
	}
	tlsCfg, err := AdminTLS(HostRead(ctx, h), o.CertDir)
	admin := err == nil
	if !admin {
		// Not a control-plane host: it may still see whether it is a member.
		if tlsCfg, err = ClientTLSFiles(o.CertDir).Config(HostRead(ctx, h)); err != nil {
			return fmt.Errorf("%s: cannot talk to etcd to remove member %s: %w", h.Name(), name, err)
		}
	}
	cli, err := NewClient(eps, tlsCfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	st, err := GetClusterStatus(ctx, cli, tlsCfg)
	if err != nil {
		return fmt.Errorf("cannot reach the etcd cluster to remove member %s: %w", name, err)
	}
	var id uint64
	for _, m := range st.Members {
		if (name != "" && m.Name == name) || (peerURL != "" && contains(m.PeerURLs, peerURL)) {
			id = m.ID
		}
	}
	if id == 0 {
		o.Logf("%s is not a member of the etcd cluster (any more)", name)
		return nil
	}
	if !admin {
		return fmt.Errorf("%s is still etcd member %x, and only the control plane may remove members (%v): run `kubeforge etcd remove-member %s` on a control-plane host, then reset %s again",
			name, id, ErrNoAdminCredential, name, h.Name())
	}
	if err := CheckRemoval(st, id); err != nil {
		err = fmt.Errorf("refusing to remove etcd member %s: %w; pass --force-etcd-removal to remove it anyway", name, err)
		if !o.Force || errors.Is(err, ErrLastMember) {
			return err
		}
		o.Logf("WARNING: %v (forced)", err)
	}
	if o.DryRun {
		o.Logf("dry run: would remove member %s (%x) from the etcd cluster", name, id)
		return nil
	}
	// Ask the other members: the one being removed stops as soon as it learns
	// it is out, often before its answer is sent, and without --config its own
	// endpoint may be the only one the client knows.
	var others []string
	for _, m := range st.Members {
		if m.ID != id && !m.IsLearner {
			others = append(others, m.ClientURLs...)
		}
	}
	if len(others) > 0 {
		cli.SetEndpoints(others...)
	}
	if err := RemoveMember(ctx, cli, tlsCfg, st, id, o.Logf); err != nil {
		return err
	}
	o.Logf("removed member %s (%x) from the etcd cluster; %d voting members remain", name, id, len(st.Voters())-1)
	return nil
}

// peerClientURLs are the client URLs of the peers in a member config's
// initial-cluster, on the port of its own advertise-client-urls (kubeforge's
// members share their ports), except those in have.
func peerClientURLs(vals map[string]any, have []string) []string {
	ic, _ := vals["initial-cluster"].(string)
	adv, _ := vals["advertise-client-urls"].(string)
	own, err := url.Parse(strings.Split(adv, ",")[0])
	if ic == "" || err != nil || own.Port() == "" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(ic, ",") {
		_, peer, ok := strings.Cut(p, "=")
		u, err := url.Parse(peer)
		if !ok || err != nil || u.Hostname() == "" {
			continue
		}
		ep := own.Scheme + "://" + net.JoinHostPort(u.Hostname(), own.Port())
		if !contains(have, ep) && !contains(out, ep) {
			out = append(out, ep)
		}
	}
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
