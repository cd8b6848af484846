package joinphases

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
	"github.com/kubeforge/kubeforge/components/discovery"
	"github.com/kubeforge/kubeforge/phases/rundata"
)

func testNode(t *testing.T) *rundata.Node {
	t.Helper()
	n, err := rundata.New(context.Background(), rundata.Flags{NodeName: "node01"}, rundata.Options{
		OpenHost: func(string) (host.Host, error) { return fakehost.New("node01"), nil },
		Identity: func() (string, []net.IP, error) { return "node01", nil, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// TestNewDataRefusesBadInputOffline: malformed join input is refused before any
// phase runs and without the network.
func TestNewDataRefusesBadInputOffline(t *testing.T) {
	hash := "sha256:" + strings.Repeat("ab", 32)
	good := Flags{Endpoint: "192.168.161.151:6443", Token: "abcdef.0123456789abcdef", CAHashes: []string{hash}}
	if _, err := NewData(testNode(t), good); err != nil {
		t.Fatalf("good input: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Flags)
		want string
	}{
		{"etcd without key", func(f *Flags) { f.Etcd = true }, "--certificate-key"},
		{"control plane without key", func(f *Flags) { f.ControlPlane = true }, "--certificate-key"},
		{"control plane with malformed key", func(f *Flags) { f.ControlPlane, f.CertificateKey = true, "zz" }, "--certificate-key must be"},
		{"no endpoint", func(f *Flags) { f.Endpoint = "" }, "endpoint"},
		{"endpoint without port", func(f *Flags) { f.Endpoint = "nohost" }, "host:port"},
		{"malformed CA hash", func(f *Flags) { f.CAHashes = []string{"sha256:xyz"} }, "64 hex digits"},
		{"no CA hash", func(f *Flags) { f.CAHashes = nil }, "is required"},
		{"malformed token", func(f *Flags) { f.Token = "not-a-token" }, "[a-z0-9]{6}"},
		{"etcd with short key", func(f *Flags) { f.Etcd, f.CertificateKey = true, "short" }, "--certificate-key must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := good
			tc.mod(&f)
			_, err := NewData(testNode(t), f)
			if !errors.Is(err, discovery.ErrBadInput) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%+v: %v, want a bad-input error about %q", f, err, tc.want)
			}
		})
	}
	// A control-plane join with its key is accepted (the key is checked by
	// discovery, against the upload).
	cp := good
	cp.ControlPlane, cp.CertificateKey = true, strings.Repeat("cd", 32)
	if _, err := NewData(testNode(t), cp); err != nil {
		t.Errorf("control-plane join: %v", err)
	}
	// The environment supplies what the flags leave out.
	t.Setenv(TokenEnv, "abcdef.0123456789abcdef")
	f := good
	f.Token = ""
	d, err := NewData(testNode(t), f)
	if err != nil || d.JoinFlags().Token != "abcdef.0123456789abcdef" {
		t.Errorf("token from the environment: %v", err)
	}
}

func TestCertFilesFor(t *testing.T) {
	up := map[string][]byte{}
	for _, f := range []string{"ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt", "etcd/ca.key", "kubelet-serving-ca.crt", "kubelet-serving-ca.key"} {
		up[f] = []byte(f)
	}
	// What the etcd member hand-over holds for one host.
	member := map[string][]byte{"kubeforge/etcd-join.crt": []byte("j"), "kubeforge/etcd-join.key": []byte("k")}
	for _, f := range certs.EtcdMemberHandoverFiles {
		member[f] = []byte(f)
	}
	worker := &config.Host{Name: "w", Roles: []config.Role{config.RoleWorker}}
	etcd := &config.Host{Name: "e", Roles: []config.Role{config.RoleWorker, config.RoleEtcd}}
	cp := &config.Host{Name: "c", Roles: []config.Role{config.RoleControlPlane}}
	if f, err := certFilesFor(worker, up); err != nil || len(f) != 0 {
		t.Errorf("a worker gets %v %v: no CA key belongs on it", f, err)
	}
	f, err := certFilesFor(etcd, member)
	if err != nil || len(f) != len(certs.EtcdMemberHandoverFiles) {
		t.Errorf("an etcd member gets %v %v: its member certificates", f, err)
	}
	for rel := range f {
		if strings.HasSuffix(rel, "ca.key") || strings.HasPrefix(rel, "kubeforge/") {
			t.Errorf("an etcd member would write %s to disk", rel)
		}
	}
	if f, err := certFilesFor(cp, up); err != nil || len(f) != len(certs.SharedFiles) || f["kubelet-serving-ca.key"] == nil {
		t.Errorf("a control-plane host gets %d files %v", len(f), err)
	}
	// The old hand-over (the etcd CA with its key) is not what a member takes.
	if _, err := certFilesFor(etcd, up); err == nil || !strings.Contains(err.Error(), "etcd/server.crt") {
		t.Errorf("an etcd member handed the CA instead of its certificates: %v", err)
	}
}
