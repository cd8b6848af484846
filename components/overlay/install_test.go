package overlay

import (
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

func TestAgentConfigForKube(t *testing.T) {
	c := config.Default()
	c.Spec.Hosts = append(c.Spec.Hosts, config.Host{Name: "node03", Address: "192.168.161.154", Roles: []config.Role{config.RoleWorker}})
	cfg, err := AgentConfigFor(c, c.Spec.Hosts[3], "/etc/kubernetes/pki")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Backend != BackendKube || cfg.Kubeconfig != "/etc/kubernetes/kubelet.conf" || len(cfg.Etcd.Endpoints) != 0 || cfg.Etcd.CertFile != "" {
		t.Errorf("a worker's agent must use the node's own kubeconfig and nothing of etcd: %+v", cfg)
	}
	data, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "etcd") {
		t.Errorf("the written config mentions etcd:\n%s", data)
	}
}

func TestAgentConfigFor(t *testing.T) {
	c := config.Default()
	c.Spec.Networking.Overlay.Backend = config.OverlayBackendEtcd
	c.Spec.Networking.Overlay.MTU = 1400
	node, _ := c.Host("node01")
	cfg, err := AgentConfigFor(c, *node, "/etc/kubernetes/pki")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"https://192.168.161.151:2379", "https://192.168.161.152:2379", "https://192.168.161.153:2379"}
	if strings.Join(cfg.Etcd.Endpoints, ",") != strings.Join(want, ",") {
		t.Errorf("endpoints %v", cfg.Etcd.Endpoints)
	}
	if cfg.Etcd.CAFile != "/etc/kubernetes/pki/etcd/ca.crt" || cfg.Etcd.CertFile != "/etc/kubernetes/pki/etcd/overlay-client.crt" || cfg.Etcd.KeyFile != "/etc/kubernetes/pki/etcd/overlay-client.key" {
		t.Errorf("the agent must use its own client certificate: %+v", cfg.Etcd)
	}
	if cfg.NodeName != "node01" || cfg.PublicIP != "192.168.161.152" || cfg.TxChecksumOffload != "auto" {
		t.Errorf("node fields %+v", cfg)
	}
	n := cfg.Network
	if n.Network != "10.244.0.0/16" || n.SubnetLen != 24 || n.VNI != 1 || n.Port != 8472 || n.MTU != 1400 {
		t.Errorf("network %+v", n)
	}
	// What is written is what the agent reads back.
	data, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseConfig(data)
	if err != nil || back.Network.MTU != 1400 || back.Etcd.KeyFile != cfg.Etcd.KeyFile {
		t.Fatalf("round trip: %v\n%s", err, data)
	}

	c.Spec.Hosts = []config.Host{{Name: "solo", Address: "192.168.161.10", Roles: []config.Role{config.RoleControlPlane, config.RoleWorker}}}
	if _, err := AgentConfigFor(c, c.Spec.Hosts[0], "/etc/kubernetes/pki"); err == nil || !strings.Contains(err.Error(), "spec.networking.overlay.backend is etcd") {
		t.Errorf("no etcd host: %v", err)
	}
}

func TestIsOverlayDevice(t *testing.T) {
	for name, want := range map[string]bool{"kubeforge.1": true, "kubeforge.4096": true, "kf.100000": true, "kf.1": false, "kfabc": false, "eth0": false, "cni0": false} {
		if got := isOverlayDevice(name); got != want {
			t.Errorf("isOverlayDevice(%q) = %v", name, got)
		}
	}
}
