package certs

import (
	"slices"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

func TestSpecFromConfig(t *testing.T) {
	c := config.Default()
	c.Spec.Certificates.CertSANs = []string{"api.example.com"}
	c.Spec.Certificates.KeyAlgorithm = config.KeyECDSAP256
	s, err := SpecFromConfig(c, "node01")
	if err != nil {
		t.Fatal(err)
	}
	if s.NodeName != "node01" || s.AdvertiseAddress != "192.168.161.152" || s.ControlPlaneEndpoint != "192.168.161.151:6443" {
		t.Errorf("node/endpoint: %+v", s)
	}
	if s.KeyAlgorithm != ECDSAP256 || s.CAValidity != 87600*time.Hour || s.Validity != 8760*time.Hour {
		t.Errorf("certificates: %s %s %s", s.KeyAlgorithm, s.CAValidity, s.Validity)
	}
	if !slices.Equal(hostNames(s.EtcdHosts), []string{"master01", "node01", "node02"}) || !slices.Equal(hostNames(s.ControlPlaneHosts), []string{"master01"}) {
		t.Errorf("hosts: etcd %v control plane %v", s.EtcdHosts, s.ControlPlaneHosts)
	}
	if !slices.Equal(s.ExtraAPIServerSANs, []string{"api.example.com"}) || s.ClusterName != c.Metadata.Name {
		t.Errorf("SANs %v cluster %q", s.ExtraAPIServerSANs, s.ClusterName)
	}
	if _, err := SpecFromConfig(c, "nobody"); err == nil {
		t.Error("unknown host accepted")
	}
	// Every kubeforge KeyAlgorithm of the config is one certs accepts.
	for _, a := range config.KeyAlgorithms {
		if _, err := KeyAlgorithm(a).keyRequest(); err != nil {
			t.Errorf("config key algorithm %q: %v", a, err)
		}
	}
}
