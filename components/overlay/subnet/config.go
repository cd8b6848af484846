// Package subnet is the overlay's registry in etcd: the cluster-wide network
// configuration and one lease per node subnet, flannel's etcd subnet manager in
// kubeforge's own key space.
//
// Layout below the prefix (DefaultPrefix, /kubeforge/network):
//
//	config                     Config as JSON, written once (create-if-absent)
//	subnets/10.244.3.0-24      Attrs as JSON, attached to the owning node's etcd lease
//
// One key per subnet makes allocation a single compare-and-create on the key
// (CreateRevision == 0), so concurrent joins can never get the same subnet, and a
// watch on subnets/ tells every agent about every change without polling.
package subnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// DefaultPrefix is where kubeforge keeps the overlay's state in etcd, apart from
// Kubernetes' own /registry.
const DefaultPrefix = "/kubeforge/network"

// Limits of the configuration.
const (
	MaxVNI = 1<<24 - 1
	// MinMTU is the smallest device MTU that still carries an IPv4 packet of the
	// minimum reassembly size; below it pods cannot talk at all.
	MinMTU = 576
	MaxMTU = 9000
)

// Config is the overlay's cluster-wide network configuration.
type Config struct {
	// Network is the pod CIDR every node subnet is cut from (IPv4).
	Network string `json:"network"`
	// SubnetLen is the prefix length of each node's subnet.
	SubnetLen int `json:"subnetLen"`
	// VNI and Port are the VXLAN network identifier and UDP port.
	VNI  int `json:"vni"`
	Port int `json:"port"`
	// MTU of the VXLAN device; 0 lets each node derive it from its underlay
	// interface (its MTU minus the 50-byte VXLAN overhead).
	MTU int `json:"mtu,omitempty"`
}

// Validate reports every problem of c, each naming its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("network config: %s: %s", field, fmt.Sprintf(format, a...)))
	}
	p, err := netip.ParsePrefix(c.Network)
	switch {
	case err != nil:
		bad("network", "%q is not a CIDR", c.Network)
	case !p.Addr().Is4():
		bad("network", "%s: only IPv4 pod networks are supported by the VXLAN overlay", c.Network)
	case p.Masked() != p:
		bad("network", "%s has host bits set; the network is %s", c.Network, p.Masked())
	default:
		if c.SubnetLen <= p.Bits() || c.SubnetLen > 30 {
			bad("subnetLen", "%d must be longer than the network's /%d and at most 30 (a node needs a gateway and pod addresses)", c.SubnetLen, p.Bits())
		}
	}
	if c.VNI < 1 || c.VNI > MaxVNI {
		bad("vni", "%d is not between 1 and %d", c.VNI, MaxVNI)
	}
	if c.Port < 1 || c.Port > 65535 {
		bad("port", "%d is not a UDP port", c.Port)
	}
	if c.MTU != 0 && (c.MTU < MinMTU || c.MTU > MaxMTU) {
		bad("mtu", "%d must be 0 (derive from the underlay) or between %d and %d", c.MTU, MinMTU, MaxMTU)
	}
	return errors.Join(errs...)
}

// Prefix is the parsed network; only valid after Validate.
func (c Config) Prefix() netip.Prefix {
	p, _ := netip.ParsePrefix(c.Network)
	return p.Masked()
}

// Capacity is the number of node subnets in the network (at most 2^30: IPv4).
func (c Config) Capacity() uint64 {
	return uint64(1) << uint(c.SubnetLen-c.Prefix().Bits())
}

// Diff lists the fields in which c and o differ, as "field: a != b".
func (c Config) Diff(o Config) []string {
	var d []string
	if c.Network != o.Network {
		d = append(d, fmt.Sprintf("network: %s != %s", c.Network, o.Network))
	}
	if c.SubnetLen != o.SubnetLen {
		d = append(d, fmt.Sprintf("subnetLen: %d != %d", c.SubnetLen, o.SubnetLen))
	}
	if c.VNI != o.VNI {
		d = append(d, fmt.Sprintf("vni: %d != %d", c.VNI, o.VNI))
	}
	if c.Port != o.Port {
		d = append(d, fmt.Sprintf("port: %d != %d", c.Port, o.Port))
	}
	if c.MTU != o.MTU {
		d = append(d, fmt.Sprintf("mtu: %d != %d", c.MTU, o.MTU))
	}
	return d
}

func decodeConfig(key string, data []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("etcd key %s: %w", key, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("etcd key %s: %w", key, err)
	}
	return c, nil
}

// SubnetKey is the key of subnet below prefix: 10.244.3.0/24 becomes
// <prefix>/subnets/10.244.3.0-24 ("/" cannot be part of a key segment).
func SubnetKey(prefix string, s netip.Prefix) string {
	return subnetsDir(prefix) + s.Addr().String() + "-" + fmt.Sprint(s.Bits())
}

func subnetsDir(prefix string) string { return strings.TrimSuffix(prefix, "/") + "/subnets/" }
func configKey(prefix string) string  { return strings.TrimSuffix(prefix, "/") + "/config" }

// ParseSubnetKey is the inverse of SubnetKey.
func ParseSubnetKey(prefix, key string) (netip.Prefix, error) {
	rest, ok := strings.CutPrefix(key, subnetsDir(prefix))
	if !ok {
		return netip.Prefix{}, fmt.Errorf("etcd key %s is not below %s", key, subnetsDir(prefix))
	}
	addr, bits, ok := strings.Cut(rest, "-")
	if !ok {
		return netip.Prefix{}, fmt.Errorf("etcd key %s: want <address>-<prefix length>", key)
	}
	p, err := netip.ParsePrefix(addr + "/" + bits)
	if err != nil || p.Masked() != p || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("etcd key %s: %q is not an IPv4 subnet", key, addr+"/"+bits)
	}
	return p, nil
}
