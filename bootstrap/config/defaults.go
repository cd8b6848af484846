package config

import (
	"net"
	"strconv"
	"time"
)

// Default values. They are what `kubeforge config print-defaults` shows and what
// SetDefaults fills into fields left empty.
const (
	DefaultClusterName       = "kubernetes"
	DefaultKubernetesVersion = "v1.34.4"
	DefaultAPIServerPort     = 6443

	DefaultPodCIDR        = "10.244.0.0/16"
	DefaultNodeSubnetSize = 24
	DefaultServiceCIDR    = "10.96.0.0/12"
	DefaultDNSDomain      = "cluster.local"

	DefaultVNI               = 1
	DefaultVXLANPort         = 8472
	DefaultTxChecksumOffload = TxChecksumOffloadAuto

	DefaultEtcdDataDir = "/var/lib/etcd"
	// The apiserver already compacts every 5 minutes; etcd's own periodic compaction
	// is the safety net for clients that write directly, and one hour of history is
	// plenty for watchers to resume after a reconnect.
	DefaultCompactionMode      = CompactionPeriodic
	DefaultCompactionRetention = "1h"
	// 8 GiB is the largest quota etcd's operations guide recommends; the 2 GiB etcd
	// default is easily reached by a busy cluster with many events.
	DefaultQuotaBackendBytes int64 = 8 << 30
	DefaultSnapshotCount     int64 = 10000
	DefaultHeartbeatInterval       = Duration("100ms")
	DefaultElectionTimeout         = Duration("1000ms")
	// Hourly snapshots, a day of them kept: losing at most an hour of cluster
	// state, and a day to notice a mistake that is in every newer snapshot.
	DefaultEtcdBackupSchedule = "1h"
	DefaultEtcdBackupKeep     = 24
	DefaultEtcdBackupDir      = "/var/lib/kubeforge/etcd-snapshots"

	DefaultKeyAlgorithm = KeyRSA2048
	DefaultCAValidity   = Duration("87600h")
	DefaultValidity     = Duration("8760h")
	// DefaultCertRenewSchedule and DefaultCertRenewBefore: check daily, renew
	// what expires within 30 days.
	DefaultCertRenewSchedule = "daily"
	DefaultCertRenewBefore   = Duration("720h")

	DefaultSELinux  = SELinuxDisabled
	DefaultFirewall = FirewallDisable

	// Two CoreDNS replicas on two nodes, as kubeadm deploys: one node going down
	// leaves cluster DNS answering. (One on a one-host cluster.)
	DefaultCoreDNSReplicas = 2

	DefaultSSHUser = "root"
	DefaultSSHPort = 22
)

// HostCopyPath is where init keeps the configuration it ran with on the host
// (0600), for later commands on that host such as `certs renew`; reset removes it.
const HostCopyPath = "/etc/kubeforge/cluster.yaml"

// Default returns a complete configuration for the seed topology: three etcd
// members on master01, node01 and node02, master01 as the one control-plane host.
// It is what `kubeforge config print-defaults` prints, so it is also a starting
// point for operators.
func Default() *Cluster {
	c := &Cluster{
		APIVersion: APIVersion,
		Kind:       Kind,
		Metadata:   Metadata{Name: DefaultClusterName},
		Spec: ClusterSpec{
			Hosts: []Host{
				{Name: "master01", Address: "192.168.161.151", Roles: []Role{RoleControlPlane, RoleEtcd}},
				{Name: "node01", Address: "192.168.161.152", Roles: []Role{RoleWorker, RoleEtcd}},
				{Name: "node02", Address: "192.168.161.153", Roles: []Role{RoleWorker, RoleEtcd}},
			},
		},
	}
	SetDefaults(c)
	return c
}

// SetDefaults fills every empty field of c with its default. Fields that are already
// set are left alone, so it is idempotent. Empty maps and lists are normalised to
// nil so that a config and its Marshal/Decode round trip compare equal.
func SetDefaults(c *Cluster) {
	if c.APIVersion == "" {
		c.APIVersion = APIVersion
	}
	if c.Kind == "" {
		c.Kind = Kind
	}
	if c.Metadata.Name == "" {
		c.Metadata.Name = DefaultClusterName
	}
	s := &c.Spec
	if s.KubernetesVersion == "" {
		s.KubernetesVersion = DefaultKubernetesVersion
	}
	if s.ControlPlaneEndpoint == "" {
		if cp := c.HostsWithRole(RoleControlPlane); len(cp) > 0 && cp[0].Address != "" {
			s.ControlPlaneEndpoint = net.JoinHostPort(cp[0].Address, strconv.Itoa(DefaultAPIServerPort))
		}
	}
	if len(s.Hosts) == 0 {
		s.Hosts = nil
	}
	for i := range s.Hosts {
		h := &s.Hosts[i]
		if len(h.Roles) == 0 {
			h.Roles = nil
		}
		if h.SSH != nil {
			if h.SSH.User == "" {
				h.SSH.User = DefaultSSHUser
			}
			if h.SSH.Port == 0 {
				h.SSH.Port = DefaultSSHPort
			}
		}
	}

	n := &s.Networking
	if n.PodCIDR == "" {
		n.PodCIDR = DefaultPodCIDR
	}
	if n.NodeSubnetSize == 0 {
		n.NodeSubnetSize = DefaultNodeSubnetSize
	}
	if n.ServiceCIDR == "" {
		n.ServiceCIDR = DefaultServiceCIDR
	}
	if n.DNSDomain == "" {
		n.DNSDomain = DefaultDNSDomain
	}
	if n.Overlay.Backend == "" {
		n.Overlay.Backend = OverlayBackendKube
	}
	if n.Overlay.VNI == 0 {
		n.Overlay.VNI = DefaultVNI
	}
	if n.Overlay.Port == 0 {
		n.Overlay.Port = DefaultVXLANPort
	}
	// MTU 0 means "derive from the underlay", so it has no default to fill.
	if n.Overlay.TxChecksumOffload == "" {
		n.Overlay.TxChecksumOffload = DefaultTxChecksumOffload
	}

	e := &s.Etcd
	if e.DataDir == "" {
		e.DataDir = DefaultEtcdDataDir
	}
	if e.AutoCompactionMode == "" {
		e.AutoCompactionMode = DefaultCompactionMode
	}
	if e.AutoCompactionRetention == "" {
		// A duration only means something in periodic mode; in revision mode
		// kubeforge does not guess how many revisions the operator wants to keep.
		if e.AutoCompactionMode == CompactionPeriodic {
			e.AutoCompactionRetention = DefaultCompactionRetention
		} else if e.AutoCompactionMode == CompactionRevision {
			e.AutoCompactionRetention = "10000"
		}
	}
	if e.QuotaBackendBytes == 0 {
		e.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	if e.SnapshotCount == 0 {
		e.SnapshotCount = DefaultSnapshotCount
	}
	if e.HeartbeatInterval == "" {
		e.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if e.Backup.Schedule == "" {
		e.Backup.Schedule = DefaultEtcdBackupSchedule
	}
	if e.Backup.Keep == 0 {
		e.Backup.Keep = DefaultEtcdBackupKeep
	}
	if e.Backup.Dir == "" {
		e.Backup.Dir = DefaultEtcdBackupDir
	}
	if e.ElectionTimeout == "" {
		e.ElectionTimeout = DefaultElectionTimeout
	}
	e.ExtraArgs = nilIfEmpty(e.ExtraArgs)

	ct := &s.Certificates
	if ct.KeyAlgorithm == "" {
		ct.KeyAlgorithm = DefaultKeyAlgorithm
	}
	if ct.CAValidity == "" {
		ct.CAValidity = DefaultCAValidity
	}
	if ct.Validity == "" {
		ct.Validity = DefaultValidity
	}
	if ct.AutoRenew.Schedule == "" {
		ct.AutoRenew.Schedule = DefaultCertRenewSchedule
	}
	if ct.AutoRenew.RenewBefore == "" {
		ct.AutoRenew.RenewBefore = DefaultCertRenewBefore
		// A short validity gets a third of it as the window, so a new
		// certificate is not due at once.
		if v, err := ct.Validity.Parse(); err == nil && v > 0 && v <= DefaultCertRenewBefore.Duration() {
			ct.AutoRenew.RenewBefore = Duration((v / 3).Truncate(time.Second).String())
		}
	}
	if len(ct.CertSANs) == 0 {
		ct.CertSANs = nil
	}

	for _, nc := range s.Components.named() {
		nc.c.ExtraArgs = nilIfEmpty(nc.c.ExtraArgs)
	}

	if s.TimeSync.Server == "" {
		if cp := c.HostsWithRole(RoleControlPlane); len(cp) > 0 {
			s.TimeSync.Server = cp[0].Name
		}
	}
	if len(s.TimeSync.UpstreamServers) == 0 {
		s.TimeSync.UpstreamServers = nil
	}

	if s.Security.SELinux == "" {
		s.Security.SELinux = DefaultSELinux
	}
	if s.Security.Firewall == "" {
		s.Security.Firewall = DefaultFirewall
	}

	dns := &s.Addons.CoreDNS
	if dns.Enabled == nil {
		enabled := true
		dns.Enabled = &enabled
	}
	if dns.Replicas == 0 {
		// One replica per node at most (the pods repel each other), so a
		// one-host cluster gets one.
		dns.Replicas = DefaultCoreDNSReplicas
		if n := len(c.HostNames()); n > 0 && n < dns.Replicas {
			dns.Replicas = n
		}
	}
	if len(dns.Upstreams) == 0 {
		dns.Upstreams = nil
	}
	if len(dns.StubDomains) == 0 {
		dns.StubDomains = nil
	}
	for i := range dns.StubDomains {
		if len(dns.StubDomains[i].Servers) == 0 {
			dns.StubDomains[i].Servers = nil
		}
	}
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
