package etcd

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
)

// Where a member's pieces live on a host. The layout is what the binary-install
// guides for CentOS/RHEL use, so operators find things where they expect them.
const (
	UnitName   = "etcd.service"
	BinaryPath = "/usr/local/bin/etcd"
	ConfigDir  = "/etc/etcd"
	ConfigPath = ConfigDir + "/etcd.conf.yml"
	unitFile   = "/etc/systemd/system/" + UnitName

	DefaultClientPort  = 2379
	DefaultPeerPort    = 2380
	DefaultMetricsPort = 2381

	// ClusterStateNew and ClusterStateExisting are etcd's initial-cluster-state.
	ClusterStateNew      = "new"
	ClusterStateExisting = "existing"
)

// Member is one etcd member as the network sees it.
type Member struct {
	Name    string
	Address string // the host's cluster IP
	// Ports; 0 means the etcd default. MetricsPort -1 turns the plain-HTTP
	// metrics/health listener off.
	ClientPort  int
	PeerPort    int
	MetricsPort int
}

// MemberOf is the member a host of the cluster config runs.
func MemberOf(h config.Host) Member { return Member{Name: h.Name, Address: h.Address} }

func (m Member) clientPort() int { return orDefault(m.ClientPort, DefaultClientPort) }
func (m Member) peerPort() int   { return orDefault(m.PeerPort, DefaultPeerPort) }

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// ClientURL is where clients reach the member.
func (m Member) ClientURL() string { return httpsURL(m.Address, m.clientPort()) }

// PeerURL is where the other members reach it.
func (m Member) PeerURL() string { return httpsURL(m.Address, m.peerPort()) }

func httpsURL(addr string, port int) string {
	return "https://" + net.JoinHostPort(addr, strconv.Itoa(port))
}

// Peer is one entry of initial-cluster.
type Peer struct {
	Name    string
	PeerURL string
}

// FormatInitialCluster renders peers the way etcd's initial-cluster takes them.
func FormatInitialCluster(peers []Peer) string {
	parts := make([]string, len(peers))
	for i, p := range peers {
		parts[i] = p.Name + "=" + p.PeerURL
	}
	return strings.Join(parts, ",")
}

// ParseInitialCluster is the reverse of FormatInitialCluster.
func ParseInitialCluster(s string) ([]Peer, error) {
	var out []Peer
	for _, part := range strings.Split(s, ",") {
		name, u, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || u == "" {
			return nil, fmt.Errorf("initial-cluster entry %q is not name=peer-url", part)
		}
		out = append(out, Peer{Name: name, PeerURL: u})
	}
	return out, nil
}

// MemberConfig is everything that goes into one member's config file.
type MemberConfig struct {
	Member Member
	// ListenLocalhost adds 127.0.0.1 to the client listeners, so processes on the
	// host (kube-apiserver, health probes, an operator's etcdctl) need no address.
	ListenLocalhost bool
	DataDir         string
	// PKIDir holds ca.crt, server.{crt,key} and peer.{crt,key} (<cert-dir>/etcd).
	PKIDir string
	// InitialCluster, InitialClusterState and InitialClusterToken only matter the
	// first time the member starts with an empty data dir.
	InitialCluster      []Peer
	InitialClusterState string
	InitialClusterToken string
	// Settings are spec.etcd: production settings and extra args.
	Settings config.Etcd
}

// Validate checks what etcd would otherwise only report in the journal of a unit
// that keeps restarting.
func (c MemberConfig) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	m := c.Member
	if m.Name == "" {
		bad("member name is empty")
	}
	if net.ParseIP(m.Address) == nil {
		bad("member %s: address %q is not an IP address", m.Name, m.Address)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"client port", m.ClientPort}, {"peer port", m.PeerPort}} {
		if p.v < 0 || p.v > 65535 {
			bad("member %s: %s %d is not a TCP port", m.Name, p.name, p.v)
		}
	}
	if m.MetricsPort < -1 || m.MetricsPort > 65535 {
		bad("member %s: metrics port %d is not a TCP port (or -1 for none)", m.Name, m.MetricsPort)
	}
	if !path.IsAbs(c.DataDir) || path.Clean(c.DataDir) == "/" {
		bad("member %s: data dir %q must be an absolute path other than /", m.Name, c.DataDir)
	}
	if !path.IsAbs(c.PKIDir) {
		bad("member %s: certificate dir %q must be an absolute path", m.Name, c.PKIDir)
	}
	if c.InitialClusterState != ClusterStateNew && c.InitialClusterState != ClusterStateExisting {
		bad("member %s: initial cluster state %q is neither %q nor %q", m.Name, c.InitialClusterState, ClusterStateNew, ClusterStateExisting)
	}
	self := false
	seen := map[string]bool{}
	for _, p := range c.InitialCluster {
		if seen[p.Name] {
			bad("member %s: initial cluster lists %q twice", m.Name, p.Name)
		}
		seen[p.Name] = true
		if u, err := url.Parse(p.PeerURL); err != nil || u.Host == "" {
			bad("member %s: initial cluster peer URL %q of %s is not a URL", m.Name, p.PeerURL, p.Name)
		}
		if p.Name == m.Name {
			self = true
			if p.PeerURL != m.PeerURL() {
				bad("member %s: initial cluster gives it peer URL %s, but it advertises %s", m.Name, p.PeerURL, m.PeerURL())
			}
		}
	}
	if !self {
		bad("member %s: the initial cluster %q does not contain the member itself", m.Name, FormatInitialCluster(c.InitialCluster))
	}
	if _, err := millis(c.Settings.HeartbeatInterval); err != nil {
		bad("spec.etcd.heartbeatInterval: %v", err)
	}
	if _, err := millis(c.Settings.ElectionTimeout); err != nil {
		bad("spec.etcd.electionTimeout: %v", err)
	}
	return errors.Join(errs...)
}

// millis converts a raft timing to the whole milliseconds etcd takes.
func millis(d config.Duration) (int64, error) {
	t, err := d.Parse()
	if err != nil {
		return 0, err
	}
	if t <= 0 || t%time.Millisecond != 0 {
		return 0, fmt.Errorf("%q must be a positive whole number of milliseconds", string(d))
	}
	return t.Milliseconds(), nil
}

// Render produces the member's config file (etcd --config-file). With a config
// file etcd ignores every command-line flag, so the file is the whole truth about
// the member, and spec.etcd.extraArgs are merged into it (see extraArgKinds).
func (c MemberConfig) Render() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m := c.Member
	clientURLs := []string{m.ClientURL()}
	if c.ListenLocalhost && !net.ParseIP(m.Address).IsLoopback() {
		clientURLs = append(clientURLs, httpsURL("127.0.0.1", m.clientPort()))
	}
	hb, _ := millis(c.Settings.HeartbeatInterval)
	el, _ := millis(c.Settings.ElectionTimeout)
	pki := func(f string) string { return path.Join(c.PKIDir, f) }
	doc := map[string]any{
		"name":                        m.Name,
		"data-dir":                    c.DataDir,
		"listen-client-urls":          strings.Join(clientURLs, ","),
		"advertise-client-urls":       m.ClientURL(),
		"listen-peer-urls":            m.PeerURL(),
		"initial-advertise-peer-urls": m.PeerURL(),
		"initial-cluster":             FormatInitialCluster(c.InitialCluster),
		"initial-cluster-state":       c.InitialClusterState,
		"initial-cluster-token":       c.InitialClusterToken,
		// Mutual TLS on both ports, with the etcd CA as the only trusted CA: a
		// certificate of the Kubernetes CA (a kubelet's, say) opens nothing here.
		"client-transport-security": map[string]any{
			"cert-file":        pki("server.crt"),
			"key-file":         pki("server.key"),
			"client-cert-auth": true,
			"trusted-ca-file":  pki("ca.crt"),
			"auto-tls":         false,
		},
		"peer-transport-security": map[string]any{
			"cert-file":        pki("peer.crt"),
			"key-file":         pki("peer.key"),
			"client-cert-auth": true,
			"trusted-ca-file":  pki("ca.crt"),
			"auto-tls":         false,
		},
		// kubeforge's TLS policy on both ports (certs.TLSCipherSuites).
		"cipher-suites":             certs.TLSCipherSuites,
		"tls-min-version":           certs.EtcdTLSMinVersion,
		"snapshot-count":            c.Settings.SnapshotCount,
		"heartbeat-interval":        hb,
		"election-timeout":          el,
		"quota-backend-bytes":       c.Settings.QuotaBackendBytes,
		"auto-compaction-mode":      string(c.Settings.AutoCompactionMode),
		"auto-compaction-retention": c.Settings.AutoCompactionRetention,
		// A member only votes for a configuration change that leaves a quorum of
		// started members (etcd's default, written down so nobody turns it off by
		// accident with an extra arg they copied).
		"strict-reconfig-check": true,
		"logger":                "zap",
		"log-level":             "info",
		// kubeadm's choices for etcd 3.6: verify the data against the other members
		// before serving, and let watchers (the apiserver's cache) know how far they
		// are, so a quiet resource does not look stale.
		"feature-gates":                  "InitialCorruptCheck=true",
		"watch-progress-notify-interval": int64(5 * time.Second),
	}
	if m.MetricsPort >= 0 {
		// Plain HTTP on loopback only: /metrics and /health for local probes,
		// without handing every probe a client certificate.
		doc["listen-metrics-urls"] = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(orDefault(m.MetricsPort, DefaultMetricsPort)))
	}
	if err := applyExtraArgs(doc, c.Settings.ExtraArgs); err != nil {
		return nil, err
	}
	body, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("member %s: rendering the etcd config: %w", m.Name, err)
	}
	head := "# etcd member " + m.Name + ", written by kubeforge from the cluster configuration.\n" +
		"# Changes here are overwritten by the next kubeforge run; set spec.etcd instead.\n"
	return append([]byte(head), body...), nil
}

// configValues reads the top-level keys of a rendered config file.
func configValues(data []byte) (map[string]any, error) {
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// keepBootstrap copies initial-cluster and initial-cluster-state from a member's
// current config file into c. Once a member has data, etcd ignores these two, so
// rewriting them would only make an unchanged member look changed and restart it.
func (c *MemberConfig) keepBootstrap(current []byte) {
	v, err := configValues(current)
	if err != nil {
		return
	}
	ic, ok1 := v["initial-cluster"].(string)
	st, ok2 := v["initial-cluster-state"].(string)
	if !ok1 || !ok2 || (st != ClusterStateNew && st != ClusterStateExisting) {
		return
	}
	peers, err := ParseInitialCluster(ic)
	if err != nil {
		return
	}
	for _, p := range peers {
		if p.Name == c.Member.Name && p.PeerURL == c.Member.PeerURL() {
			c.InitialCluster, c.InitialClusterState = peers, st
			return
		}
	}
}

// argKind is how a flag's string value is written into the YAML config file.
type argKind int

const (
	kString   argKind = iota
	kBool             // "true"/"false"
	kInt              // a decimal integer
	kDuration         // a Go duration ("5s"); the file wants nanoseconds
	kList             // comma-separated; the file wants a list
)

// extraArgKinds are the etcd 3.6 flags that its config file understands, with the
// shape the file wants them in. etcd silently ignores keys it does not know, so an
// extra arg that is not in this table is refused rather than written and ignored.
var extraArgKinds = map[string]argKind{
	"name": kString, "data-dir": kString, "wal-dir": kString,
	"snapshot-count": kInt, "snapshot-catchup-entries": kInt, "max-snapshots": kInt, "max-wals": kInt,
	"heartbeat-interval": kInt, "election-timeout": kInt, "initial-election-tick-advance": kBool,
	"backend-batch-interval": kDuration, "backend-batch-limit": kInt, "backend-bbolt-freelist-type": kString,
	"quota-backend-bytes": kInt, "max-txn-ops": kInt, "max-request-bytes": kInt, "max-concurrent-streams": kInt,
	"self-signed-cert-validity": kInt, "cipher-suites": kList, "tls-min-version": kString, "tls-max-version": kString,
	"initial-cluster-state": kString, "discovery-srv": kString, "discovery-srv-name": kString, "discovery-proxy": kString,
	"discovery": kString, "initial-cluster": kString, "initial-cluster-token": kString, "strict-reconfig-check": kBool,
	"auto-compaction-mode": kString, "auto-compaction-retention": kString,
	"grpc-keepalive-min-time": kDuration, "grpc-keepalive-interval": kDuration, "grpc-keepalive-timeout": kDuration,
	"pre-vote": kBool, "auth-token": kString, "bcrypt-cost": kInt, "auth-token-ttl": kInt,
	"corrupt-check-time": kDuration, "compact-hash-check-time": kDuration, "compaction-batch-limit": kInt,
	"compaction-sleep-interval": kDuration, "watch-progress-notify-interval": kDuration, "warning-apply-duration": kDuration,
	"bootstrap-defrag-threshold-megabytes": kInt, "warning-unary-request-duration": kDuration, "max-learners": kInt,
	"force-new-cluster": kBool, "enable-pprof": kBool, "metrics": kString, "listen-metrics-urls": kString,
	"enable-distributed-tracing": kBool, "distributed-tracing-address": kString, "distributed-tracing-service-name": kString,
	"distributed-tracing-instance-id": kString, "distributed-tracing-sampling-rate": kInt,
	"logger": kString, "log-level": kString, "log-format": kString, "log-outputs": kList,
	"enable-log-rotation": kBool, "log-rotation-config-json": kString, "enable-grpc-gateway": kBool,
	"unsafe-no-fsync": kBool, "downgrade-check-time": kDuration, "memory-mlock": kBool, "v2-deprecation": kString,
	"listen-peer-urls": kString, "listen-client-urls": kString, "listen-client-http-urls": kString,
	"initial-advertise-peer-urls": kString, "advertise-client-urls": kString, "cors": kString, "host-whitelist": kString,
	"feature-gates": kString,
}

// tlsArgs maps the TLS flags to their place in the file's transport sections.
var tlsArgs = map[string]struct {
	section, key string
	kind         argKind
}{
	"cert-file":                    {"client-transport-security", "cert-file", kString},
	"key-file":                     {"client-transport-security", "key-file", kString},
	"client-cert-file":             {"client-transport-security", "client-cert-file", kString},
	"client-key-file":              {"client-transport-security", "client-key-file", kString},
	"client-cert-auth":             {"client-transport-security", "client-cert-auth", kBool},
	"trusted-ca-file":              {"client-transport-security", "trusted-ca-file", kString},
	"auto-tls":                     {"client-transport-security", "auto-tls", kBool},
	"client-cert-allowed-hostname": {"client-transport-security", "allowed-hostname", kList},
	"peer-cert-file":               {"peer-transport-security", "cert-file", kString},
	"peer-key-file":                {"peer-transport-security", "key-file", kString},
	"peer-client-cert-file":        {"peer-transport-security", "client-cert-file", kString},
	"peer-client-key-file":         {"peer-transport-security", "client-key-file", kString},
	"peer-client-cert-auth":        {"peer-transport-security", "client-cert-auth", kBool},
	"peer-trusted-ca-file":         {"peer-transport-security", "trusted-ca-file", kString},
	"peer-auto-tls":                {"peer-transport-security", "auto-tls", kBool},
	"peer-cert-allowed-cn":         {"peer-transport-security", "allowed-cn", kList},
	"peer-cert-allowed-hostname":   {"peer-transport-security", "allowed-hostname", kList},
}

// experimentalRenamed are etcd 3.5 flag names that 3.6 replaced; naming the new
// one is more useful than "unknown".
var experimentalRenamed = map[string]string{
	"experimental-initial-corrupt-check":             "feature-gates: InitialCorruptCheck=true",
	"experimental-watch-progress-notify-interval":    "watch-progress-notify-interval",
	"experimental-compact-hash-check-enabled":        "feature-gates: CompactHashCheck=true",
	"experimental-corrupt-check-time":                "corrupt-check-time",
	"experimental-compaction-batch-limit":            "compaction-batch-limit",
	"experimental-snapshot-catchup-entries":          "snapshot-catchup-entries",
	"experimental-warning-apply-duration":            "warning-apply-duration",
	"experimental-enable-lease-checkpoint":           "feature-gates: LeaseCheckpoint=true",
	"experimental-memory-mlock":                      "memory-mlock",
	"experimental-peer-skip-client-san-verification": "peer-skip-client-san-verification (not settable in a config file)",
}

// applyExtraArgs merges spec.etcd.extraArgs into the document. Every problem is
// reported with the field path, all at once.
func applyExtraArgs(doc map[string]any, args map[string]string) error {
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		field := "spec.etcd.extraArgs[" + k + "]"
		if t, ok := tlsArgs[k]; ok {
			v, err := convertArg(args[k], t.kind)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", field, err))
				continue
			}
			doc[t.section].(map[string]any)[t.key] = v
			continue
		}
		kind, ok := extraArgKinds[k]
		if !ok {
			if repl, renamed := experimentalRenamed[k]; renamed {
				errs = append(errs, fmt.Errorf("%s: etcd 3.6 replaced this flag; use %s", field, repl))
			} else {
				errs = append(errs, fmt.Errorf("%s: not an etcd 3.6 setting its config file accepts", field))
			}
			continue
		}
		v, err := convertArg(args[k], kind)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			continue
		}
		doc[k] = v
	}
	return errors.Join(errs...)
}

func convertArg(s string, kind argKind) (any, error) {
	switch kind {
	case kBool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not true or false", s)
		}
		return b, nil
	case kInt:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return n, nil
	case kDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration such as 5s", s)
		}
		return int64(d), nil
	case kList:
		var out []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out, nil
	}
	return s, nil
}
