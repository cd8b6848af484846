package status

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
	"github.com/kubeforge/kubeforge/components/etcd/snapshot"
	"github.com/kubeforge/kubeforge/components/overlay"
	"github.com/kubeforge/kubeforge/components/renewal"
)

// unitsHost is a fake host whose units report the states a test gives them
// (the shared fake knows only active and inactive).
type unitsHost struct {
	*fakehost.Host
	st map[string]host.UnitStatus
}

func (h unitsHost) Units() host.Units { return statusUnits{h.Host.Units(), h.st} }

type statusUnits struct {
	host.Units
	st map[string]host.UnitStatus
}

func (u statusUnits) Status(_ context.Context, name string) (host.UnitStatus, error) {
	if s, ok := u.st[name]; ok {
		s.Name, s.LoadState = name, "loaded"
		return s, nil
	}
	return host.UnitStatus{Name: name, LoadState: "not-found", ActiveState: "inactive"}, nil
}

var (
	running = host.UnitStatus{ActiveState: "active", SubState: "running", Enabled: "enabled"}
	waiting = host.UnitStatus{ActiveState: "active", SubState: "waiting", Enabled: "enabled"}
	dead    = host.UnitStatus{ActiveState: "inactive", SubState: "dead", Enabled: "static"}
	failed  = host.UnitStatus{ActiveState: "failed", SubState: "failed", Enabled: "enabled"}
)

func controlPlaneUnits() map[string]host.UnitStatus {
	return map[string]host.UnitStatus{
		"containerd.service": running, "etcd.service": running, "kube-apiserver.service": running,
		"kube-controller-manager.service": running, "kube-scheduler.service": running,
		"kubelet.service": running, "kube-proxy.service": running, overlay.UnitName: running,
		renewal.TimerName: waiting, renewal.ServiceName: dead,
		snapshot.TimerName: waiting, snapshot.ServiceName: dead,
	}
}

func cluster() *config.Cluster {
	c := &config.Cluster{}
	c.Metadata.Name = "kubernetes"
	c.Spec.Hosts = []config.Host{
		{Name: "master01", Address: "192.0.2.1", Roles: []config.Role{config.RoleControlPlane, config.RoleEtcd}},
		{Name: "node01", Address: "192.0.2.2", Roles: []config.Role{config.RoleWorker, config.RoleEtcd}},
	}
	c.Spec.Etcd.Backup.Dir = "/var/lib/kubeforge/etcd-snapshots"
	c.Spec.Certificates.AutoRenew.RenewBefore = "720h"
	return c
}

func healthyProbes() Probes {
	return Probes{
		Etcd: func(context.Context) (*Etcd, error) { return &Etcd{Members: 3, Healthy: 3, Leader: "master01"}, nil },
		Node: func(_ context.Context, name string) (*Node, error) {
			return &Node{Name: name, Ready: true, Nodes: 3}, nil
		},
		Overlay:   func(context.Context) (*Overlay, error) { return &Overlay{Subnet: "10.244.0.0/24", Peers: 2}, nil },
		Snapshots: func(string) ([]snapshot.Entry, error) { return nil, nil },
	}
}

// writeCA puts a CA certificate that expires at notAfter at <certDir>/ca.crt.
func writeCA(t *testing.T, h *fakehost.Host, certDir string, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: notAfter.Add(-365 * 24 * time.Hour), NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	h.SetFile(certDir+"/ca.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644)
}

func TestHostHealthy(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	fh := fakehost.New("master01")
	writeCA(t, fh, "/pki", now.Add(300*24*time.Hour))
	h := unitsHost{fh, controlPlaneUnits()}
	r, err := Host(context.Background(), Options{Host: h, Cluster: cluster(), NodeName: "master01", CertDir: "/pki", KcDir: "/kc",
		KubeforgeVer: "v1", Now: now, Probes: healthyProbes(), VersionCommands: map[string][]string{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) != 0 {
		t.Fatalf("problems on a healthy host: %q", r.Problems)
	}
	if len(r.Units) != len(controlPlaneUnits()) {
		t.Errorf("units: got %d, want %d: %+v", len(r.Units), len(controlPlaneUnits()), r.Units)
	}
	if r.Etcd == nil || r.Node == nil || r.Overlay == nil || r.Backup == nil || r.Certificates == nil {
		t.Fatalf("a section is missing: %+v", r)
	}
	var b bytes.Buffer
	if err := r.WriteText(&b, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"host master01 (control-plane, etcd)", "etcd: 3/3 members healthy, leader master01",
		"node: master01 Ready; 3 Nodes, 0 not Ready", "overlay: subnet 10.244.0.0/24, 2 peers", "certificates: soonest ca in 300d", "problems: none"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}

func TestHostProblems(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		setup func(units map[string]host.UnitStatus, p *Probes, fh *fakehost.Host)
		want  string
	}{
		{"a failed service", func(u map[string]host.UnitStatus, _ *Probes, _ *fakehost.Host) { u["kubelet.service"] = failed },
			"kubelet.service: failed (journalctl -u kubelet.service)"},
		{"a stopped service", func(u map[string]host.UnitStatus, _ *Probes, _ *fakehost.Host) { u["etcd.service"] = dead },
			"etcd.service: inactive/dead, want active"},
		{"a failed backup run", func(u map[string]host.UnitStatus, _ *Probes, _ *fakehost.Host) { u[snapshot.ServiceName] = failed },
			snapshot.ServiceName + ": its last run failed"},
		{"an unhealthy etcd member", func(_ map[string]host.UnitStatus, p *Probes, _ *fakehost.Host) {
			p.Etcd = func(context.Context) (*Etcd, error) { return &Etcd{Members: 3, Healthy: 2, Leader: "master01"}, nil }
		}, "etcd: 2 of 3 members healthy"},
		{"etcd unreachable", func(_ map[string]host.UnitStatus, p *Probes, _ *fakehost.Host) {
			p.Etcd = func(context.Context) (*Etcd, error) { return nil, errors.New("connection refused") }
		}, "etcd: connection refused"},
		{"a Node not Ready", func(_ map[string]host.UnitStatus, p *Probes, _ *fakehost.Host) {
			p.Node = func(_ context.Context, name string) (*Node, error) {
				return &Node{Name: name, Ready: true, Nodes: 3, NotReady: []string{"node02"}}, nil
			}
		}, "nodes not Ready: node02"},
		{"the overlay agent down", func(_ map[string]host.UnitStatus, p *Probes, _ *fakehost.Host) {
			p.Overlay = func(context.Context) (*Overlay, error) {
				return nil, errors.New("overlay agent at 127.0.0.1:9473: refused")
			}
		}, "overlay: overlay agent at 127.0.0.1:9473: refused"},
		{"a certificate within the window", func(_ map[string]host.UnitStatus, _ *Probes, fh *fakehost.Host) {
			writeCA(t, fh, "/pki", now.Add(10*24*time.Hour))
		}, "certificates expiring within 720h0m0s: ca (2026-12-14T12:00:00Z) (kubeforge certs renew all)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fh := fakehost.New("master01")
			writeCA(t, fh, "/pki", now.Add(300*24*time.Hour))
			units, probes := controlPlaneUnits(), healthyProbes()
			tc.setup(units, &probes, fh)
			r, err := Host(context.Background(), Options{Host: unitsHost{fh, units}, Cluster: cluster(), NodeName: "master01",
				CertDir: "/pki", KcDir: "/kc", Now: now, Probes: probes, VersionCommands: map[string][]string{}})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Problems) != 1 || !strings.Contains(r.Problems[0], tc.want) {
				t.Fatalf("problems %q, want exactly one with %q", r.Problems, tc.want)
			}
		})
	}
}

// A joined host keeps no configuration: its roles come from its units, and a
// unit it does not have is not reported at all.
func TestHostWithoutConfiguration(t *testing.T) {
	units := map[string]host.UnitStatus{"containerd.service": running, "etcd.service": running,
		"kubelet.service": running, "kube-proxy.service": running, overlay.UnitName: running}
	etcdAsked := false
	p := healthyProbes()
	p.Etcd = func(context.Context) (*Etcd, error) {
		etcdAsked = true
		return &Etcd{Members: 3, Healthy: 3, Leader: "x"}, nil
	}
	r, err := Host(context.Background(), Options{Host: unitsHost{fakehost.New("node02"), units}, NodeName: "node02",
		CertDir: "/pki", KcDir: "/kc", Probes: p, VersionCommands: map[string][]string{}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Roles, ","); got != "worker (from its units),etcd (from its units)" {
		t.Errorf("roles %q", got)
	}
	if !etcdAsked || r.Backup != nil || len(r.Units) != len(units) || len(r.Problems) != 0 {
		t.Errorf("etcd asked %v, backup %+v, units %d, problems %q", etcdAsked, r.Backup, len(r.Units), r.Problems)
	}
}

func TestVersionOf(t *testing.T) {
	for line, want := range map[string]string{
		"Kubernetes v1.34.4":   "v1.34.4",
		"etcd Version: 3.6.16": "3.6.16",
		"containerd github.com/containerd/containerd/v2 v2.2.9 abc": "v2.2.9",
	} {
		if got := versionOf(line); got != want {
			t.Errorf("versionOf(%q) = %q, want %q", line, got, want)
		}
	}
}

func TestClusterTable(t *testing.T) {
	now := time.Now()
	reps := []HostReport{
		{Name: "master01", Report: &Report{Host: "master01", Roles: []string{"control-plane"}, Units: []Unit{{Name: "a", OK: true}},
			Etcd: &Etcd{Members: 3, Healthy: 3}, Node: &Node{Name: "master01", Ready: true}, Overlay: &Overlay{Peers: 2}, Problems: []string{}}},
		{Name: "node01", Report: &Report{Host: "node01", Units: []Unit{{Name: "a"}}, Problems: []string{"a: failed"}}},
		{Name: "node02", Err: errors.New("dial tcp: connection refused")},
	}
	var b bytes.Buffer
	if err := WriteClusterTable(&b, reps, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"master01  control-plane  1/1 ok", "3/3 healthy", "node01: a: failed", "node02: dial tcp: connection refused", "unreachable"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	if n := Problems(reps); n != 2 {
		t.Errorf("Problems = %d, want 2", n)
	}
}
