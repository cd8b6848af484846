package etcd

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
)

func seedMemberConfig(t *testing.T) MemberConfig {
	t.Helper()
	c := config.Default()
	h, _ := c.Host("node01")
	m := MemberOf(*h)
	return MemberConfig{
		Member:              m,
		ListenLocalhost:     true,
		DataDir:             c.Spec.Etcd.DataDir,
		PKIDir:              "/etc/kubernetes/pki/etcd",
		InitialCluster:      []Peer{{"master01", "https://192.168.161.151:2380"}, {"node01", m.PeerURL()}},
		InitialClusterState: ClusterStateExisting,
		InitialClusterToken: c.Metadata.Name,
		Settings:            c.Spec.Etcd,
	}
}

func renderValues(t *testing.T, mc MemberConfig) map[string]any {
	t.Helper()
	out, err := mc.Render()
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	v, err := configValues(out)
	if err != nil {
		t.Fatalf("rendered config does not parse: %v\n%s", err, out)
	}
	return v
}

func TestRenderProductionSettings(t *testing.T) {
	v := renderValues(t, seedMemberConfig(t))
	want := map[string]any{
		"name":                        "node01",
		"data-dir":                    "/var/lib/etcd",
		"listen-client-urls":          "https://192.168.161.152:2379,https://127.0.0.1:2379",
		"advertise-client-urls":       "https://192.168.161.152:2379",
		"listen-peer-urls":            "https://192.168.161.152:2380",
		"initial-advertise-peer-urls": "https://192.168.161.152:2380",
		"listen-metrics-urls":         "http://127.0.0.1:2381",
		"initial-cluster":             "master01=https://192.168.161.151:2380,node01=https://192.168.161.152:2380",
		"initial-cluster-state":       "existing",
		"initial-cluster-token":       "kubernetes",
		"snapshot-count":              float64(10000),
		"heartbeat-interval":          float64(100),
		"election-timeout":            float64(1000),
		"quota-backend-bytes":         float64(8 << 30),
		"auto-compaction-mode":        "periodic",
		"auto-compaction-retention":   "1h",
		"strict-reconfig-check":       true,
	}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("%s = %#v, want %#v", k, v[k], w)
		}
	}
	for _, sec := range []string{"client-transport-security", "peer-transport-security"} {
		s, ok := v[sec].(map[string]any)
		if !ok {
			t.Fatalf("%s missing: %#v", sec, v[sec])
		}
		if s["client-cert-auth"] != true || s["auto-tls"] != false {
			t.Errorf("%s: client-cert-auth=%v auto-tls=%v, want mutual TLS with real certificates", sec, s["client-cert-auth"], s["auto-tls"])
		}
		if s["trusted-ca-file"] != "/etc/kubernetes/pki/etcd/ca.crt" {
			t.Errorf("%s: trusted CA %v, want only the etcd CA", sec, s["trusted-ca-file"])
		}
	}
	if got := v["peer-transport-security"].(map[string]any)["cert-file"]; got != "/etc/kubernetes/pki/etcd/peer.crt" {
		t.Errorf("peer cert %v", got)
	}
	if got := v["client-transport-security"].(map[string]any)["key-file"]; got != "/etc/kubernetes/pki/etcd/server.key" {
		t.Errorf("server key %v", got)
	}
}

// TestRenderTLSPolicy: both ports get kubeforge's cipher suites and TLS 1.2+.
func TestRenderTLSPolicy(t *testing.T) {
	v := renderValues(t, seedMemberConfig(t))
	if v["tls-min-version"] != "TLS1.2" || fmt.Sprint(v["cipher-suites"]) != fmt.Sprint(certs.TLSCipherSuites) {
		t.Errorf("tls-min-version %v, cipher-suites %v", v["tls-min-version"], v["cipher-suites"])
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	mc := seedMemberConfig(t)
	mc.Settings.ExtraArgs = map[string]string{"max-learners": "2", "log-level": "warn", "cipher-suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}
	a, err := mc.Render()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		b, _ := mc.Render()
		if !bytes.Equal(a, b) {
			t.Fatalf("two renders differ; an unchanged member would be restarted on every run:\n%s\n---\n%s", a, b)
		}
	}
}

func TestRenderLoopbackMemberHasNoSecondLocalListener(t *testing.T) {
	mc := seedMemberConfig(t)
	mc.Member = Member{Name: "a", Address: "127.0.0.2", ClientPort: 32379, PeerPort: 32380, MetricsPort: -1}
	mc.InitialCluster = []Peer{{"a", mc.Member.PeerURL()}}
	v := renderValues(t, mc)
	if v["listen-client-urls"] != "https://127.0.0.2:32379" {
		t.Errorf("listen-client-urls %v", v["listen-client-urls"])
	}
	if _, ok := v["listen-metrics-urls"]; ok {
		t.Errorf("metrics listener rendered although MetricsPort is -1")
	}
}

func TestExtraArgsOverrideWithTypes(t *testing.T) {
	mc := seedMemberConfig(t)
	mc.Settings.ExtraArgs = map[string]string{
		"snapshot-count":            "5000",
		"peer-client-cert-auth":     "false",
		"log-outputs":               "stderr, /var/log/etcd.log",
		"grpc-keepalive-min-time":   "5s",
		"auto-compaction-retention": "10000",
		"peer-cert-allowed-cn":      "etcd-peer",
	}
	v := renderValues(t, mc)
	if v["snapshot-count"] != float64(5000) {
		t.Errorf("snapshot-count %#v", v["snapshot-count"])
	}
	if v["peer-transport-security"].(map[string]any)["client-cert-auth"] != false {
		t.Errorf("peer-client-cert-auth did not reach peer-transport-security")
	}
	if v["client-transport-security"].(map[string]any)["client-cert-auth"] != true {
		t.Errorf("overriding the peer side changed the client side")
	}
	if got, _ := v["log-outputs"].([]any); len(got) != 2 || got[1] != "/var/log/etcd.log" {
		t.Errorf("log-outputs %#v", v["log-outputs"])
	}
	if v["grpc-keepalive-min-time"] != float64(5e9) {
		t.Errorf("grpc-keepalive-min-time %#v, want nanoseconds", v["grpc-keepalive-min-time"])
	}
	// A number-looking value of a string setting stays a string, or etcd would
	// refuse the file.
	if v["auto-compaction-retention"] != "10000" {
		t.Errorf("auto-compaction-retention %#v", v["auto-compaction-retention"])
	}
	if got, _ := v["peer-transport-security"].(map[string]any)["allowed-cn"].([]any); len(got) != 1 {
		t.Errorf("allowed-cn %#v", v["peer-transport-security"])
	}
}

func TestExtraArgsErrorsNameTheField(t *testing.T) {
	mc := seedMemberConfig(t)
	mc.Settings.ExtraArgs = map[string]string{
		"no-such-flag":                       "1",
		"snapshot-count":                     "many",
		"experimental-initial-corrupt-check": "true",
		"client-cert-auth":                   "perhaps",
	}
	_, err := mc.Render()
	if err == nil {
		t.Fatal("bad extra args accepted")
	}
	for _, want := range []string{
		"spec.etcd.extraArgs[no-such-flag]: not an etcd 3.6 setting",
		`spec.etcd.extraArgs[snapshot-count]: "many" is not an integer`,
		"spec.etcd.extraArgs[experimental-initial-corrupt-check]: etcd 3.6 replaced this flag; use feature-gates",
		`spec.etcd.extraArgs[client-cert-auth]: "perhaps" is not true or false`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	for name, mutate := range map[string]func(*MemberConfig){
		"self missing from initial cluster": func(c *MemberConfig) { c.InitialCluster = c.InitialCluster[:1] },
		"self with another peer URL": func(c *MemberConfig) {
			c.InitialCluster[1].PeerURL = "https://10.0.0.9:2380"
		},
		"bad state":            func(c *MemberConfig) { c.InitialClusterState = "fresh" },
		"relative data dir":    func(c *MemberConfig) { c.DataDir = "var/lib/etcd" },
		"root data dir":        func(c *MemberConfig) { c.DataDir = "/" },
		"not an IP":            func(c *MemberConfig) { c.Member.Address = "node01" },
		"sub-ms heartbeat":     func(c *MemberConfig) { c.Settings.HeartbeatInterval = "100500us" },
		"duplicate peer names": func(c *MemberConfig) { c.InitialCluster = append(c.InitialCluster, c.InitialCluster[0]) },
	} {
		t.Run(name, func(t *testing.T) {
			mc := seedMemberConfig(t)
			mutate(&mc)
			if _, err := mc.Render(); err == nil {
				t.Errorf("accepted")
			} else if !strings.Contains(err.Error(), "node01") && !strings.Contains(err.Error(), "spec.etcd") {
				t.Errorf("error %q names neither the member nor the field", err)
			}
		})
	}
}

func TestKeepBootstrapPreservesTheFirstStart(t *testing.T) {
	old := seedMemberConfig(t)
	cur, err := old.Render()
	if err != nil {
		t.Fatal(err)
	}
	next := seedMemberConfig(t)
	next.InitialCluster = []Peer{{"node01", next.Member.PeerURL()}}
	next.InitialClusterState = ClusterStateNew
	next.keepBootstrap(cur)
	a, _ := next.Render()
	if !bytes.Equal(a, cur) {
		t.Errorf("a member with data would be rewritten (and restarted) only because its bootstrap settings differ:\n%s\n---\n%s", cur, a)
	}
	// A file of another member (other peer URL) is not taken over.
	other := seedMemberConfig(t)
	other.Member.Address = "192.168.161.199"
	other.InitialCluster = []Peer{{"node01", other.Member.PeerURL()}}
	foreign, _ := other.Render()
	next = seedMemberConfig(t)
	next.InitialClusterState = ClusterStateNew
	next.keepBootstrap(foreign)
	if next.InitialClusterState != ClusterStateNew {
		t.Errorf("took the bootstrap settings of another member's file")
	}
}

func TestInitialClusterRoundTrip(t *testing.T) {
	peers := []Peer{{"a", "https://10.0.0.1:2380"}, {"b", "https://[fd00::2]:2380"}}
	got, err := ParseInitialCluster(FormatInitialCluster(peers))
	if err != nil || len(got) != 2 || got[1] != peers[1] {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if _, err := ParseInitialCluster("a=https://x:2380,broken"); err == nil {
		t.Error("broken entry accepted")
	}
	if u := (Member{Name: "v6", Address: "fd00::2"}).PeerURL(); u != "https://[fd00::2]:2380" {
		t.Errorf("IPv6 peer URL %s", u)
	}
}
