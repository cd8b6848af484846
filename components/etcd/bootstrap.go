package etcd

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
)

// Target is one etcd host of a static bootstrap, reached through its own Host.
type Target struct {
	Host host.Host
	Node config.Host
}

// BootstrapOptions configure Bootstrap.
type BootstrapOptions struct {
	Cluster *config.Cluster
	// Targets are all etcd hosts of Cluster, each once.
	Targets   []Target
	CertDir   string
	BundleDir string
	DryRun    bool
	// Timeout bounds waiting for the members to be healthy; 5 minutes when zero.
	Timeout time.Duration
	Logf    func(format string, a ...any)
}

// Bootstrap stands up every member of a new cluster at once from a static
// initial-cluster: the path for a driver that reaches all hosts itself (over SSH),
// where the learner dance of Join is unnecessary because no member holds data yet.
//
// The etcd CA is created on the first etcd host (or the existing one is used)
// and its key stays there: the other hosts receive the CA certificate and their
// own server, peer and health-check certificates, issued in memory. All members
// are started together (each waits for a quorum of the others) and the call
// returns once all of them are healthy voters under one leader. (Long: the
// certificates, files and status are their own functions; what stays is the
// order of the steps across all hosts, which is the point of the function.) Members that
// already have data keep their cluster, so a rerun on a running cluster changes
// nothing.
func Bootstrap(ctx context.Context, o BootstrapOptions) (Result, error) {
	t0 := time.Now()
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if err := o.checkTargets(); err != nil {
		return Result{}, err
	}
	opts := make([]Options, len(o.Targets))
	for i, t := range o.Targets {
		name := t.Node.Name
		opts[i] = Options{Host: t.Host, Cluster: o.Cluster, Node: t.Node, CertDir: o.CertDir, BundleDir: o.BundleDir,
			DryRun: o.DryRun, Timeout: o.Timeout, Logf: func(f string, a ...any) { o.Logf("%s: %s", name, fmt.Sprintf(f, a...)) }}
	}

	// Certificates: the CA host first, then everyone else from its CA.
	changed, err := bootstrapCerts(ctx, o, opts)
	if err != nil {
		return Result{}, err
	}

	peers := make([]Peer, len(o.Targets))
	for i, t := range o.Targets {
		peers[i] = Peer{Name: t.Node.Name, PeerURL: MemberOf(t.Node).PeerURL()}
	}
	members := make([]*hostMember, len(opts))
	fileChanged := make([]bool, len(opts))
	err = forEach(opts, func(i int, op Options) error {
		binChanged, err := InstallBinary(ctx, op.Host, o.BundleDir)
		if err != nil {
			return fmt.Errorf("%s: installing etcd: %w", op.Host.Name(), err)
		}
		r := op.member()
		r.cfg.InitialCluster, r.cfg.InitialClusterState = peers, ClusterStateNew
		hasData, err := r.hasData(ctx)
		if err != nil {
			return err
		}
		if hasData {
			cur, err := r.currentConfig(ctx)
			if err != nil {
				return err
			}
			r.cfg.keepBootstrap(cur)
		}
		fc, err := r.writeFiles(ctx)
		if err != nil {
			return err
		}
		members[i], fileChanged[i] = r, binChanged || fc || changed
		return nil
	})
	if err != nil {
		return Result{}, err
	}

	tlsCfg, err := opts[0].clientTLS(ctx)
	if err != nil {
		return Result{}, err
	}
	var mu sync.Mutex
	var anyChanged bool
	// Started together: with a static initial cluster a member only becomes ready
	// once a quorum of its peers is up, so starting them one after another would
	// wait on the first forever.
	err = forEach(opts, func(i int, op Options) error {
		res, err := op.runMember(ctx, members[i], tlsCfg, fileChanged[i], t0)
		mu.Lock()
		anyChanged = anyChanged || res.Changed
		mu.Unlock()
		return err
	})
	if err != nil {
		return Result{}, err
	}
	if o.DryRun {
		return Result{Changed: true, Detail: "dry run"}, nil
	}
	authChanged, err := opts[0].ensureAuth(ctx)
	if err != nil {
		return Result{}, err
	}
	anyChanged = anyChanged || authChanged
	st, err := bootstrapStatus(ctx, o, opts[0])
	if err != nil {
		return Result{}, err
	}
	detail := fmt.Sprintf("%d healthy voting members, leader %s", len(st.Members), st.Leader)
	if !anyChanged {
		return Result{Detail: detail}, nil
	}
	return Result{Changed: true, Detail: detail, Healthy: time.Since(t0)}, nil
}

// bootstrapCerts ensures the etcd CA and the first host's certificates there,
// then issues every other host's from that CA (its key never leaves the host).
func bootstrapCerts(ctx context.Context, o BootstrapOptions, opts []Options) (bool, error) {
	changed, err := EnsureCerts(ctx, opts[0].Host, o.Cluster, opts[0].Node, o.CertDir, true, opts[0].Logf)
	if err != nil {
		return false, err
	}
	caCert, caKey, _ := certs.CertPaths(o.CertDir, certs.CertEtcdCA)
	ca, err := certs.LoadCA(certs.HostFS{Ctx: ctx, Host: opts[0].Host}, caCert, caKey)
	if err != nil {
		return false, fmt.Errorf("%s: etcd CA: %w", opts[0].Host.Name(), err)
	}
	for _, op := range opts[1:] {
		c, err := distributeCerts(ctx, op, ca)
		if err != nil {
			return false, err
		}
		changed = changed || c
	}
	return changed, nil
}

// bootstrapStatus is the new cluster's status as the administrator on the CA
// host sees it; all members must be healthy voters under one leader.
func bootstrapStatus(ctx context.Context, o BootstrapOptions, ca Options) (*ClusterStatus, error) {
	// The CA host is the administrator: the full status needs that credential.
	adminTLS, err := AdminTLS(HostRead(ctx, ca.Host), o.CertDir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ca.Host.Name(), err)
	}
	eps := make([]string, len(o.Targets))
	for i, t := range o.Targets {
		eps[i] = MemberOf(t.Node).ClientURL()
	}
	cli, err := NewClient(eps, adminTLS)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	st, err := GetClusterStatus(ctx, cli, adminTLS)
	if err != nil {
		return nil, err
	}
	if n := st.HealthyVoters(); n != len(o.Targets) || st.Leader == "" {
		return nil, fmt.Errorf("etcd bootstrap: %d of %d members are healthy voters (leader %q)", n, len(o.Targets), st.Leader)
	}
	return st, nil
}

// checkTargets insists on exactly the config's etcd hosts, CA host first.
func (o *BootstrapOptions) checkTargets() error {
	if o.Cluster == nil {
		return errors.New("etcd bootstrap: no cluster configuration")
	}
	want := o.Cluster.HostsWithRole(config.RoleEtcd)
	var wantNames, gotNames []string
	for _, h := range want {
		wantNames = append(wantNames, h.Name)
	}
	for _, t := range o.Targets {
		if t.Host == nil {
			return fmt.Errorf("etcd bootstrap: target %s has no host connection", t.Node.Name)
		}
		gotNames = append(gotNames, t.Node.Name)
	}
	sort.Strings(gotNames)
	sorted := append([]string(nil), wantNames...)
	sort.Strings(sorted)
	if strings.Join(sorted, ",") != strings.Join(gotNames, ",") {
		return fmt.Errorf("etcd bootstrap: targets %v are not the configuration's etcd hosts %v", gotNames, wantNames)
	}
	// The first etcd host keeps the CA, as Init would.
	for i, t := range o.Targets {
		if t.Node.Name == want[0].Name {
			o.Targets[0], o.Targets[i] = o.Targets[i], o.Targets[0]
			break
		}
	}
	return nil
}

// distributeCerts gives a member its certificates from ca, which stays on the CA
// host: only missing pairs are issued, existing ones are checked and kept.
func distributeCerts(ctx context.Context, op Options, ca *certs.CA) (bool, error) {
	fsys := certs.HostFS{Ctx: ctx, Host: op.Host}
	spec, err := certSpec(op.Cluster, op.Node)
	if err != nil {
		return false, err
	}
	files := map[string][]byte{"etcd/ca.crt": ca.CertPEM}
	names := memberCertNames(false)
	for _, n := range names {
		crt, key, err := certs.CertPaths(op.CertDir, n)
		if err != nil {
			return false, err
		}
		_, e1 := op.Host.Stat(ctx, crt)
		_, e2 := op.Host.Stat(ctx, key)
		if e1 == nil && e2 == nil {
			continue
		}
		issued, err := certs.IssueFiles(ca, spec, n, op.Node.Name)
		if err != nil {
			return false, fmt.Errorf("%s: %w", op.Host.Name(), err)
		}
		for k, v := range issued {
			files[k] = v
		}
	}
	before, err := existingFiles(ctx, op.Host, op.CertDir, names)
	if err != nil {
		return false, err
	}
	if err := certs.WriteFiles(fsys, op.CertDir, files); err != nil {
		return false, fmt.Errorf("%s: etcd certificates: %w", op.Host.Name(), err)
	}
	// Whatever was there before is now checked against the CA and this host's
	// names, the same way init and join check theirs.
	p := &certs.PKI{Spec: spec, CertDir: op.CertDir, FS: fsys, Out: lineWriter(op.Logf)}
	if err := p.CreateCerts(names...); err != nil {
		return false, fmt.Errorf("%s: etcd certificates: %w", op.Host.Name(), err)
	}
	return before < 2*len(names), nil
}

// forEach runs fn for every option in parallel and joins the errors.
func forEach(opts []Options, fn func(int, Options) error) error {
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, op := range opts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i, op)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
