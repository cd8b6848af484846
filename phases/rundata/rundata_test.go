package rundata

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// fakeHost only implements what New and Close touch; anything else would panic on
// the nil embedded interface, which is what a test wants to hear about.
type fakeHost struct {
	host.Host
	name   string
	closed int
}

func (h *fakeHost) Name() string { return h.name }
func (h *fakeHost) Close() error { h.closed++; return errors.New("connection reset") }

func hostname(name string) func() (string, error) {
	return func() (string, error) { return name, nil }
}

func TestNewDefaultsAndHostnameNodeName(t *testing.T) {
	var out bytes.Buffer
	n, err := New(context.Background(), Flags{ConfigPath: "cluster.yaml"}, Options{Out: &out, Hostname: hostname("Node-1.Lab\n")})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	abs, _ := filepath.Abs("cluster.yaml")
	for _, c := range []struct{ name, got, want string }{
		{"node name", n.NodeName(), "node-1.lab"},
		{"bundle", n.BundleDir(), DefaultBundleDir},
		{"cert dir", n.CertDir(), DefaultCertDir},
		{"kubeconfig dir", n.KubeconfigDir(), DefaultKubeconfigDir},
		{"config", n.ConfigPath(), abs},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	n.Logger().Printf("hello")
	if out.String() != "hello\n" {
		t.Errorf("logger wrote %q to Options.Out", out.String())
	}
	if n.Host() != nil {
		t.Error("host opened without OpenHost")
	}
}

func TestNewRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		flags Flags
		want  string
	}{
		{Flags{NodeName: "Node_1"}, `--node-name "Node_1" is not a valid node name`},
		{Flags{NodeName: "n1", CertDir: "pki"}, `--cert-dir "pki": must be an absolute path`},
		{Flags{NodeName: "n1", BundleDir: "./bundle"}, `--bundle "./bundle": must be an absolute path`},
		{Flags{NodeName: "n1", KubeconfigDir: "etc"}, `--kubeconfig-dir "etc": must be an absolute path`},
	} {
		opened := false
		_, err := New(context.Background(), tc.flags, Options{
			Out:      &bytes.Buffer{},
			OpenHost: func(string) (host.Host, error) { opened = true; return &fakeHost{}, nil },
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.flags, err, tc.want)
		}
		if opened {
			t.Errorf("%+v: host opened despite invalid flags", tc.flags)
		}
	}
	_, err := New(context.Background(), Flags{}, Options{Hostname: func() (string, error) { return "", errors.New("uts") }})
	if err == nil || !strings.Contains(err.Error(), "--node-name not given") {
		t.Errorf("got %v", err)
	}
}

func TestHostLifecycle(t *testing.T) {
	h := &fakeHost{name: "cp1"}
	var openedFor string
	n, err := New(context.Background(), Flags{NodeName: "cp1", CertDir: "/tmp/pki/"}, Options{
		Out:      &bytes.Buffer{},
		OpenHost: func(name string) (host.Host, error) { openedFor = name; return h, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if openedFor != "cp1" || n.Host() != h {
		t.Fatalf("host opened for %q, Host() = %v", openedFor, n.Host())
	}
	if n.CertDir() != "/tmp/pki" {
		t.Errorf("cert dir not cleaned: %q", n.CertDir())
	}
	if n.Context().Err() != nil {
		t.Fatal("context done before the run")
	}
	err = n.Close()
	if err == nil || !strings.Contains(err.Error(), "node cp1: close host: connection reset") {
		t.Errorf("close error %v", err)
	}
	if n.Close() == nil || h.closed != 1 {
		t.Errorf("host closed %d times; a second Close must not close it again but keep the error", h.closed)
	}
	if n.Context().Err() == nil {
		t.Error("context still live after Close")
	}

	_, err = New(context.Background(), Flags{NodeName: "w1"}, Options{
		OpenHost: func(string) (host.Host, error) { return nil, errors.New("dial tcp: refused") },
	})
	if err == nil || err.Error() != "node w1: open host: dial tcp: refused" {
		t.Errorf("open error %v", err)
	}
}

func TestFrom(t *testing.T) {
	n, err := New(context.Background(), Flags{NodeName: "n1"}, Options{Out: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if d, err := From(n, "certs"); err != nil || d.NodeName() != "n1" {
		t.Errorf("From(*Node) = %v, %v", d, err)
	}
	if _, err := From("not data", "certs/ca"); err == nil || !strings.Contains(err.Error(), "phase certs/ca: run data is string") {
		t.Errorf("got %v", err)
	}
}
