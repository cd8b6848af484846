package config

import (
	"errors"
	"strings"
	"testing"
)

const testHeader = "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata:\n  name: lab\n"

const seedHostsYAML = `  hosts:
  - {name: master01, address: 192.168.161.151, roles: [control-plane, etcd]}
  - {name: node01, address: 192.168.161.152, roles: [worker, etcd]}
  - {name: node02, address: 192.168.161.153, roles: [worker, etcd]}
`

// withSeed is a config with the seed hosts plus the given spec lines (indented by
// two spaces, as children of spec).
func withSeed(specLines string) string { return testHeader + "spec:\n" + seedHostsYAML + specLines }

// withHosts is a config whose spec.hosts entries are the given lines.
func withHosts(hostLines string, specLines ...string) string {
	return testHeader + "spec:\n  hosts:\n" + hostLines + strings.Join(specLines, "")
}

func TestDecodeRejectsBadInput(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		// Document level.
		{"empty", "", "the configuration is empty"},
		{"only comments", "# nothing\n", "the configuration is empty"},
		{"not a mapping", "- a\n- b\n", "is a list, not a YAML mapping"},
		{"two documents", withSeed("") + "---\n" + withSeed(""), "holds 2 YAML documents"},
		{"duplicate key", testHeader + "kind: Cluster\nspec: {}\n", `key "kind" already set`},
		{"missing apiVersion", "kind: Cluster\nspec: {}\n", `apiVersion: Required value: must be "kubeforge.io/v1alpha1"`},
		{"wrong apiVersion", strings.Replace(withSeed(""), "v1alpha1", "v1beta9", 1),
			`apiVersion: Unsupported value: "kubeforge.io/v1beta9": supported values: "kubeforge.io/v1alpha1"`},
		{"wrong kind", strings.Replace(withSeed(""), "kind: Cluster", "kind: ClusterConfiguration", 1),
			`kind: Unsupported value: "ClusterConfiguration"`},

		// Strict decoding.
		{"unknown top-level field", withSeed("") + "status: {}\n", `status: Forbidden: unknown field`},
		{"unknown spec field", withSeed("  kubeVersion: v1.34.4\n"), `spec.kubeVersion: Forbidden: unknown field (did you mean "kubernetesVersion"?)`},
		{"wrong case is unknown", withSeed("  networking: {podCidr: 10.244.0.0/16}\n"), `spec.networking.podCidr: Forbidden: unknown field (did you mean "podCIDR"?)`},
		{"unknown host field", withHosts("  - {name: a, address: 10.0.0.1, roles: [etcd, control-plane], ip: 10.0.0.1}\n"), `spec.hosts[0].ip: Forbidden: unknown field`},
		{"unknown ssh field", withHosts("  - {name: a, address: 10.0.0.1, roles: [etcd, control-plane], ssh: {password: x}}\n"), `spec.hosts[0].ssh.password: Forbidden: unknown field`},
		{"quoted integer", withSeed("  networking: {overlay: {port: \"8472\"}}\n"), `spec.networking.overlay.port: Invalid value: "8472": must be an integer; remove the quotes`},
		{"fractional integer", withSeed("  networking: {overlay: {vni: 1.5}}\n"), `spec.networking.overlay.vni: Invalid value: "1.5": must be an integer`},
		{"hosts is a mapping", testHeader + "spec:\n  hosts: {master01: 192.168.161.151}\n", `spec.hosts: Invalid value: "<mapping>": must be a list`},
		{"boolean for a string", withSeed("  security: {firewall: off}\n"), `spec.security.firewall: Invalid value: false: must be a string (quote it)`},
		{"extraArgs value a list", withSeed("  etcd: {extraArgs: {log-outputs: [stderr]}}\n"), `spec.etcd.extraArgs[log-outputs]: Invalid value: "<list>": must be a string`},

		// Metadata and version.
		{"cluster name", strings.Replace(withSeed(""), "name: lab", "name: My_Cluster", 1), `metadata.name: Invalid value: "My_Cluster": a lowercase RFC 1123 label`},
		{"version format", withSeed("  kubernetesVersion: 1.34.4\n"), `spec.kubernetesVersion: Invalid value: "1.34.4": must look like v1.Y.Z`},
		{"version too old", withSeed("  kubernetesVersion: v1.28.15\n"), `spec.kubernetesVersion: Invalid value: "v1.28.15": Kubernetes 1.28 is not supported`},
		{"version too new", withSeed("  kubernetesVersion: v1.38.0\n"), `Kubernetes 1.38 is not supported; supported are 1.29 to 1.37`},

		// Endpoint.
		{"endpoint without port", withSeed("  controlPlaneEndpoint: 192.168.161.151\n"), `spec.controlPlaneEndpoint: Invalid value: "192.168.161.151": must be host:port`},
		{"endpoint port range", withSeed("  controlPlaneEndpoint: api.lab:70000\n"), `spec.controlPlaneEndpoint: Invalid value: "api.lab:70000": port "70000" must be a number between 1 and 65535`},
		{"endpoint bad host", withSeed("  controlPlaneEndpoint: \"api_lab!:6443\"\n"), `spec.controlPlaneEndpoint: Invalid value: "api_lab!:6443": the host is neither an IP address nor a DNS name`},
		{"endpoint unbracketed IPv6", withSeed("  controlPlaneEndpoint: \"fd00::1:6443\"\n"), `spec.controlPlaneEndpoint: Invalid value: "fd00::1:6443": must be host:port`},
		{"endpoint in service CIDR", withSeed("  controlPlaneEndpoint: 10.96.0.50:6443\n"), `spec.controlPlaneEndpoint: Invalid value: "10.96.0.50:6443": lies inside spec.networking.serviceCIDR 10.96.0.0/12`},

		// Hosts.
		{"no hosts", testHeader + "spec:\n  hosts: []\n", `spec.hosts: Required value: list the cluster's hosts`},
		{"host name not a label", withHosts("  - {name: Master.01, address: 10.0.0.1, roles: [etcd, control-plane]}\n"), `spec.hosts[0].name: Invalid value: "Master.01"`},
		{"host name missing", withHosts("  - {address: 10.0.0.1, roles: [etcd, control-plane]}\n"), `spec.hosts[0].name: Required value`},
		{"address not an IP", strings.Replace(withSeed(""), "192.168.161.153", "192.168.161.300", 1), `spec.hosts[2].address: Invalid value: "192.168.161.300": not an IP address`},
		{"address missing", withHosts("  - {name: a, roles: [etcd, control-plane]}\n"), `spec.hosts[0].address: Required value`},
		{"address unspecified", withHosts("  - {name: a, address: 0.0.0.0, roles: [etcd, control-plane]}\n"), `spec.hosts[0].address: Invalid value: "0.0.0.0": not a unicast address`},
		{"address IPv4-mapped", withHosts("  - {name: a, address: \"::ffff:10.0.0.1\", roles: [etcd, control-plane]}\n"), `spec.hosts[0].address: Invalid value: "::ffff:10.0.0.1": write IPv4 addresses in dotted form`},
		{"duplicate name", strings.Replace(withSeed(""), "node02", "node01", 1), `spec.hosts[2].name: Duplicate value: "node01": also the name of spec.hosts[1]`},
		{"duplicate address", strings.Replace(withSeed(""), "192.168.161.153", "192.168.161.151", 1), `spec.hosts[2].address: Duplicate value: "192.168.161.151": also the address of spec.hosts[0]`},
		{"unknown role", strings.Replace(withSeed(""), "[worker, etcd]}\n  - {name: node02", "[worker, etcd, master]}\n  - {name: node02", 1), `spec.hosts[1].roles[2]: Unsupported value: "master": supported values: "etcd", "control-plane", "worker"`},
		{"duplicate role", strings.Replace(withSeed(""), "[worker, etcd]}\n  - {name: node02", "[worker, worker]}\n  - {name: node02", 1), `spec.hosts[1].roles[1]: Duplicate value: "worker"`},
		{"empty roles", strings.Replace(withSeed(""), "roles: [worker, etcd]}\n  - {name: node02", "roles: []}\n  - {name: node02", 1), `spec.hosts[1].roles: Required value: at least one of control-plane, etcd, worker`},
		{"no control-plane", withHosts("  - {name: a, address: 10.0.0.1, roles: [etcd, worker]}\n"), `spec.hosts: Required value: no host has the control-plane role`},
		{"no etcd", withHosts("  - {name: a, address: 10.0.0.1, roles: [control-plane]}\n"), `spec.hosts: Required value: no host has the etcd role`},
		{"host in pod CIDR", withHosts("  - {name: a, address: 10.244.1.5, roles: [etcd, control-plane]}\n"), `spec.hosts[0].address: Invalid value: "10.244.1.5": lies inside spec.networking.podCIDR 10.244.0.0/16`},
		{"host in service CIDR", withHosts("  - {name: a, address: 10.100.0.5, roles: [etcd, control-plane]}\n"), `spec.hosts[0].address: Invalid value: "10.100.0.5": lies inside spec.networking.serviceCIDR 10.96.0.0/12`},
		{"ssh port", withHosts("  - {name: a, address: 10.0.0.1, roles: [etcd, control-plane], ssh: {port: 65536}}\n"), `spec.hosts[0].ssh.port: Invalid value: 65536: must be between 1 and 65535`},
		{"ssh negative port", withHosts("  - {name: a, address: 10.0.0.1, roles: [etcd, control-plane], ssh: {port: -1}}\n"), `spec.hosts[0].ssh.port: Invalid value: -1: must be between 1 and 65535`},
		{"ssh keyPath relative", withHosts("  - {name: a, address: 10.0.0.1, roles: [etcd, control-plane], ssh: {keyPath: .ssh/id_rsa}}\n"), `spec.hosts[0].ssh.keyPath: Invalid value: ".ssh/id_rsa": must be an absolute path`},
		{"ssh user", withHosts("  - {name: a, address: 10.0.0.1, roles: [etcd, control-plane], ssh: {user: \"ro ot\"}}\n"), `spec.hosts[0].ssh.user: Invalid value: "ro ot": not a valid user name`},

		// Networking.
		{"pod CIDR parse", withSeed("  networking: {podCIDR: 10.244.0.0/33}\n"), `spec.networking.podCIDR: Invalid value: "10.244.0.0/33": not a CIDR`},
		{"pod CIDR host bits", withSeed("  networking: {podCIDR: 10.244.1.0/16}\n"), `spec.networking.podCIDR: Invalid value: "10.244.1.0/16": has host bits set; the network is 10.244.0.0/16`},
		{"service CIDR parse", withSeed("  networking: {serviceCIDR: services}\n"), `spec.networking.serviceCIDR: Invalid value: "services": not a CIDR`},
		{"service CIDR too large", withSeed("  networking: {serviceCIDR: 10.0.0.0/8, podCIDR: 172.16.0.0/16}\n"), `spec.networking.serviceCIDR: Invalid value: "10.0.0.0/8": too large`},
		{"service CIDR too small", withSeed("  networking: {serviceCIDR: 10.96.0.0/29}\n"), `spec.networking.serviceCIDR: Invalid value: "10.96.0.0/29": too small`},
		{"pod and service overlap", withSeed("  networking: {podCIDR: 10.96.0.0/16}\n"), `spec.networking.serviceCIDR: Invalid value: "10.96.0.0/12": overlaps spec.networking.podCIDR 10.96.0.0/16`},
		{"mixed families", withSeed("  networking: {podCIDR: \"fd00:10:244::/56\"}\n"), `spec.networking.serviceCIDR: Invalid value: "10.96.0.0/12": must be the same IP family as spec.networking.podCIDR`},
		{"node subnet not inside pod prefix", withSeed("  networking: {nodeSubnetSize: 16}\n"), `spec.networking.nodeSubnetSize: Invalid value: 16: must be longer than the podCIDR prefix /16`},
		{"node subnet too long", withSeed("  networking: {nodeSubnetSize: 31}\n"), `spec.networking.nodeSubnetSize: Invalid value: 31: must be at most 30`},
		{"node subnets fewer than hosts", withSeed("  networking: {podCIDR: 10.244.0.0/23, nodeSubnetSize: 24}\n"), `spec.networking.nodeSubnetSize: Invalid value: 24: podCIDR 10.244.0.0/23 holds only 2 subnets of /24, fewer than the 3 hosts`},
		{"dns domain", withSeed("  networking: {dnsDomain: \"cluster..local\"}\n"), `spec.networking.dnsDomain: Invalid value: "cluster..local"`},
		{"vni range", withSeed("  networking: {overlay: {vni: 16777216}}\n"), `spec.networking.overlay.vni: Invalid value: 16777216: must be between 1 and 16777215`},
		{"vni negative", withSeed("  networking: {overlay: {vni: -4}}\n"), `spec.networking.overlay.vni: Invalid value: -4: must be between 1 and 16777215`},
		{"vxlan port range", withSeed("  networking: {overlay: {port: 65536}}\n"), `spec.networking.overlay.port: Invalid value: 65536: must be between 1 and 65535`},
		{"mtu too small", withSeed("  networking: {overlay: {mtu: 575}}\n"), `spec.networking.overlay.mtu: Invalid value: 575: must be 0 (derive from the underlay) or between 576 and 9000`},
		{"mtu too large", withSeed("  networking: {overlay: {mtu: 9001}}\n"), `spec.networking.overlay.mtu: Invalid value: 9001`},
		{"checksum setting", withSeed("  networking: {overlay: {txChecksumOffload: sometimes}}\n"), `spec.networking.overlay.txChecksumOffload: Unsupported value: "sometimes": supported values: "auto", "disabled", "enabled"`},

		// etcd.
		{"etcd dataDir relative", withSeed("  etcd: {dataDir: var/lib/etcd}\n"), `spec.etcd.dataDir: Invalid value: "var/lib/etcd": must be an absolute path`},
		{"etcd dataDir root", withSeed("  etcd: {dataDir: /}\n"), `spec.etcd.dataDir: Invalid value: "/": must not be the root directory`},
		{"etcd dataDir a system dir", withSeed("  etcd: {dataDir: /var/lib}\n"), `spec.etcd.dataDir: Invalid value: "/var/lib": /var/lib is a system directory`},
		{"etcd dataDir a parent of system dirs", withSeed("  etcd: {dataDir: /usr/}\n"), `spec.etcd.dataDir: Invalid value: "/usr/": /usr is a system directory`},
		{"compaction mode", withSeed("  etcd: {autoCompactionMode: hourly}\n"), `spec.etcd.autoCompactionMode: Unsupported value: "hourly"`},
		{"compaction retention periodic", withSeed("  etcd: {autoCompactionRetention: soon}\n"), `spec.etcd.autoCompactionRetention: Invalid value: "soon": periodic compaction needs a positive duration`},
		{"compaction retention revision", withSeed("  etcd: {autoCompactionMode: revision, autoCompactionRetention: 1h}\n"), `spec.etcd.autoCompactionRetention: Invalid value: "1h": revision compaction needs a positive number`},
		{"quota negative", withSeed("  etcd: {quotaBackendBytes: -1}\n"), `spec.etcd.quotaBackendBytes: Invalid value: -1: must be positive`},
		{"snapshot count negative", withSeed("  etcd: {snapshotCount: -10}\n"), `spec.etcd.snapshotCount: Invalid value: -10: must be positive`},
		{"heartbeat without unit", withSeed("  etcd: {heartbeatInterval: 100}\n"), `spec.etcd.heartbeatInterval: Invalid value: "100": not a duration`},
		{"backup schedule not a duration", withSeed("  etcd: {backup: {schedule: nightly}}\n"), `spec.etcd.backup.schedule: Invalid value: "nightly": want an interval such as "1h" or "30m", or one of minutely, hourly, daily, weekly, monthly`},
		{"backup schedule too short", withSeed("  etcd: {backup: {schedule: 10s}}\n"), `spec.etcd.backup.schedule: Invalid value: "10s": must be at least 1m`},
		{"backup schedule fraction", withSeed("  etcd: {backup: {schedule: 90500ms}}\n"), `spec.etcd.backup.schedule: Invalid value: "90500ms": must be whole seconds`},
		{"backup keep negative", withSeed("  etcd: {backup: {keep: -1}}\n"), `spec.etcd.backup.keep: Invalid value: -1: must keep at least 1 snapshot`},
		{"backup dir relative", withSeed("  etcd: {backup: {dir: backups}}\n"), `spec.etcd.backup.dir: Invalid value: "backups": must be an absolute path`},
		{"backup dir with a space", withSeed("  etcd: {backup: {dir: /srv/etcd backups}}\n"), `spec.etcd.backup.dir: Invalid value: "/srv/etcd backups": must not contain whitespace`},
		{"backup dir in data dir", withSeed("  etcd: {backup: {dir: /var/lib/etcd/backups}}\n"), `spec.etcd.backup.dir: Invalid value: "/var/lib/etcd/backups": must not overlap spec.etcd.dataDir (/var/lib/etcd): reset deletes the data dir`},
		{"backup dir holds data dir", withSeed("  etcd: {backup: {dir: /var/lib}}\n"), `spec.etcd.backup.dir: Invalid value: "/var/lib": must not overlap spec.etcd.dataDir`},
		{"heartbeat sub-millisecond", withSeed("  etcd: {heartbeatInterval: 100500us}\n"), `spec.etcd.heartbeatInterval: Invalid value: "100500us": etcd takes whole milliseconds`},
		{"election below 5 heartbeats", withSeed("  etcd: {electionTimeout: 400ms}\n"), `spec.etcd.electionTimeout: Invalid value: "400ms": must be at least 5 times spec.etcd.heartbeatInterval (100ms)`},
		{"election above 50s", withSeed("  etcd: {electionTimeout: 51s}\n"), `spec.etcd.electionTimeout: Invalid value: "51s": etcd allows at most 50s`},
		{"extraArgs with dashes", withSeed("  etcd: {extraArgs: {--log-level: debug}}\n"), `spec.etcd.extraArgs[--log-level]: Invalid value: "--log-level": write the flag name without dashes: "log-level"`},
		{"extraArgs value newline", withSeed("  components: {kubelet: {extraArgs: {node-labels: \"a=b\\nExecStartPre=/bin/sh\"}}}\n"), `spec.components.kubelet.extraArgs[node-labels]: Invalid value: "a=b\nExecStartPre=/bin/sh": must not contain control characters`},
		{"extraArgs bad name", withSeed("  components: {apiServer: {extraArgs: {\"feature gates\": x}}}\n"), `spec.components.apiServer.extraArgs[feature gates]: Invalid value: "feature gates": not a flag name`},

		// Certificates.
		{"key algorithm", withSeed("  certificates: {keyAlgorithm: ed25519}\n"), `spec.certificates.keyAlgorithm: Unsupported value: "ed25519": supported values: "rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256"`},
		{"validity not a duration", withSeed("  certificates: {validity: 1y}\n"), `spec.certificates.validity: Invalid value: "1y": not a duration`},
		{"ca validity negative", withSeed("  certificates: {caValidity: -1h}\n"), `spec.certificates.caValidity: Invalid value: "-1h": must be positive`},
		{"leaf outlives CA", withSeed("  certificates: {caValidity: 8760h, validity: 17520h}\n"), `spec.certificates.validity: Invalid value: "17520h": must not exceed spec.certificates.caValidity (8760h)`},
		{"auto-renew window too long", withSeed("  certificates: {validity: 8760h, autoRenew: {renewBefore: 8760h}}\n"), `spec.certificates.autoRenew.renewBefore: Invalid value: "8760h": must be shorter than spec.certificates.validity (8760h)`},
		{"auto-renew schedule", withSeed("  certificates: {autoRenew: {schedule: 5s}}\n"), `spec.certificates.autoRenew.schedule: Invalid value: "5s": must be at least 1m`},
		{"auto-renew window not a duration", withSeed("  certificates: {autoRenew: {renewBefore: soon}}\n"), `spec.certificates.autoRenew.renewBefore: Invalid value: "soon": not a duration`},
		{"certSAN", withSeed("  certificates: {certSANs: [\"api lb\"]}\n"), `spec.certificates.certSANs[0]: Invalid value: "api lb": neither an IP address nor a DNS name`},

		// Time sync and security.
		{"time server unknown", withSeed("  timeSync: {server: ntp01}\n"), `spec.timeSync.server: Unsupported value: "ntp01": supported values: "master01", "node01", "node02"`},
		{"upstream server", withSeed("  timeSync: {upstreamServers: [\"pool ntp org\"]}\n"), `spec.timeSync.upstreamServers[0]: Invalid value: "pool ntp org"`},
		{"upstream duplicate", withSeed("  timeSync: {upstreamServers: [pool.ntp.org, pool.ntp.org]}\n"), `spec.timeSync.upstreamServers[1]: Duplicate value: "pool.ntp.org"`},
		{"selinux", withSeed("  security: {selinux: enforcing}\n"), `spec.security.selinux: Unsupported value: "enforcing": supported values: "disabled", "permissive", "enforcing-keep"`},
		{"firewall", withSeed("  security: {firewall: open}\n"), `spec.security.firewall: Unsupported value: "open": supported values: "disable", "open-ports"`},

		// Add-ons.
		{"coredns enabled not a bool", withSeed("  addons: {coreDNS: {enabled: \"no\"}}\n"), `spec.addons.coreDNS.enabled: Invalid value: "no": must be true or false`},
		{"coredns replicas negative", withSeed("  addons: {coreDNS: {replicas: -1}}\n"), `spec.addons.coreDNS.replicas: Invalid value: -1: must be between 1 and 100`},
		{"coredns replicas too many", withSeed("  addons: {coreDNS: {replicas: 1000}}\n"), `spec.addons.coreDNS.replicas: Invalid value: 1000: must be between 1 and 100`},
		{"coredns upstream name", withSeed("  addons: {coreDNS: {upstreams: [dns.example.com]}}\n"), `spec.addons.coreDNS.upstreams[0]: Invalid value: "dns.example.com": must be an IP address or IP:port`},
		{"coredns upstream loopback", withSeed("  addons: {coreDNS: {upstreams: [127.0.0.53]}}\n"), `spec.addons.coreDNS.upstreams[0]: Invalid value: "127.0.0.53": a loopback, unspecified or multicast address would be CoreDNS's own pod`},
		{"coredns upstream port 0", withSeed("  addons: {coreDNS: {upstreams: [\"10.0.0.2:0\"]}}\n"), `spec.addons.coreDNS.upstreams[0]: Invalid value: "10.0.0.2:0": port 0 is not a port`},
		{"coredns upstream duplicate", withSeed("  addons: {coreDNS: {upstreams: [10.0.0.2, \"10.0.0.2:53\"]}}\n"), `spec.addons.coreDNS.upstreams[1]: Duplicate value: "10.0.0.2:53"`},
		{"coredns stub domain missing", withSeed("  addons: {coreDNS: {stubDomains: [{servers: [10.0.0.2]}]}}\n"), `spec.addons.coreDNS.stubDomains[0].domain: Required value`},
		{"coredns stub domain bad", withSeed("  addons: {coreDNS: {stubDomains: [{domain: \"corp_example\", servers: [10.0.0.2]}]}}\n"), `spec.addons.coreDNS.stubDomains[0].domain: Invalid value: "corp_example"`},
		{"coredns stub domain is cluster", withSeed("  addons: {coreDNS: {stubDomains: [{domain: svc.cluster.local, servers: [10.0.0.2]}]}}\n"), `spec.addons.coreDNS.stubDomains[0].domain: Invalid value: "svc.cluster.local": overlaps the cluster domain spec.networking.dnsDomain cluster.local`},
		{"coredns stub domain duplicate", withSeed("  addons: {coreDNS: {stubDomains: [{domain: corp.example, servers: [10.0.0.2]}, {domain: Corp.Example., servers: [10.0.0.3]}]}}\n"), `spec.addons.coreDNS.stubDomains[1].domain: Duplicate value: "Corp.Example.": also the domain of spec.addons.coreDNS.stubDomains[0]`},
		{"coredns stub no servers", withSeed("  addons: {coreDNS: {stubDomains: [{domain: corp.example}]}}\n"), `spec.addons.coreDNS.stubDomains[0].servers: Required value: at least one IP or IP:port`},
		{"coredns stub server bad", withSeed("  addons: {coreDNS: {stubDomains: [{domain: corp.example, servers: [\"fe80::1%eth0\"]}]}}\n"), `spec.addons.coreDNS.stubDomains[0].servers[0]: Invalid value: "fe80::1%eth0": an address with a zone cannot be reached from a pod`},
		{"coredns unknown field", withSeed("  addons: {coreDNS: {upstream: [10.0.0.2]}}\n"), `spec.addons.coreDNS.upstream: Forbidden: unknown field (did you mean "upstreams"?)`},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			c, err := Decode([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("Decode succeeded (cluster %q), want an error containing\n  %s\ninput:\n%s", c.Metadata.Name, tc.want, tc.yaml)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not contain\n  %s\ngot:\n  %v\ninput:\n%s", tc.want, err, tc.yaml)
			}
		})
	}
}

// Every problem comes back from one run, one per line, each naming its field.
func TestDecodeReportsEveryProblem(t *testing.T) {
	in := withHosts(`  - {name: master01, address: 192.168.161.300, roles: [control-plane, etcd]}
  - {name: master01, address: 192.168.161.152, roles: [boss]}
`, `  networking: {overlay: {vni: -1}}
  certificates: {keyAlgorithm: dsa}
  security: {selinux: maybe}
`)
	_, err := Decode([]byte(in))
	var ie *InvalidError
	if !errors.As(err, &ie) {
		t.Fatalf("want *InvalidError, got %T %v", err, err)
	}
	want := []string{
		`spec.hosts[0].address: Invalid value: "192.168.161.300": not an IP address`,
		`spec.hosts[1].name: Duplicate value: "master01"`,
		`spec.hosts[1].roles[0]: Unsupported value: "boss"`,
		`spec.networking.overlay.vni: Invalid value: -1`,
		`spec.certificates.keyAlgorithm: Unsupported value: "dsa"`,
		`spec.security.selinux: Unsupported value: "maybe"`,
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want)+1 {
		t.Errorf("want a header and %d lines, got %d:\n%v", len(want), len(lines), err)
	}
	for _, w := range want {
		found := false
		for _, l := range lines[1:] {
			if strings.Contains(l, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("no line contains %q in:\n%v", w, err)
		}
	}
}

func TestWarnings(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"two etcd members", withHosts(`  - {name: a, address: 10.0.0.1, roles: [control-plane, etcd]}
  - {name: b, address: 10.0.0.2, roles: [worker, etcd]}
`), "spec.hosts: 2 etcd members: an even count tolerates no more failures than 1 members (0)"},
		{"four etcd members", withHosts(`  - {name: a, address: 10.0.0.1, roles: [control-plane, etcd]}
  - {name: b, address: 10.0.0.2, roles: [worker, etcd]}
  - {name: c, address: 10.0.0.3, roles: [worker, etcd]}
  - {name: d, address: 10.0.0.4, roles: [worker, etcd]}
`), "spec.hosts: 4 etcd members"},
		{"HA endpoint on one master", withSeed("") + "  controlPlaneEndpoint: 192.168.161.151:6443\n" +
			"  timeSync: {server: master01}\n",
			""}, // one control-plane host: pointing at it is fine
		{"managed flag in extraArgs", withSeed("  etcd: {extraArgs: {data-dir: /data/etcd}}\n"),
			"spec.etcd.extraArgs[data-dir]: overrides the value kubeforge derives from spec.etcd.dataDir"},
		{"quota above 8GiB", withSeed("  etcd: {quotaBackendBytes: 17179869184}\n"),
			"spec.etcd.quotaBackendBytes: 17179869184 exceeds the 8 GiB"},
		{"loopback address", withHosts(`  - {name: a, address: 127.0.0.2, roles: [control-plane, etcd]}
  - {name: b, address: 10.0.0.2, roles: [worker]}
`), "spec.hosts[0].address: 127.0.0.2 is a loopback address"},
		{"coredns replicas above hosts", withSeed("  addons: {coreDNS: {replicas: 4}}\n"),
			"spec.addons.coreDNS.replicas: 4 replicas on 3 hosts: CoreDNS pods keep to one per node, so 1 stay Pending"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Decode([]byte(tc.yaml))
			if err != nil {
				t.Fatalf("a warning must not be an error: %v", err)
			}
			w, err := c.Validate()
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if len(w) != 0 {
					t.Fatalf("want no warnings, got %q", w)
				}
				return
			}
			if len(w) != 1 || !strings.Contains(w[0], tc.want) {
				t.Fatalf("want one warning containing %q, got %q", tc.want, w)
			}
		})
	}
}

func TestHAEndpointWarning(t *testing.T) {
	c := Default()
	c.Spec.Hosts = append(c.Spec.Hosts, Host{Name: "master02", Address: "192.168.161.150", Roles: []Role{RoleControlPlane}})
	w, err := c.Validate()
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1 || !strings.Contains(w[0], "spec.controlPlaneEndpoint: 192.168.161.151:6443 points at control-plane host master01 alone") {
		t.Fatalf("warnings %q", w)
	}
	c.Spec.ControlPlaneEndpoint = "192.168.161.160:6443" // a VIP
	if w, err := c.Validate(); err != nil || len(w) != 0 {
		t.Fatalf("VIP endpoint: warnings %q, err %v", w, err)
	}
}

// YAML cannot carry invalid UTF-8, but a Cluster built in code can; it must not
// reach a unit file (the fuzzer found that it did not survive Marshal).
func TestValidateRejectsInvalidUTF8(t *testing.T) {
	c := Default()
	c.Spec.Etcd.DataDir = "/data/\xa8"
	c.Spec.Components.Kubelet.ExtraArgs = map[string]string{"root-dir": "/var/\xff"}
	_, err := c.Validate()
	for _, want := range []string{
		`spec.etcd.dataDir: Invalid value: "/data/\xa8": must be valid UTF-8`,
		`spec.components.kubelet.extraArgs[root-dir]: Invalid value: "/var/\xff": must be valid UTF-8`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %s in %v", want, err)
		}
	}
}

func TestEtcdBackupDefaultsAndShorthands(t *testing.T) {
	c, err := Decode([]byte(withSeed("")))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Spec.Etcd.Backup
	if b.Schedule != DefaultEtcdBackupSchedule || b.Keep != DefaultEtcdBackupKeep || b.Dir != DefaultEtcdBackupDir {
		t.Errorf("defaults: got %+v", b)
	}
	for _, s := range append([]string{"1m", "6h", "90m"}, BackupCalendarShorthands...) {
		if _, err := Decode([]byte(withSeed("  etcd: {backup: {schedule: " + s + ", keep: 3, dir: /srv/etcd-backups}}\n"))); err != nil {
			t.Errorf("schedule %q: %v", s, err)
		}
	}
}
