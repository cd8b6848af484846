// Package status is the supervision view of a kubeforge host: which of its
// units run, how long its certificates have left, its etcd cluster, its Node,
// its overlay peers and its etcd backups — everything an operator checks after
// a change or before going home, with every problem on one line. It only reads.
//
// Host gathers one host's report (on that host, `kubeforge status`); Cluster
// asks every host of a configuration for its report over SSH (`kubeforge status
// -f cluster.yaml`) and prints one row a host.
package status

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/etcd/snapshot"
	"github.com/kubeforge/kubeforge/components/inventory"
	"github.com/kubeforge/kubeforge/components/overlay"
	"github.com/kubeforge/kubeforge/components/renewal"
)

// Report is one host's status.
type Report struct {
	Host      string   `json:"host"`
	Roles     []string `json:"roles,omitempty"`
	Kubeforge string   `json:"kubeforge"`
	// Versions of the installed components that report one.
	Versions     map[string]string `json:"versions,omitempty"`
	Units        []Unit            `json:"units"`
	Certificates *Certificates     `json:"certificates,omitempty"`
	Etcd         *Etcd             `json:"etcd,omitempty"`
	Node         *Node             `json:"node,omitempty"`
	Overlay      *Overlay          `json:"overlay,omitempty"`
	Backup       *Backup           `json:"backup,omitempty"`
	// Problems is everything that is wrong, one line each; empty is healthy.
	Problems []string `json:"problems"`
}

// Unit is one systemd unit of kubeforge's.
type Unit struct {
	Name    string `json:"name"`
	Active  string `json:"active"`
	Sub     string `json:"sub"`
	Enabled string `json:"enabled,omitempty"`
	OK      bool   `json:"ok"`
}

// Certificates is the soonest expiry and what expires within the renewal window.
type Certificates struct {
	Window   string    `json:"window"`
	Soonest  string    `json:"soonest"`
	NotAfter time.Time `json:"notAfter"`
	// Expiring are the certificates and CAs that expire within the window.
	Expiring []string `json:"expiring,omitempty"`
}

// Etcd is the etcd cluster as this host sees it.
type Etcd struct {
	Members int    `json:"members"`
	Healthy int    `json:"healthy"`
	Leader  string `json:"leader,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Node is this host's Node (and, with an administrator's credential, all of them).
type Node struct {
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
	// Nodes and NotReady: the cluster's Nodes, when this host may list them.
	Nodes    int      `json:"nodes,omitempty"`
	NotReady []string `json:"notReady,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// Overlay is what the overlay agent reports.
type Overlay struct {
	Subnet string `json:"subnet,omitempty"`
	Peers  int    `json:"peers"`
	Error  string `json:"error,omitempty"`
}

// Backup is the etcd backup timer's work.
type Backup struct {
	Dir       string    `json:"dir"`
	Snapshots int       `json:"snapshots"`
	Newest    string    `json:"newest,omitempty"`
	NewestAt  time.Time `json:"newestAt,omitzero"`
	LastRunOK bool      `json:"lastRunOK"`
	Error     string    `json:"error,omitempty"`
}

// Probes are the reads that need a network or a credential; Host fills the
// sections it has probes for. Each returns what it saw or an error naming what
// it could not reach.
type Probes struct {
	Etcd    func(ctx context.Context) (*Etcd, error)
	Node    func(ctx context.Context, name string) (*Node, error)
	Overlay func(ctx context.Context) (*Overlay, error)
	// Snapshots lists a backup directory (snapshot.List on the local host).
	Snapshots func(dir string) ([]snapshot.Entry, error)
}

// Options say which host to report on.
type Options struct {
	Host host.Host
	// Cluster is the host's copy of the configuration (nil: none found; the
	// report then covers what the host has installed).
	Cluster *config.Cluster
	// NodeName is this host's name in the configuration.
	NodeName        string
	CertDir, KcDir  string
	KubeforgeVer    string
	Now             time.Time
	Probes          Probes
	VersionCommands map[string][]string
}

// DefaultVersionCommands ask the installed binaries for their versions.
var DefaultVersionCommands = map[string][]string{
	"kubelet":    {"/usr/local/bin/kubelet", "--version"},
	"etcd":       {"/usr/local/bin/etcd", "--version"},
	"containerd": {"/usr/local/bin/containerd", "--version"},
}

// Host gathers one host's report. Every section that cannot be read becomes a
// problem naming what failed; Host itself fails only on a cancelled context.
func Host(ctx context.Context, o Options) (*Report, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	r := &Report{Host: o.NodeName, Kubeforge: o.KubeforgeVer, Versions: map[string]string{}, Problems: []string{}}
	var self *config.Host
	if o.Cluster != nil {
		if h, ok := o.Cluster.Host(o.NodeName); ok {
			self = h
			for _, role := range h.Roles {
				r.Roles = append(r.Roles, string(role))
			}
		}
	}
	r.units(ctx, o)
	if self == nil {
		// A joined host keeps no copy of the configuration: its roles are
		// what it runs.
		self = &config.Host{Name: o.NodeName, Roles: r.rolesFromUnits()}
	}
	r.versions(ctx, o)
	r.certificates(ctx, o, self)
	if (self.HasRole(config.RoleEtcd) || self.HasRole(config.RoleControlPlane)) && o.Probes.Etcd != nil {
		r.Etcd = probe(ctx, o.Probes.Etcd, func(err error) *Etcd { return &Etcd{Error: err.Error()} })
		switch {
		case r.Etcd.Error != "":
			r.problem("etcd: %s", r.Etcd.Error)
		case r.Etcd.Healthy < r.Etcd.Members:
			r.problem("etcd: %d of %d members healthy", r.Etcd.Healthy, r.Etcd.Members)
		case r.Etcd.Leader == "":
			r.problem("etcd: no leader")
		}
	}
	if r.hasUnit("kubelet.service") && o.Probes.Node != nil {
		r.Node = probe(ctx, func(ctx context.Context) (*Node, error) { return o.Probes.Node(ctx, o.NodeName) },
			func(err error) *Node { return &Node{Name: o.NodeName, Error: err.Error()} })
		switch {
		case r.Node.Error != "":
			r.problem("node: %s", r.Node.Error)
		case !r.Node.Ready:
			r.problem("node: %s is not Ready", r.Node.Name)
		}
		if len(r.Node.NotReady) > 0 {
			r.problem("nodes not Ready: %s", strings.Join(r.Node.NotReady, ", "))
		}
	}
	if r.hasUnit(overlay.UnitName) && o.Probes.Overlay != nil {
		r.Overlay = probe(ctx, o.Probes.Overlay, func(err error) *Overlay { return &Overlay{Error: err.Error()} })
		if r.Overlay.Error != "" {
			r.problem("overlay: %s", r.Overlay.Error)
		}
	}
	r.backup(ctx, o)
	return r, ctx.Err()
}

func probe[T any](ctx context.Context, f func(context.Context) (*T, error), onErr func(error) *T) *T {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := f(pctx)
	if err != nil {
		return onErr(err)
	}
	return v
}

// rolesFromUnits infers a host's roles from its units, for a host without a
// configuration, and records them in the report.
func (r *Report) rolesFromUnits() []config.Role {
	var roles []config.Role
	if r.hasUnit("kube-apiserver.service") {
		roles = append(roles, config.RoleControlPlane)
	} else if r.hasUnit("kubelet.service") {
		roles = append(roles, config.RoleWorker)
	}
	if r.hasUnit("etcd.service") {
		roles = append(roles, config.RoleEtcd)
	}
	for _, role := range roles {
		r.Roles = append(r.Roles, string(role)+" (from its units)")
	}
	return roles
}

func (r *Report) problem(format string, a ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
}

func (r *Report) hasUnit(name string) bool {
	return slices.ContainsFunc(r.Units, func(u Unit) bool { return u.Name == name })
}

// Units that run on a schedule: their service is a oneshot, inactive between
// runs; only a failed run is a problem. The timer itself must be active.
var scheduled = map[string]string{
	renewal.ServiceName:  renewal.TimerName,
	snapshot.ServiceName: snapshot.TimerName,
}

// watched are kubeforge's units: every component's (the inventory), the overlay
// agent and the scheduled jobs.
func watched() []string {
	names := append(inventory.Units(), overlay.UnitName)
	for svc, timer := range scheduled {
		names = append(names, timer, svc)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// units reports every kubeforge unit the host has (a unit systemd does not
// know is not installed here, and not a problem).
func (r *Report) units(ctx context.Context, o Options) {
	for _, name := range watched() {
		st, err := o.Host.Units().Status(ctx, name)
		if err != nil {
			r.problem("unit %s: %v", name, err)
			continue
		}
		if st.LoadState == "" || st.LoadState == "not-found" {
			continue
		}
		u := Unit{Name: name, Active: st.ActiveState, Sub: st.SubState, Enabled: st.Enabled}
		_, oneshot := scheduled[name]
		switch {
		case st.ActiveState == "failed":
			if oneshot {
				r.problem("%s: its last run failed (journalctl -u %s)", name, name)
			} else {
				r.problem("%s: failed (journalctl -u %s)", name, name)
			}
		case oneshot:
			u.OK = true
		case st.Active():
			u.OK = true
		default:
			r.problem("%s: %s/%s, want active", name, st.ActiveState, st.SubState)
		}
		r.Units = append(r.Units, u)
	}
}

func (r *Report) versions(ctx context.Context, o Options) {
	cmds := o.VersionCommands
	if cmds == nil {
		cmds = DefaultVersionCommands
	}
	for name, argv := range cmds {
		if _, err := o.Host.Stat(ctx, argv[0]); err != nil {
			continue
		}
		res, err := o.Host.Run(ctx, host.Cmd{Argv: argv, Timeout: 10 * time.Second, ReadOnly: true})
		if err != nil || !res.OK() {
			continue
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(res.Stdout)), "\n")
		r.Versions[name] = versionOf(line)
	}
}

// versionOf picks the version word ("v1.34.4", "3.6.16") out of a --version line.
func versionOf(line string) string {
	for _, f := range strings.Fields(line) {
		f = strings.TrimSuffix(f, ",")
		if len(f) > 1 && (f[0] == 'v' && f[1] >= '0' && f[1] <= '9' || f[0] >= '0' && f[0] <= '9') && strings.Contains(f, ".") {
			return f
		}
	}
	return line
}

// certificates reports the soonest expiry and what is within the renewal
// window (the configuration's renewBefore; 30 days without one).
func (r *Report) certificates(ctx context.Context, o Options, self *config.Host) {
	window := config.DefaultCertRenewBefore.Duration()
	if o.Cluster != nil {
		if w, err := o.Cluster.Spec.Certificates.AutoRenew.RenewBefore.Parse(); err == nil && w > 0 {
			window = w
		}
	}
	rep, err := certs.CheckExpiration(certs.HostFS{Ctx: ctx, Host: o.Host}, o.CertDir, o.KcDir, o.Now)
	if err != nil {
		r.problem("certificates: %v", err)
		return
	}
	c := &Certificates{Window: window.String()}
	consider := func(name string, notAfter time.Time, missing bool) {
		if missing {
			return
		}
		if c.Soonest == "" || notAfter.Before(c.NotAfter) {
			c.Soonest, c.NotAfter = name, notAfter
		}
		if notAfter.Sub(o.Now) < window {
			c.Expiring = append(c.Expiring, fmt.Sprintf("%s (%s)", name, notAfter.UTC().Format(time.RFC3339)))
		}
	}
	for _, ca := range rep.CAs {
		consider(ca.Name, ca.NotAfter, ca.Missing)
	}
	for _, ce := range rep.Certificates {
		consider(ce.Name, ce.NotAfter, ce.Missing)
	}
	if c.Soonest == "" {
		return // no PKI on this host
	}
	r.Certificates = c
	if len(c.Expiring) > 0 {
		fix := "kubeforge certs renew all"
		if self != nil && !self.HasRole(config.RoleControlPlane) {
			fix = "on a control-plane host: kubeforge certs renew all"
		}
		r.problem("certificates expiring within %s: %s (%s)", window, strings.Join(c.Expiring, ", "), fix)
	}
}

// backup reports the etcd backup timer's snapshots and its last run.
func (r *Report) backup(ctx context.Context, o Options) {
	if !r.hasUnit(snapshot.TimerName) || o.Cluster == nil {
		return
	}
	b := &Backup{Dir: o.Cluster.Spec.Etcd.Backup.Dir, LastRunOK: true}
	for _, u := range r.Units {
		if u.Name == snapshot.ServiceName && u.Active == "failed" {
			b.LastRunOK = false
		}
	}
	if o.Probes.Snapshots != nil {
		ents, err := o.Probes.Snapshots(b.Dir)
		if err != nil {
			b.Error = err.Error()
			r.problem("backup: %v", err)
		} else {
			b.Snapshots = len(ents)
			if len(ents) > 0 { // List puts the newest first
				b.Newest, b.NewestAt = path.Base(ents[0].Path), ents[0].Sidecar.Time
			}
		}
	}
	r.Backup = b
}
