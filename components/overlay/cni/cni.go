// Package cni renders what the container runtime and other tools read from the
// overlay: the CNI network configuration for the standard containernetworking
// plugins, and flannel's subnet.env.
package cni

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Default paths.
const (
	DefaultConfPath      = "/etc/cni/net.d/10-kubeforge.conflist"
	DefaultSubnetEnvPath = "/run/kubeforge/subnet.env"
	// BridgeName is the bridge the bridge plugin creates for the pods.
	BridgeName = "cni0"
	// NetworkName is the CNI network's name; host-local keeps its allocations
	// under /var/lib/cni/networks/<name>.
	NetworkName = "kubeforge"
	// IPAMDataDir is where host-local keeps them.
	IPAMDataDir = "/var/lib/cni/networks/" + NetworkName
	// Version is the CNI spec version of the config: 0.4.0 is understood by
	// every containernetworking-plugins release from 0.8 (what older RHEL/CentOS
	// hosts carry) to 1.x, and by containerd 1.6 and later.
	Version = "0.4.0"
)

// Params are what the config depends on.
type Params struct {
	Network netip.Prefix // the pod CIDR
	Subnet  netip.Prefix // this node's subnet
	MTU     int          // the VXLAN device's MTU
}

// Gateway is the bridge's address: the subnet's first host address. The network
// address itself is the VXLAN device's.
func Gateway(subnet netip.Prefix) netip.Addr { return subnet.Addr().Next() }

// Conflist renders the CNI network configuration: the bridge plugin on cni0 as the
// pods' gateway, host-local IPAM over the node subnet, and portmap for hostPort.
//
// ipMasq is false on purpose: the agent masquerades (see package iptables), and
// the plugin's own rule would masquerade pod-to-pod traffic to other nodes too.
// The MTU is the VXLAN device's, so a pod never sends a packet the overlay must
// fragment.
func Conflist(p Params) ([]byte, error) {
	if !p.Network.IsValid() || !p.Subnet.IsValid() || p.MTU <= 0 {
		return nil, fmt.Errorf("cni config: network %s, subnet %s and mtu %d must all be set", p.Network, p.Subnet, p.MTU)
	}
	conf := map[string]any{
		"cniVersion": Version,
		"name":       NetworkName,
		"plugins": []any{
			map[string]any{
				"type":             "bridge",
				"bridge":           BridgeName,
				"isGateway":        true,
				"isDefaultGateway": true,
				"ipMasq":           false,
				"hairpinMode":      true,
				"forceAddress":     true,
				"mtu":              p.MTU,
				"ipam": map[string]any{
					"type": "host-local",
					"ranges": [][]map[string]string{{{
						"subnet":  p.Subnet.String(),
						"gateway": Gateway(p.Subnet).String(),
					}}},
				},
			},
			map[string]any{
				"type":         "portmap",
				"capabilities": map[string]bool{"portMappings": true},
				"snat":         true,
			},
		},
	}
	out, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// SubnetEnv renders flannel's subnet.env, which tools written for flannel
// (and operators) read: the network, this node's gateway address with the subnet
// length, the MTU, and whether the agent masquerades.
func SubnetEnv(p Params, ipMasq bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "FLANNEL_NETWORK=%s\n", p.Network)
	fmt.Fprintf(&b, "FLANNEL_SUBNET=%s/%d\n", Gateway(p.Subnet), p.Subnet.Bits())
	fmt.Fprintf(&b, "FLANNEL_MTU=%d\n", p.MTU)
	fmt.Fprintf(&b, "FLANNEL_IPMASQ=%t\n", ipMasq)
	return b.Bytes()
}

// ParseSubnetEnv reads the node subnet back from a subnet.env (the agent's hint
// for asking etcd for the same subnet after a restart).
func ParseSubnetEnv(data []byte) (subnet netip.Prefix, mtu int, err error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		switch k {
		case "FLANNEL_SUBNET":
			p, perr := netip.ParsePrefix(v)
			if perr != nil {
				return netip.Prefix{}, 0, fmt.Errorf("FLANNEL_SUBNET=%s: %w", v, perr)
			}
			subnet = p.Masked()
		case "FLANNEL_MTU":
			mtu, _ = strconv.Atoi(v)
		}
	}
	if !subnet.IsValid() {
		return netip.Prefix{}, 0, fmt.Errorf("no FLANNEL_SUBNET")
	}
	return subnet, mtu, nil
}

// WriteFile replaces path atomically (temp file in the same directory, fsync,
// rename) and reports whether the content changed. The container runtime watches
// /etc/cni/net.d and must never read half a file.
func WriteFile(path string, data []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return false, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}
