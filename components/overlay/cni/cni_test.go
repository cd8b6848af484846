package cni

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var params = Params{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.3.0/24"), MTU: 1450}

func TestConflist(t *testing.T) {
	data, err := Conflist(params)
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []struct {
			Type      string `json:"type"`
			Bridge    string `json:"bridge"`
			IsGateway bool   `json:"isGateway"`
			IPMasq    *bool  `json:"ipMasq"`
			MTU       int    `json:"mtu"`
			IPAM      struct {
				Type   string `json:"type"`
				Ranges [][]struct {
					Subnet, Gateway string
				} `json:"ranges"`
			} `json:"ipam"`
			Capabilities map[string]bool `json:"capabilities"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(data, &conf); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, data)
	}
	if conf.CNIVersion != "0.4.0" || conf.Name != "kubeforge" || len(conf.Plugins) != 2 {
		t.Fatalf("conf %+v", conf)
	}
	br := conf.Plugins[0]
	if br.Type != "bridge" || br.Bridge != "cni0" || !br.IsGateway || br.IPMasq == nil || *br.IPMasq || br.MTU != 1450 {
		t.Errorf("bridge plugin %+v", br)
	}
	if br.IPAM.Type != "host-local" || len(br.IPAM.Ranges) != 1 || br.IPAM.Ranges[0][0].Subnet != "10.244.3.0/24" || br.IPAM.Ranges[0][0].Gateway != "10.244.3.1" {
		t.Errorf("ipam %+v", br.IPAM)
	}
	if pm := conf.Plugins[1]; pm.Type != "portmap" || !pm.Capabilities["portMappings"] {
		t.Errorf("portmap plugin %+v", pm)
	}
	if _, err := Conflist(Params{Network: params.Network}); err == nil {
		t.Error("incomplete params accepted")
	}
}

func TestSubnetEnvRoundTrip(t *testing.T) {
	env := string(SubnetEnv(params, true))
	want := "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	if env != want {
		t.Fatalf("subnet.env:\n%s\nwant:\n%s", env, want)
	}
	sub, mtu, err := ParseSubnetEnv([]byte(env))
	if err != nil || sub != params.Subnet || mtu != 1450 {
		t.Fatalf("parse: %v %d %v", sub, mtu, err)
	}
	if _, _, err := ParseSubnetEnv([]byte("FLANNEL_NETWORK=10.244.0.0/16\n")); err == nil || !strings.Contains(err.Error(), "FLANNEL_SUBNET") {
		t.Fatalf("no subnet: %v", err)
	}
}

func TestWriteFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "net.d", "10-kubeforge.conflist")
	if changed, err := WriteFile(p, []byte("a"), 0o644); err != nil || !changed {
		t.Fatalf("first write: %v %v", changed, err)
	}
	if changed, err := WriteFile(p, []byte("a"), 0o644); err != nil || changed {
		t.Fatalf("same content: %v %v", changed, err)
	}
	if changed, err := WriteFile(p, []byte("b"), 0o644); err != nil || !changed {
		t.Fatalf("new content: %v %v", changed, err)
	}
	fi, _ := os.Stat(p)
	data, _ := os.ReadFile(p)
	if string(data) != "b" || fi.Mode().Perm() != 0o644 {
		t.Fatalf("file %q mode %v", data, fi.Mode())
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("temp files left: %v", entries)
	}
}
