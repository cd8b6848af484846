// Package config is kubeforge's cluster configuration: one versioned YAML document
// (apiVersion kubeforge.io/v1alpha1, kind Cluster) that describes the hosts, their
// roles and every cluster-wide setting the phases need.
//
// The shape follows kubeadm's ClusterConfiguration and k0sctl's Cluster: the types
// live here, defaulting in defaults.go, validation in validation.go and decoding in
// decode.go. Decoding is strict (an unknown or misspelt field is an error naming its
// path) because a silently ignored setting on a production cluster is worse than a
// refused config.
//
// Code outside this package should only ever see a *Cluster that went through
// Decode/Load (or Default): defaults are filled in and Validate has passed, so the
// helpers here may assume well-formed values.
package config

import (
	"time"
)

const (
	// Group is the API group of kubeforge's configuration kinds.
	Group = "kubeforge.io"
	// Version is the one configuration version this build reads and writes.
	Version = "v1alpha1"
	// APIVersion is the value of the apiVersion field.
	APIVersion = Group + "/" + Version
	// Kind is the value of the kind field.
	Kind = "Cluster"
)

// Cluster is the whole configuration of one cluster.
type Cluster struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Metadata   Metadata    `json:"metadata"`
	Spec       ClusterSpec `json:"spec"`
}

// Metadata names the cluster.
type Metadata struct {
	// Name is the cluster name: it ends up in kubeconfig cluster/context names and
	// certificate subjects, so it must be a DNS-1123 label.
	Name string `json:"name"`
}

// ClusterSpec is everything about the cluster except its name.
type ClusterSpec struct {
	// KubernetesVersion is the version of the upstream binaries, e.g. "v1.34.4".
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// ControlPlaneEndpoint is host:port where every client reaches kube-apiserver.
	// The host may be a DNS name or a VIP; by default it is the first control-plane
	// host's address on port 6443 (which is fine for one control-plane host, and a
	// single point of failure with several).
	ControlPlaneEndpoint string `json:"controlPlaneEndpoint,omitempty"`

	Hosts        []Host       `json:"hosts"`
	Networking   Networking   `json:"networking"`
	Etcd         Etcd         `json:"etcd"`
	Certificates Certificates `json:"certificates"`
	Components   Components   `json:"components,omitzero"`
	TimeSync     TimeSync     `json:"timeSync"`
	Security     Security     `json:"security"`
	Addons       Addons       `json:"addons"`
}

// Role is a job a host does in the cluster. A host may have several.
type Role string

const (
	// RoleControlPlane hosts run kube-apiserver, kube-controller-manager and
	// kube-scheduler.
	RoleControlPlane Role = "control-plane"
	// RoleEtcd hosts run an etcd member.
	RoleEtcd Role = "etcd"
	// RoleWorker hosts run containerd, kubelet and kube-proxy for workloads.
	RoleWorker Role = "worker"
)

// Roles lists every known role, in the order kubeforge brings them up.
var Roles = []Role{RoleEtcd, RoleControlPlane, RoleWorker}

// Host is one machine of the cluster.
type Host struct {
	// Name is the host's name in the cluster (node name, certificate CN/SAN, etcd
	// member name). A DNS-1123 label.
	Name string `json:"name"`
	// Address is the host's IP on the cluster network: etcd peers, apiserver and
	// kubelets talk on it, and the VXLAN overlay runs over it.
	Address string `json:"address"`
	// Roles are what the host runs; at least one.
	Roles []Role `json:"roles"`
	// SSH says how to reach the host remotely. Nil means kubeforge is run on the
	// host itself (or the caller decides).
	SSH *SSH `json:"ssh,omitempty"`
}

// SSH holds how to log in to a host.
type SSH struct {
	// User defaults to root.
	User string `json:"user,omitempty"`
	// Port defaults to 22.
	Port int `json:"port,omitempty"`
	// KeyPath is an absolute path to a private key on the machine running
	// kubeforge. Empty means the SSH agent.
	KeyPath string `json:"keyPath,omitempty"`
}

// Networking is the cluster's address plan and overlay.
type Networking struct {
	// PodCIDR is the cluster-wide pod range; every node gets one subnet of it.
	PodCIDR string `json:"podCIDR,omitempty"`
	// NodeSubnetSize is the prefix length of each node's pod subnet (24 gives each
	// node 254 pod addresses).
	NodeSubnetSize int `json:"nodeSubnetSize,omitempty"`
	// ServiceCIDR is the ClusterIP range. Its first address is the "kubernetes"
	// service, its tenth the cluster DNS.
	ServiceCIDR string `json:"serviceCIDR,omitempty"`
	// DNSDomain is the cluster DNS suffix.
	DNSDomain string `json:"dnsDomain,omitempty"`
	// Overlay is the VXLAN network between nodes.
	Overlay Overlay `json:"overlay"`
}

// TxChecksumOffload says what to do with TX checksum offload on the VXLAN device.
type TxChecksumOffload string

const (
	// TxChecksumOffloadDisabled turns offload off on the VXLAN device. Several
	// kernel/NIC combinations (vmxnet3, some virtio and CentOS 7 kernels) compute a
	// wrong checksum for VXLAN packets when offloaded, which shows up as service
	// traffic through kube-proxy's NAT hanging for ~63 s; turning it off costs little.
	TxChecksumOffloadDisabled TxChecksumOffload = "disabled"
	// TxChecksumOffloadEnabled leaves the kernel's default in place.
	TxChecksumOffloadEnabled TxChecksumOffload = "enabled"
	// TxChecksumOffloadAuto turns offload off only on kernels known to have the
	// VXLAN checksum bug (flannel #1279: RHEL/CentOS 7 and 8 kernels, upstream
	// before 5.7 and its stable fixes). It is the default: on a fixed kernel offload
	// is worth several times the pod-to-pod throughput (measured in the lab).
	TxChecksumOffloadAuto TxChecksumOffload = "auto"
)

// Overlay configures the VXLAN device each node creates.
//
// As everywhere in this config, a numeric field left out or set to 0 takes its
// default; only MTU gives 0 a meaning of its own.
type Overlay struct {
	// Backend is where each node's subnet is kept: "kube" (the default: the
	// Node's spec.podCIDR, allocated by kube-controller-manager, and the VTEP
	// as annotations on the Node, written with the node's own credential; no
	// node holds an etcd credential) or "etcd" (leases in etcd under
	// /kubeforge/network; every host then needs the etcd role, because only
	// etcd hosts may hold an etcd client certificate).
	Backend OverlayBackend `json:"backend,omitempty"`
	// VNI is the VXLAN network identifier (1..16777215).
	VNI int `json:"vni,omitempty"`
	// Port is the UDP port of VXLAN traffic; 8472 is the Linux kernel's (and
	// flannel's) default, 4789 the IANA one.
	Port int `json:"port,omitempty"`
	// MTU of the VXLAN device; 0 derives it from the underlay device (its MTU minus
	// the 50-byte VXLAN header).
	MTU int `json:"mtu,omitempty"`
	// TxChecksumOffload is "auto" (default), "disabled" or "enabled"; see the constants.
	TxChecksumOffload TxChecksumOffload `json:"txChecksumOffload,omitempty"`
}

// OverlayBackend is the overlay's subnet manager.
type OverlayBackend string

const (
	// OverlayBackendKube keeps subnets in Node objects through the API.
	OverlayBackendKube OverlayBackend = "kube"
	// OverlayBackendEtcd keeps subnet leases in etcd (etcd hosts only).
	OverlayBackendEtcd OverlayBackend = "etcd"
)

// CompactionMode is etcd's --auto-compaction-mode.
type CompactionMode string

const (
	// CompactionPeriodic keeps a time window of history (retention is a duration).
	CompactionPeriodic CompactionMode = "periodic"
	// CompactionRevision keeps a number of revisions (retention is a count).
	CompactionRevision CompactionMode = "revision"
)

// Etcd configures the etcd members.
type Etcd struct {
	// DataDir is where each member keeps its data.
	DataDir string `json:"dataDir,omitempty"`
	// AutoCompactionMode is "periodic" or "revision".
	AutoCompactionMode CompactionMode `json:"autoCompactionMode,omitempty"`
	// AutoCompactionRetention is a duration ("1h") in periodic mode and a revision
	// count ("10000") in revision mode, as etcd's flag takes it.
	AutoCompactionRetention string `json:"autoCompactionRetention,omitempty"`
	// QuotaBackendBytes is the database size at which etcd raises a NOSPACE alarm
	// and refuses writes.
	QuotaBackendBytes int64 `json:"quotaBackendBytes,omitempty"`
	// SnapshotCount is the number of applied entries between raft snapshots.
	SnapshotCount int64 `json:"snapshotCount,omitempty"`
	// HeartbeatInterval and ElectionTimeout are raft timings; etcd wants them in
	// whole milliseconds and the election timeout at least 5 heartbeats.
	HeartbeatInterval Duration `json:"heartbeatInterval,omitempty"`
	ElectionTimeout   Duration `json:"electionTimeout,omitempty"`
	// ExtraArgs are more etcd flags, name (without "--") to value. They override
	// what kubeforge would set.
	ExtraArgs map[string]string `json:"extraArgs,omitempty"`
	// Backup schedules snapshots of etcd on every etcd host.
	Backup EtcdBackup `json:"backup"`
}

// EtcdBackup configures kubeforge-etcd-backup.timer: every Schedule it saves a
// snapshot of the local member into Dir, verifies that it restores, and keeps the
// newest Keep snapshots.
type EtcdBackup struct {
	// Schedule is an interval ("6h", "30m": the time between two runs) or one of
	// systemd's calendar shorthands: minutely, hourly, daily, weekly, monthly.
	Schedule string `json:"schedule,omitempty"`
	// Keep is how many snapshots stay after each run (at least 1).
	Keep int `json:"keep,omitempty"`
	// Dir holds the snapshots and their sidecars (created 0700).
	Dir string `json:"dir,omitempty"`
}

// KeyAlgorithm is the algorithm and size of every private key kubeforge creates.
type KeyAlgorithm string

const (
	KeyRSA2048   KeyAlgorithm = "rsa-2048"
	KeyRSA3072   KeyAlgorithm = "rsa-3072"
	KeyRSA4096   KeyAlgorithm = "rsa-4096"
	KeyECDSAP256 KeyAlgorithm = "ecdsa-p256"
)

// KeyAlgorithms lists the supported key algorithms.
var KeyAlgorithms = []KeyAlgorithm{KeyRSA2048, KeyRSA3072, KeyRSA4096, KeyECDSAP256}

// Algo and Size split the algorithm into cfssl's KeyRequest terms ("rsa", 2048).
func (k KeyAlgorithm) Algo() string {
	switch k {
	case KeyECDSAP256:
		return "ecdsa"
	case KeyRSA2048, KeyRSA3072, KeyRSA4096:
		return "rsa"
	}
	return ""
}

// Size is the key size in bits for cfssl's KeyRequest; 0 for an unknown algorithm.
func (k KeyAlgorithm) Size() int {
	switch k {
	case KeyRSA2048:
		return 2048
	case KeyRSA3072:
		return 3072
	case KeyRSA4096:
		return 4096
	case KeyECDSAP256:
		return 256
	}
	return 0
}

// Certificates configures the PKI.
type Certificates struct {
	// KeyAlgorithm for every CA and leaf key.
	KeyAlgorithm KeyAlgorithm `json:"keyAlgorithm,omitempty"`
	// CAValidity is how long the CAs are valid ("87600h", 10 years).
	CAValidity Duration `json:"caValidity,omitempty"`
	// Validity is how long leaf certificates are valid ("8760h", 1 year); at most
	// CAValidity.
	Validity Duration `json:"validity,omitempty"`
	// CertSANs are extra DNS names or IPs for the kube-apiserver serving
	// certificate (a load balancer name, a VIP, ...).
	CertSANs []string `json:"certSANs,omitempty"`
	// AutoRenew configures kubeforge-certs-renew.timer on control-plane and etcd
	// hosts.
	AutoRenew CertAutoRenew `json:"autoRenew"`
}

// CertAutoRenew configures kubeforge-certs-renew.timer: every Schedule it runs
// `kubeforge certs renew all --expiring-within RenewBefore`, which renews the
// certificates that expire within RenewBefore and restarts the units that read
// them one at a time, each healthy before the next.
type CertAutoRenew struct {
	// Schedule is an interval ("12h") or a systemd calendar shorthand (daily, ...),
	// as spec.etcd.backup.schedule.
	Schedule string `json:"schedule,omitempty"`
	// RenewBefore is the window: a certificate is renewed once it expires within
	// it ("720h", 30 days); shorter than spec.certificates.validity. check-expiration
	// warns about certificates below it.
	RenewBefore Duration `json:"renewBefore,omitempty"`
}

// Components holds per-component settings of the Kubernetes binaries (etcd's are
// under spec.etcd).
type Components struct {
	APIServer         Component `json:"apiServer,omitzero"`
	ControllerManager Component `json:"controllerManager,omitzero"`
	Scheduler         Component `json:"scheduler,omitzero"`
	Kubelet           Component `json:"kubelet,omitzero"`
	KubeProxy         Component `json:"kubeProxy,omitzero"`
}

// Component is the settings of one binary.
type Component struct {
	// ExtraArgs are more flags, name (without "--") to value. They override what
	// kubeforge would set.
	ExtraArgs map[string]string `json:"extraArgs,omitempty"`
}

// TimeSync configures chrony: one host of the cluster serves time to the others,
// because etcd and certificate validity both depend on agreeing clocks.
type TimeSync struct {
	// Server is the name of the host that runs the cluster's chrony server; by
	// default the first control-plane host.
	Server string `json:"server,omitempty"`
	// UpstreamServers the server itself follows (NTP host names or IPs). Empty means
	// the server serves its local clock, which suits isolated networks.
	UpstreamServers []string `json:"upstreamServers,omitempty"`
}

// SELinuxMode is what preflight does to SELinux.
type SELinuxMode string

const (
	// SELinuxDisabled sets SELINUX=disabled (and setenforce 0 until the reboot), as
	// the classic CentOS binary-install guides do.
	SELinuxDisabled SELinuxMode = "disabled"
	// SELinuxPermissive sets SELINUX=permissive: nothing is blocked, denials are
	// still logged.
	SELinuxPermissive SELinuxMode = "permissive"
	// SELinuxEnforcingKeep leaves an enforcing SELinux as it is; the operator has
	// the policy for the binaries in hand.
	SELinuxEnforcingKeep SELinuxMode = "enforcing-keep"
)

// FirewallMode is what preflight does to the host firewall (firewalld/ufw).
type FirewallMode string

const (
	// FirewallDisable stops and disables the firewall service, as the seed guides
	// do: kube-proxy and the overlay program their own netfilter rules.
	FirewallDisable FirewallMode = "disable"
	// FirewallOpenPorts keeps the firewall and opens the ports the host's roles need.
	FirewallOpenPorts FirewallMode = "open-ports"
)

// Security is how preflight treats the hosts' security subsystems.
type Security struct {
	SELinux  SELinuxMode  `json:"selinux,omitempty"`
	Firewall FirewallMode `json:"firewall,omitempty"`
}

// Addons are the cluster add-ons kubeforge deploys into the cluster once the
// control plane is up (init phase addon).
type Addons struct {
	CoreDNS CoreDNS `json:"coreDNS"`
}

// CoreDNS configures the cluster DNS: CoreDNS from the bundle, serving
// spec.networking.dnsDomain and the reverse zones of the pod and service CIDRs
// at the cluster DNS address (the tenth of the service CIDR), and forwarding
// every other name to the upstream resolvers.
type CoreDNS struct {
	// Enabled deploys CoreDNS (default true). Without it pods' resolv.conf still
	// names the cluster DNS address, where nothing answers.
	Enabled *bool `json:"enabled,omitempty"`
	// Replicas of the CoreDNS Deployment (default 2), spread over nodes.
	Replicas int `json:"replicas,omitempty"`
	// Upstreams are the resolvers names outside the cluster are forwarded to, as
	// IP or IP:port (port 53 by default). Empty means the resolver file of the
	// node each CoreDNS pod runs on (the kubelet's resolvConf, which already
	// skips systemd-resolved's 127.0.0.53 stub).
	Upstreams []string `json:"upstreams,omitempty"`
	// StubDomains send the names of a domain to its own servers (a corporate
	// zone, say) instead of the upstreams.
	StubDomains []StubDomain `json:"stubDomains,omitempty"`
}

// StubDomain is one domain forwarded to servers of its own.
type StubDomain struct {
	// Domain is a DNS name ("corp.example.com").
	Domain string `json:"domain"`
	// Servers are IP or IP:port; at least one.
	Servers []string `json:"servers"`
}

// IsEnabled reports whether CoreDNS is to be deployed (true unless set false).
func (c CoreDNS) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// Duration is a time.ParseDuration string ("8760h", "100ms"). It stays a string in
// the types so the YAML reads the way it was written and a bad value is reported by
// Validate with its field path instead of failing the decode.
type Duration string

// Parse returns the duration, or the time package's error.
func (d Duration) Parse() (time.Duration, error) { return time.ParseDuration(string(d)) }

// Duration returns the parsed value, 0 when it does not parse. Validate guarantees
// every Duration of a loaded config parses.
func (d Duration) Duration() time.Duration {
	v, err := d.Parse()
	if err != nil {
		return 0
	}
	return v
}
