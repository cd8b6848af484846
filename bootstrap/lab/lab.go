// Package lab runs several real test hosts on one Linux machine: systemd-nspawn
// machines with systemd as PID 1, each in its own network namespace on a private
// bridge, with sshd and a verified host key. It is how kubeforge is tested, and a
// feature in its own right: one box, no VMs and no Docker, a multi-host cluster on
// real systemd hosts.
//
// Layout of a lab on the machine (all of it removed by Down):
//
//	<dir>/state.json              hosts, addresses, cgroup paths, supervisor pids
//	<dir>/id_ed25519{,.pub}       the client key that every host's root accepts
//	<dir>/known_hosts, ssh_config  `ssh -F <dir>/ssh_config master01` just works
//	<dir>/hosts/<h>/{upper,work}  the host's overlay layers over the shared base
//	<dir>/hosts/<h>/rootfs        the merged root the machine boots
//	<dir>/hosts/<h>/containerd    an ext4 directory bound to /var/lib/containerd
//	/run/netns/kf-<id>-hub        the bridge that joins the hosts
//	/run/netns/kf-<id>-<h>        each host's network namespace
//	kf<id> (a veth in the machine's namespace) with a route for the lab subnet only
//	/sys/fs/cgroup/<ctrl>/<caller>/kubeforge-lab-<id>/<h>  the host's cgroups
//
// The base root filesystem (debootstrap) is shared read-only by every host and cached
// outside the lab (see base.go).
package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DefaultDir is where a lab keeps its state unless told otherwise.
const DefaultDir = "/var/lib/kubeforge/lab"

// DirEnv overrides DefaultDir.
const DirEnv = "KUBEFORGE_LAB_DIR"

// DefaultSubnet mirrors the seed plan's addresses; it exists only inside the
// namespaces the lab creates.
const DefaultSubnet = "192.168.161.0/24"

// DefaultHosts is the seed plan's first three hosts.
var DefaultHosts = []string{"master01", "node01", "node02"}

// seedAddresses gives seed-plan hosts their seed-plan host numbers.
var seedAddresses = map[string]int{"master02": 150, "master01": 151, "node01": 152, "node02": 153}

// Options configures Up.
type Options struct {
	Dir       string   // lab directory (DefaultDir)
	Hosts     []string // host names (DefaultHosts)
	Subnet    string   // lab subnet, a /24 (DefaultSubnet)
	BundleDir string   // bundle directory exposed read-only at /opt/kubeforge/bundle ("" = none)
	CacheDir  string   // where the base rootfs is cached (~/.cache/kubeforge)
	Log       io.Writer
}

// State is what a lab records about itself.
type State struct {
	ID        string      `json:"id"`
	Dir       string      `json:"dir"`
	Subnet    string      `json:"subnet"`
	Gateway   string      `json:"gateway"` // the hub's address: hosts' default route; it forwards nothing
	MachineIP string      `json:"machineIP"`
	Base      string      `json:"base"`
	BundleDir string      `json:"bundleDir,omitempty"`
	Hosts     []HostState `json:"hosts"`
}

// HostState records one host.
type HostState struct {
	Name    string            `json:"name"`
	Address string            `json:"address"`
	MAC     string            `json:"mac"`
	Netns   string            `json:"netns"`
	HubLink string            `json:"hubLink"`
	Cgroups map[string]string `json:"cgroups"` // hierarchy mount dir -> absolute cgroup dir
	HostKey string            `json:"hostKey"` // authorized_keys-format public host key
	PID     int               `json:"supervisorPID,omitempty"`
}

// Paths are the files a user of the lab needs.
type Paths struct {
	Dir           string `json:"dir"`
	SSHConfig     string `json:"sshConfig"`
	KnownHosts    string `json:"knownHosts"`
	IdentityFile  string `json:"identityFile"`
	Bundle        string `json:"bundle,omitempty"`
	ClusterConfig string `json:"clusterConfig,omitempty"`
}

// ResolveDir applies the flag > env > default order.
func ResolveDir(flag string) string {
	if flag != "" {
		return flag
	}
	if d := os.Getenv(DirEnv); d != "" {
		return d
	}
	return DefaultDir
}

// labID derives short names (interfaces are limited to 15 characters) from the lab
// directory, so two labs in different directories do not collide.
func labID(dir string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(dir)))
	return hex.EncodeToString(sum[:])[:6]
}

func (s *State) paths() Paths {
	p := Paths{
		Dir:          s.Dir,
		SSHConfig:    filepath.Join(s.Dir, "ssh_config"),
		KnownHosts:   filepath.Join(s.Dir, "known_hosts"),
		IdentityFile: filepath.Join(s.Dir, "id_ed25519"),
		Bundle:       s.BundleDir,
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "cluster.yaml")); err == nil {
		p.ClusterConfig = filepath.Join(s.Dir, "cluster.yaml")
	}
	return p
}

// Host returns the recorded host by name.
func (s *State) Host(name string) (*HostState, error) {
	for i := range s.Hosts {
		if s.Hosts[i].Name == name {
			return &s.Hosts[i], nil
		}
	}
	names := make([]string, len(s.Hosts))
	for i, h := range s.Hosts {
		names[i] = h.Name
	}
	return nil, fmt.Errorf("lab %s has no host %q (hosts: %s)", s.Dir, name, strings.Join(names, ", "))
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

// LoadState reads a lab's state; a missing lab is an error that says so.
func LoadState(dir string) (*State, error) {
	data, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no lab at %s (run `kubeforge lab up`)", dir)
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(dir), err)
	}
	return &s, nil
}

func (s *State) save() error {
	sort.Slice(s.Hosts, func(i, j int) bool { return s.Hosts[i].Address < s.Hosts[j].Address })
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(s.Dir) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(s.Dir))
}

// addressPlan gives each host an address in the subnet: seed-plan names keep their
// seed-plan host numbers, other names take the next free number from .154 up.
func addressPlan(subnet *net.IPNet, names []string, existing map[string]string) (map[string]string, error) {
	base := subnet.IP.To4()
	ones, bits := subnet.Mask.Size()
	if base == nil || bits != 32 || ones != 24 {
		return nil, fmt.Errorf("lab subnet %s: must be an IPv4 /24", subnet)
	}
	used := map[int]bool{1: true, 254: true} // the machine's veth and the hub
	out := map[string]string{}
	for n, a := range existing {
		ip := net.ParseIP(a).To4()
		if ip != nil && subnet.Contains(ip) {
			used[int(ip[3])] = true
			out[n] = a
		}
	}
	at := func(i int) string { return net.IPv4(base[0], base[1], base[2], byte(i)).String() }
	for _, n := range names {
		if _, ok := out[n]; ok {
			continue
		}
		if i, ok := seedAddresses[n]; ok && !used[i] {
			used[i] = true
			out[n] = at(i)
		}
	}
	next := 154
	for _, n := range names {
		if _, ok := out[n]; ok {
			continue
		}
		for used[next] && next < 254 {
			next++
		}
		if next >= 254 {
			return nil, fmt.Errorf("lab subnet %s: no free address for host %s", subnet, n)
		}
		used[next] = true
		out[n] = at(next)
	}
	return out, nil
}

// validHostName keeps names usable as hostnames, file names and netns names.
func validHostName(n string) error {
	if n == "" || len(n) > 40 {
		return fmt.Errorf("host name %q: must be 1-40 characters", n)
	}
	for i, r := range n {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (r == '-' && i > 0 && i < len(n)-1)
		if !ok {
			return fmt.Errorf("host name %q: use lower-case letters, digits and inner '-' (a DNS-1123 label)", n)
		}
	}
	return nil
}

type logger struct{ w io.Writer }

func (l logger) step(format string, a ...any) {
	if l.w != nil {
		fmt.Fprintf(l.w, "[lab] "+format+"\n", a...)
	}
}

func since(t time.Time) string { return time.Since(t).Round(10 * time.Millisecond).String() }
