package config

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const seedExample = "../../docs/examples/seed-topology.yaml"

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	w, err := c.Validate()
	if err != nil {
		t.Fatalf("Default() does not validate: %v", err)
	}
	if len(w) != 0 {
		t.Fatalf("Default() has warnings: %q", w)
	}
	if got := len(c.HostsWithRole(RoleEtcd)); got != 3 {
		t.Errorf("seed topology has %d etcd hosts, want 3", got)
	}
	if c.Spec.ControlPlaneEndpoint != "192.168.161.151:6443" {
		t.Errorf("endpoint %q", c.Spec.ControlPlaneEndpoint)
	}
	if c.Spec.TimeSync.Server != "master01" {
		t.Errorf("time server %q", c.Spec.TimeSync.Server)
	}
	if c.Spec.Certificates.Validity.Duration() != 8760*time.Hour || c.Spec.Certificates.CAValidity.Duration() != 87600*time.Hour {
		t.Errorf("validities %q %q", c.Spec.Certificates.Validity, c.Spec.Certificates.CAValidity)
	}
	if c.Spec.Etcd.HeartbeatInterval.Duration() != 100*time.Millisecond || c.Spec.Etcd.ElectionTimeout.Duration() != time.Second {
		t.Errorf("etcd timings %q %q", c.Spec.Etcd.HeartbeatInterval, c.Spec.Etcd.ElectionTimeout)
	}
}

func TestSetDefaultsIsIdempotent(t *testing.T) {
	c := Default()
	before := *c
	SetDefaults(c)
	if !reflect.DeepEqual(before, *c) {
		t.Fatalf("second SetDefaults changed the config")
	}
}

func roundTrip(t *testing.T, c *Cluster) {
	t.Helper()
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(out)
	if err != nil {
		t.Fatalf("Decode(Marshal(c)): %v\n%s", err, out)
	}
	if !reflect.DeepEqual(c, back) {
		t.Fatalf("round trip differs:\nbefore %#v\nafter  %#v\nyaml:\n%s", c, back, out)
	}
}

func TestRoundTripDefault(t *testing.T) { roundTrip(t, Default()) }

// everyField is a valid config that sets every field, including the optional
// ones Default leaves empty.
func everyField() *Cluster {
	c := Default()
	c.Metadata.Name = "prod-1"
	c.Spec.ControlPlaneEndpoint = "api.prod.example.com:8443"
	c.Spec.Hosts = append(c.Spec.Hosts, Host{Name: "master02", Address: "192.168.161.150",
		Roles: []Role{RoleControlPlane}, SSH: &SSH{User: "deploy", Port: 2222, KeyPath: "/home/deploy/.ssh/id_ed25519"}})
	c.Spec.Networking = Networking{PodCIDR: "172.20.0.0/14", NodeSubnetSize: 25, ServiceCIDR: "172.30.0.0/16",
		DNSDomain: "prod.local", Overlay: Overlay{Backend: OverlayBackendKube, VNI: 4096, Port: 4789, MTU: 1450, TxChecksumOffload: TxChecksumOffloadEnabled}}
	c.Spec.Etcd = Etcd{DataDir: "/data/etcd", AutoCompactionMode: CompactionRevision, AutoCompactionRetention: "5000",
		QuotaBackendBytes: 4 << 30, SnapshotCount: 50000, HeartbeatInterval: "250ms", ElectionTimeout: "2500ms",
		ExtraArgs: map[string]string{"log-level": "warn", "experimental-initial-corrupt-check": "true"},
		Backup:    EtcdBackup{Schedule: "daily", Keep: 7, Dir: "/srv/etcd-backups"}}
	c.Spec.Certificates = Certificates{KeyAlgorithm: KeyECDSAP256, CAValidity: "175200h", Validity: "720h",
		CertSANs:  []string{"api.prod.example.com", "*.api.prod.example.com", "192.168.161.160", "fd00::10"},
		AutoRenew: CertAutoRenew{Schedule: "12h", RenewBefore: "240h"}}
	c.Spec.Components.APIServer.ExtraArgs = map[string]string{"audit-log-maxage": "30", "v": "2"}
	c.Spec.Components.ControllerManager.ExtraArgs = map[string]string{"terminated-pod-gc-threshold": "500"}
	c.Spec.Components.Scheduler.ExtraArgs = map[string]string{"v": "1"}
	c.Spec.Components.Kubelet.ExtraArgs = map[string]string{"max-pods": "200", "node-labels": "tier=yes,on=off"}
	// Values YAML would otherwise read as something else must come back as text.
	c.Spec.Components.KubeProxy.ExtraArgs = map[string]string{"proxy-mode": "ipvs",
		"a": "", "b": " lead", "c": "trail ", "d": "yes", "e": "null", "f": "~", "g": "0x1F", "h": "1e3",
		"i": "010", "j": "k: v", "k": "# c", "l": "- d", "m": "'q'", "n": `"dq"`, "o": "ünïcode", "p": "{}",
		"q": "[x]", "r": "*alias", "s": "&anchor", "t": "!tag", "u": "%x", "v": "@", "w": "`", "x": "<&>",
		"y": "on", "z": "1:2:3", "0": "2001-01-01", "1": ".inf", "2": "-.5", "3": "+1", "4": "0o17", "5": "true"}
	c.Spec.TimeSync = TimeSync{Server: "node01", UpstreamServers: []string{"0.pool.ntp.org", "192.168.1.1"}}
	c.Spec.Security = Security{SELinux: SELinuxEnforcingKeep, Firewall: FirewallOpenPorts}
	off := false
	c.Spec.Addons.CoreDNS = CoreDNS{Enabled: &off, Replicas: 3, Upstreams: []string{"192.168.1.53", "[fd00::53]:5353"},
		StubDomains: []StubDomain{{Domain: "corp.example.com", Servers: []string{"10.10.0.53", "10.10.1.53:5353"}}}}
	return c
}

func TestRoundTripEveryField(t *testing.T) {
	c := everyField()
	if w, err := c.Validate(); err != nil || len(w) != 0 {
		t.Fatalf("warnings %q, err %v", w, err)
	}
	roundTrip(t, c)
}

// YAML types "yes", 2 and 10000 as bool/number; fields that are strings in the Go
// types take their text, so the natural way to write flags works.
func TestScalarsBecomeStrings(t *testing.T) {
	c, err := Decode([]byte(withSeed(`  etcd:
    autoCompactionMode: revision
    autoCompactionRetention: 10000
    extraArgs: {v: 2, enable-pprof: true, strict-reconfig-check: no}
`)))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"v": "2", "enable-pprof": "true", "strict-reconfig-check": "false"}
	if !reflect.DeepEqual(c.Spec.Etcd.ExtraArgs, want) {
		t.Errorf("extraArgs %q, want %q", c.Spec.Etcd.ExtraArgs, want)
	}
	if c.Spec.Etcd.AutoCompactionRetention != "10000" {
		t.Errorf("retention %q", c.Spec.Etcd.AutoCompactionRetention)
	}
}

func TestDecodeFillsDefaults(t *testing.T) {
	c, err := Decode([]byte(withHosts(`  - {name: cp1, address: 10.1.0.11, roles: [etcd]}
  - {name: cp2, address: 10.1.0.12, roles: [control-plane, etcd], ssh: {keyPath: /k}}
  - {name: w1, address: 10.1.0.21, roles: [worker, etcd]}
`)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.ControlPlaneEndpoint != "10.1.0.12:6443" || c.Spec.TimeSync.Server != "cp2" {
		t.Errorf("endpoint %q, time server %q: want the first control-plane host's", c.Spec.ControlPlaneEndpoint, c.Spec.TimeSync.Server)
	}
	if s := c.Spec.Hosts[1].SSH; s.User != "root" || s.Port != 22 || s.KeyPath != "/k" {
		t.Errorf("ssh defaults %+v", *s)
	}
	if c.Spec.Hosts[0].SSH != nil || c.Spec.Hosts[0].SSHPort() != 22 || c.Spec.Hosts[0].SSHUser() != "root" {
		t.Errorf("host without ssh: %+v", c.Spec.Hosts[0])
	}
	d := Default()
	if !reflect.DeepEqual(c.Spec.Networking, d.Spec.Networking) || !reflect.DeepEqual(c.Spec.Etcd, d.Spec.Etcd) ||
		!reflect.DeepEqual(c.Spec.Certificates, d.Spec.Certificates) || !reflect.DeepEqual(c.Spec.Security, d.Spec.Security) {
		t.Errorf("defaults differ from Default():\n%+v\n%+v", c.Spec, d.Spec)
	}
	if c.Metadata.Name != "lab" || c.Spec.KubernetesVersion != DefaultKubernetesVersion {
		t.Errorf("metadata/version %q %q", c.Metadata.Name, c.Spec.KubernetesVersion)
	}
	if dns := c.Spec.Addons.CoreDNS; !dns.IsEnabled() || dns.Enabled == nil || dns.Replicas != DefaultCoreDNSReplicas || dns.Upstreams != nil {
		t.Errorf("coreDNS defaults %+v", dns)
	}
}

// enabled: false must survive defaulting: a nil *bool means "not said", which
// defaults to true; an explicit false is the operator's.
func TestCoreDNSDisabledStaysDisabled(t *testing.T) {
	c, err := Decode([]byte(withSeed("  addons: {coreDNS: {enabled: false}}\n")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.Addons.CoreDNS.IsEnabled() {
		t.Fatal("enabled: false was defaulted to true")
	}
	SetDefaults(c)
	if c.Spec.Addons.CoreDNS.IsEnabled() || c.Spec.Addons.CoreDNS.Replicas != 2 {
		t.Fatalf("after SetDefaults: %+v", c.Spec.Addons.CoreDNS)
	}
}

// A one-host cluster gets one CoreDNS replica: the pods keep to one per node.
func TestCoreDNSReplicasDefaultToHosts(t *testing.T) {
	c, err := Decode([]byte(withHosts("  - {name: a, address: 10.0.0.1, roles: [control-plane, etcd, worker]}\n")))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Spec.Addons.CoreDNS.Replicas; r != 1 {
		t.Fatalf("replicas %d on one host, want 1", r)
	}
}

func TestParseDNSServer(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.2": "10.0.0.2:53", "10.0.0.2:5353": "10.0.0.2:5353", "fd00::53": "[fd00::53]:53",
		"[fd00::53]:54": "[fd00::53]:54", "::ffff:10.0.0.2": "10.0.0.2:53",
	} {
		if got, err := ParseDNSServer(in); err != nil || got.String() != want {
			t.Errorf("%s: %v %v, want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "dns.example", "10.0.0.2:", "10.0.0.2:0", "10.0.0.2:70000", "fe80::1%eth0"} {
		if got, err := ParseDNSServer(bad); err == nil {
			t.Errorf("%q accepted as %v", bad, got)
		}
	}
}

func TestLeadingEmptyDocuments(t *testing.T) {
	c, err := Decode([]byte("---\n# comment\n---\n" + withSeed("  networking: {podCIDR: 10.32.0.0/16}\n")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.Networking.PodCIDR != "10.32.0.0/16" || len(c.Spec.Hosts) != 3 {
		t.Fatalf("lost content: %+v", c.Spec)
	}
}

func TestSeedExample(t *testing.T) {
	c, err := Load(seedExample)
	if err != nil {
		t.Fatal(err)
	}
	if w, err := c.Validate(); err != nil || len(w) != 0 {
		t.Fatalf("seed example: warnings %q, err %v", w, err)
	}
	want := map[string]struct {
		addr  string
		roles []Role
	}{
		"master01": {"192.168.161.151", []Role{RoleControlPlane, RoleEtcd}},
		"node01":   {"192.168.161.152", []Role{RoleWorker, RoleEtcd}},
		"node02":   {"192.168.161.153", []Role{RoleWorker, RoleEtcd}},
	}
	if len(c.Spec.Hosts) != len(want) {
		t.Fatalf("%d hosts", len(c.Spec.Hosts))
	}
	for _, h := range c.Spec.Hosts {
		w, ok := want[h.Name]
		if !ok || h.Address != w.addr || !reflect.DeepEqual(h.Roles, w.roles) {
			t.Errorf("host %+v, want %+v", h, w)
		}
	}
	// The example spells out the defaults for the seed topology: it must equal Default().
	d := Default()
	if !reflect.DeepEqual(c, d) {
		out, _ := Marshal(c)
		t.Errorf("the example's spelt-out values drifted from the defaults:\n%s", out)
	}

	// The commented master02 block is the HA step; uncommented it must still load.
	raw, err := os.ReadFile(seedExample)
	if err != nil {
		t.Fatal(err)
	}
	ha := strings.NewReplacer(
		"    # - name: master02", "    - name: master02",
		"    #   address: 192.168.161.150", "      address: 192.168.161.150",
		"    #   roles: [control-plane]", "      roles: [control-plane]",
	).Replace(string(raw))
	c, err = Decode([]byte(ha))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.HostsWithRole(RoleControlPlane); len(got) != 2 || got[1].Name != "master02" || got[1].Address != "192.168.161.150" {
		t.Fatalf("control-plane hosts after uncommenting master02: %+v", got)
	}
}

func TestLoadErrorsStartWithPath(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.yaml")
	if _, err := Load(missing); err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	for name, content := range map[string]string{
		"invalid.yaml": withSeed("  networking: {overlay: {vni: -1}}\n"),
		"unknown.yaml": withSeed("  bogus: 1\n"),
		"broken.yaml":  "apiVersion: [\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		if err == nil || !strings.HasPrefix(err.Error(), p+": ") {
			t.Errorf("%s: error does not start with the path: %v", name, err)
		}
	}
}

func TestHelpers(t *testing.T) {
	c := Default()
	if ip, err := c.Spec.Networking.APIServerServiceIP(); err != nil || !ip.Equal(net.ParseIP("10.96.0.1")) {
		t.Errorf("APIServerServiceIP %v %v", ip, err)
	}
	if ip, err := c.Spec.Networking.ClusterDNSIP(); err != nil || !ip.Equal(net.ParseIP("10.96.0.10")) {
		t.Errorf("ClusterDNSIP %v %v", ip, err)
	}
	v6 := Networking{ServiceCIDR: "fd00:96::/108"}
	if ip, err := v6.ClusterDNSIP(); err != nil || ip.String() != "fd00:96::a" {
		t.Errorf("IPv6 ClusterDNSIP %v %v", ip, err)
	}
	// The kubelets' clusterDNS and Service kube-dns both come from ClusterDNSIP.
	for cidr, want := range map[string]string{"10.96.5.7/12": "10.96.0.10", "172.20.0.0/16": "172.20.0.10", "192.168.0.0/28": "192.168.0.10"} {
		if ip, err := (Networking{ServiceCIDR: cidr}).ClusterDNSIP(); err != nil || ip.String() != want {
			t.Errorf("ClusterDNSIP of %s: %v %v, want %s", cidr, ip, err, want)
		}
	}
	for _, bad := range []string{"10.0.0.0/29", "nonsense", ""} {
		if _, err := (Networking{ServiceCIDR: bad}).ClusterDNSIP(); err == nil {
			t.Errorf("ClusterDNSIP of %q accepted (a /29 has no tenth address)", bad)
		}
	}
	host, port, err := c.ControlPlaneEndpointHostPort()
	if err != nil || host != "192.168.161.151" || port != 6443 {
		t.Errorf("endpoint split %q %d %v", host, port, err)
	}
	var names []string
	for _, h := range c.HostsWithRole(RoleWorker) {
		names = append(names, h.Name)
	}
	if !reflect.DeepEqual(names, []string{"node01", "node02"}) {
		t.Errorf("workers %v", names)
	}
	if !c.Spec.Hosts[0].HasRole(RoleEtcd) || c.Spec.Hosts[0].HasRole(RoleWorker) {
		t.Errorf("HasRole wrong for %+v", c.Spec.Hosts[0])
	}
	if KeyECDSAP256.Algo() != "ecdsa" || KeyECDSAP256.Size() != 256 || KeyRSA3072.Algo() != "rsa" || KeyRSA3072.Size() != 3072 {
		t.Errorf("key algorithm split wrong")
	}
}

func TestResolveNode(t *testing.T) {
	c := Default()
	ips := func(s ...string) []net.IP {
		var out []net.IP
		for _, x := range s {
			out = append(out, net.ParseIP(x))
		}
		return out
	}
	cases := []struct {
		name     string
		nodeName string
		hostname string
		addrs    []net.IP
		want     string // host name, or "" for an error
		errHas   string
	}{
		{"explicit name wins", "node02", "master01", ips("192.168.161.151"), "node02", ""},
		{"explicit name unknown", "node09", "node01", nil, "", `--node-name "node09" is not a host of cluster "kubernetes" (hosts: master01, node01, node02)`},
		{"by hostname", "", "node01", ips("127.0.0.1", "10.0.2.15"), "node01", ""},
		{"by FQDN hostname", "", "node01.lab.example.com", nil, "node01", ""},
		{"by hostname, other case", "", "NODE01", nil, "node01", ""},
		{"by address", "", "localhost.localdomain", ips("127.0.0.1", "192.168.161.153", "fe80::1"), "node02", ""},
		{"by name and address agreeing", "", "master01", ips("192.168.161.151"), "master01", ""},
		{"no match", "", "debian", ips("127.0.0.1", "10.0.2.15"), "", "matches no host of cluster \"kubernetes\" by name or address; pass --node-name"},
		{"name and address disagree", "", "node01", ips("192.168.161.151"), "", "matches several hosts of cluster \"kubernetes\": master01 (by local address 192.168.161.151), node01 (by hostname \"node01\"); pass --node-name"},
		{"two addresses of two hosts", "", "x", ips("192.168.161.152", "192.168.161.153"), "", "pass --node-name"},
		{"empty hostname matches nothing by name", "", "", nil, "", "pass --node-name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := c.ResolveNode(tc.nodeName, tc.hostname, tc.addrs)
			if tc.want != "" {
				if err != nil || h == nil || h.Name != tc.want {
					t.Fatalf("got %+v, %v; want %s", h, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got host %s, want an error", h.Name)
			}
			if !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("error %q does not contain %q", err, tc.errHas)
			}
		})
	}
}

func TestLocalIdentity(t *testing.T) {
	hn, addrs, err := LocalIdentity()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.Hostname()
	if hn != want {
		t.Errorf("hostname %q, want %q", hn, want)
	}
	hasLoopback := false
	for _, a := range addrs {
		if a.IsLoopback() {
			hasLoopback = true
		}
	}
	if !hasLoopback {
		t.Errorf("no loopback among %v; the lo interface's address should be listed", addrs)
	}
	// A config naming this machine after its hostname resolves it.
	c := Default()
	short := strings.ToLower(strings.SplitN(hn, ".", 2)[0])
	if _, taken := c.Host(short); taken {
		t.Skipf("this machine is called %q like a seed host; the rename below would duplicate it", short)
	}
	c.Spec.Hosts[1].Name = short
	if h, err := c.ResolveNode("", hn, addrs); err != nil || h.Name != c.Spec.Hosts[1].Name {
		t.Errorf("resolving this machine (%q): %+v %v", hn, h, err)
	}
}

// The etcd overlay backend needs an etcd client certificate on every host, which
// only etcd hosts may hold: a host without the role is refused, naming it.
func TestOverlayEtcdBackendNeedsEtcdHosts(t *testing.T) {
	c := Default()
	if c.Spec.Networking.Overlay.Backend != OverlayBackendKube {
		t.Fatalf("default backend %q, want kube", c.Spec.Networking.Overlay.Backend)
	}
	c.Spec.Networking.Overlay.Backend = OverlayBackendEtcd
	if _, err := c.Validate(); err != nil {
		t.Fatalf("every host of the default has the etcd role: %v", err)
	}
	c.Spec.Hosts = append(c.Spec.Hosts, Host{Name: "node03", Address: "192.168.161.154", Roles: []Role{RoleWorker}})
	_, err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "spec.hosts[3].roles") || !strings.Contains(err.Error(), "node03") || !strings.Contains(err.Error(), "spec.networking.overlay.backend") {
		t.Fatalf("got %v", err)
	}
	c.Spec.Networking.Overlay.Backend = "flannel"
	if _, err := c.Validate(); err == nil || !strings.Contains(err.Error(), "spec.networking.overlay.backend") {
		t.Fatalf("got %v", err)
	}
}
