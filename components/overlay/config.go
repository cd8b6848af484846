package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/components/noderuntime"
	"github.com/kubeforge/kubeforge/components/overlay/cni"
	"github.com/kubeforge/kubeforge/components/overlay/subnet"
	"github.com/kubeforge/kubeforge/components/overlay/vxlan"
)

// Where the agent's pieces live on a node.
const (
	// UnitName is the unit the agent runs in: the node runtime, one process
	// with the host's other kubeforge features.
	UnitName       = noderuntime.UnitName
	BinaryPath     = noderuntime.BinaryPath
	ConfigPath     = "/etc/kubeforge/overlay.yaml"
	DefaultHealth  = "127.0.0.1:9473"
	defaultTTL     = subnet.DefaultTTL
	defaultTxCksum = vxlan.TxOffloadDisabled
)

// Config is the agent's configuration file (/etc/kubeforge/overlay.yaml). It holds
// file paths only, never key material.
type Config struct {
	// NodeName is the node's name in the cluster; the lease is found by it.
	NodeName string `json:"nodeName"`
	// PublicIP is the node's underlay address: the local VTEP, and where peers
	// send this node's VXLAN packets.
	PublicIP string `json:"publicIP"`
	// Interface is the underlay interface; empty means the one holding PublicIP.
	Interface string `json:"interface,omitempty"`
	// Backend is the subnet manager: kube (the default; Node.spec.podCIDR and
	// annotations through the API, as the node) or etcd (leases in etcd, only
	// on hosts with the etcd role).
	Backend string `json:"backend,omitempty"`
	// Kubeconfig is the node's own credential for the kube backend (the
	// kubelet's kubeconfig).
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Etcd is how the etcd backend reaches etcd.
	Etcd Etcd `json:"etcd,omitzero"`
	// Network is the pod network. The kube backend requires it. The etcd
	// backend stores it unless a configuration is there, and it must match the
	// one that is; without it the agent waits for one in etcd.
	Network *subnet.Config `json:"network,omitempty"`
	// TxChecksumOffload is disabled, enabled or auto (off only on kernels with
	// the VXLAN checksum bug).
	TxChecksumOffload string `json:"txChecksumOffload,omitempty"`
	// HealthAddress serves /healthz, /metrics and /status; loopback by default.
	HealthAddress string `json:"healthAddress,omitempty"`
	// LeaseTTL of a newly granted subnet lease (a duration, default 24h).
	LeaseTTL string `json:"leaseTTL,omitempty"`
	// IPMasq makes the agent masquerade pod traffic leaving the pod network
	// (default true).
	IPMasq *bool `json:"ipMasq,omitempty"`
	// SubnetFile and CNIConfFile are where subnet.env and the CNI config go.
	SubnetFile  string `json:"subnetFile,omitempty"`
	CNIConfFile string `json:"cniConfFile,omitempty"`
}

// Etcd is how the agent reaches etcd: with its own client certificate
// (etcd/overlay-client.crt), never the apiserver's.
type Etcd struct {
	Endpoints []string `json:"endpoints,omitempty"`
	CAFile    string   `json:"caFile,omitempty"`
	CertFile  string   `json:"certFile,omitempty"`
	KeyFile   string   `json:"keyFile,omitempty"`
	// Prefix of the overlay's keys (default /kubeforge/network).
	Prefix string `json:"prefix,omitempty"`
}

// SetDefaults fills empty fields.
func (c *Config) SetDefaults() {
	switch {
	case c.Backend == "" && len(c.Etcd.Endpoints) > 0:
		// A config written before there were backends: it is an etcd one.
		c.Backend = BackendEtcd
	case c.Backend == "":
		c.Backend = BackendKube
	}
	if c.TxChecksumOffload == "" {
		c.TxChecksumOffload = defaultTxCksum
	}
	if c.HealthAddress == "" {
		c.HealthAddress = DefaultHealth
	}
	if c.LeaseTTL == "" {
		c.LeaseTTL = defaultTTL.String()
	}
	if c.IPMasq == nil {
		t := true
		c.IPMasq = &t
	}
	if c.SubnetFile == "" {
		c.SubnetFile = cni.DefaultSubnetEnvPath
	}
	if c.CNIConfFile == "" {
		c.CNIConfFile = cni.DefaultConfPath
	}
	if c.Etcd.Prefix == "" && c.Backend == BackendEtcd {
		c.Etcd.Prefix = subnet.DefaultPrefix
	}
}

// Validate reports every problem, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if msgs := validation.IsDNS1123Subdomain(c.NodeName); len(msgs) > 0 {
		bad("nodeName", "%q: %s", c.NodeName, strings.Join(msgs, "; "))
	}
	if ip, err := netip.ParseAddr(c.PublicIP); err != nil || !ip.Is4() {
		bad("publicIP", "%q is not an IPv4 address", c.PublicIP)
	}
	switch c.Backend {
	case BackendKube:
		if c.Kubeconfig == "" || !filepath.IsAbs(c.Kubeconfig) {
			bad("kubeconfig", "%q: the kube backend needs the absolute path of the node's kubeconfig", c.Kubeconfig)
		}
		if c.Network == nil {
			bad("network", "required with the kube backend")
		}
	case BackendEtcd:
		if len(c.Etcd.Endpoints) == 0 {
			bad("etcd.endpoints", "at least one endpoint is required with the etcd backend")
		}
	default:
		bad("backend", "%q: want %s or %s", c.Backend, BackendKube, BackendEtcd)
	}
	tls := false
	for i, e := range c.Etcd.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad(fmt.Sprintf("etcd.endpoints[%d]", i), "%q is not an http(s)://host:port URL", e)
			continue
		}
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			bad(fmt.Sprintf("etcd.endpoints[%d]", i), "%q has no port", e)
		}
		tls = tls || u.Scheme == "https"
	}
	if tls {
		for field, p := range map[string]string{"etcd.caFile": c.Etcd.CAFile, "etcd.certFile": c.Etcd.CertFile, "etcd.keyFile": c.Etcd.KeyFile} {
			if p == "" {
				bad(field, "required for https endpoints")
			} else if !filepath.IsAbs(p) {
				bad(field, "%q must be an absolute path", p)
			}
		}
	}
	if c.Backend == BackendEtcd && !strings.HasPrefix(c.Etcd.Prefix, "/") {
		bad("etcd.prefix", "%q must start with /", c.Etcd.Prefix)
	}
	if c.Network != nil {
		if err := c.Network.Validate(); err != nil {
			bad("network", "%v", err)
		}
	}
	switch c.TxChecksumOffload {
	case vxlan.TxOffloadDisabled, vxlan.TxOffloadEnabled, vxlan.TxOffloadAuto:
	default:
		bad("txChecksumOffload", "%q: want %s, %s or %s", c.TxChecksumOffload, vxlan.TxOffloadDisabled, vxlan.TxOffloadEnabled, vxlan.TxOffloadAuto)
	}
	if _, _, err := net.SplitHostPort(c.HealthAddress); err != nil {
		bad("healthAddress", "%q is not host:port", c.HealthAddress)
	}
	if d, err := time.ParseDuration(c.LeaseTTL); err != nil || d < 5*time.Second {
		bad("leaseTTL", "%q must be a duration of at least 5s", c.LeaseTTL)
	}
	for field, p := range map[string]string{"subnetFile": c.SubnetFile, "cniConfFile": c.CNIConfFile} {
		if !filepath.IsAbs(p) {
			bad(field, "%q must be an absolute path", p)
		}
	}
	return errors.Join(errs...)
}

// TTL is the parsed LeaseTTL.
func (c *Config) TTL() time.Duration {
	d, _ := time.ParseDuration(c.LeaseTTL)
	return d
}

// ParseConfig decodes a config strictly (an unknown field is an error), fills in
// defaults and validates it.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, err
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// LoadConfig reads the config file; errors name it.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("overlay config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("overlay config %s: %w", path, err)
	}
	return c, nil
}

// Marshal renders c as YAML.
func (c *Config) Marshal() ([]byte, error) { return yaml.Marshal(c) }
