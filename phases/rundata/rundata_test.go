package rundata

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/dryrun"
	"github.com/kubeforge/kubeforge/bootstrap/host/local"
	"github.com/kubeforge/kubeforge/bootstrap/host/owndirs"
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

func identity(hostname string, addrs ...string) func() (string, []net.IP, error) {
	return func() (string, []net.IP, error) {
		var ips []net.IP
		for _, a := range addrs {
			ips = append(ips, net.ParseIP(a))
		}
		return hostname, ips, nil
	}
}

func fakeOpen(h *fakeHost, openedFor *string) func(string) (host.Host, error) {
	return func(name string) (host.Host, error) { *openedFor = name; return h, nil }
}

// writeConfig writes the default (seed) cluster config: master01, node01, node02.
func writeConfig(t *testing.T) string {
	t.Helper()
	data, err := config.Marshal(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewWithoutConfigUsesHostname(t *testing.T) {
	var out bytes.Buffer
	var opened string
	n, err := New(context.Background(), Flags{}, Options{
		Out: &out, Identity: identity("Node-1.Lab\n"), OpenHost: fakeOpen(&fakeHost{name: "x"}, &opened),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for _, c := range []struct{ name, got, want string }{
		{"node name", n.NodeName(), "node-1.lab"},
		{"opened host", opened, "node-1.lab"},
		{"bundle", n.BundleDir(), DefaultBundleDir},
		{"cert dir", n.CertDir(), DefaultCertDir},
		{"kubeconfig dir", n.KubeconfigDir(), DefaultKubeconfigDir},
		{"config", n.ConfigPath(), ""},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if n.Config() != nil || n.Node() != nil {
		t.Error("config present without --config")
	}
	n.Logger().Printf("hello")
	if out.String() != "hello\n" {
		t.Errorf("logger wrote %q to Options.Out", out.String())
	}
}

func TestNewResolvesNodeFromConfig(t *testing.T) {
	path := writeConfig(t)
	for _, tc := range []struct {
		name     string
		flags    Flags
		identity func() (string, []net.IP, error)
		want     string
	}{
		{"by flag", Flags{NodeName: "node02"}, func() (string, []net.IP, error) {
			t.Error("identity consulted although --node-name was given")
			return "", nil, errors.New("unused")
		}, "node02"},
		{"by hostname", Flags{}, identity("master01.example.com", "127.0.0.1"), "master01"},
		{"by address", Flags{}, identity("unrelated", "10.0.0.9", "192.168.161.152"), "node01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.flags.ConfigPath = path
			var opened string
			n, err := New(context.Background(), tc.flags, Options{
				Out: &bytes.Buffer{}, RequireConfig: true, Identity: tc.identity, OpenHost: fakeOpen(&fakeHost{}, &opened),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if n.NodeName() != tc.want || n.Node() == nil || n.Node().Name != tc.want || opened != tc.want {
				t.Errorf("node %q (config node %v, opened %q), want %q", n.NodeName(), n.Node(), opened, tc.want)
			}
			if n.Config() == nil || len(n.Config().Spec.Hosts) != 3 {
				t.Errorf("config not loaded: %+v", n.Config())
			}
		})
	}
}

func TestNewRejectsBadInputBeforeOpeningHost(t *testing.T) {
	path := writeConfig(t)
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	for _, tc := range []struct {
		name  string
		flags Flags
		opts  Options
		want  string
	}{
		{"bad node name", Flags{NodeName: "Node_1"}, Options{}, `--node-name "Node_1" is not a valid node name`},
		{"relative cert dir", Flags{NodeName: "n1", CertDir: "pki"}, Options{}, `--cert-dir "pki": must be an absolute path`},
		{"relative bundle", Flags{NodeName: "n1", BundleDir: "./bundle"}, Options{}, `--bundle "./bundle": must be an absolute path`},
		{"relative kubeconfig dir", Flags{NodeName: "n1", KubeconfigDir: "etc"}, Options{}, `--kubeconfig-dir "etc": must be an absolute path`},
		{"kubeconfig dir /etc", Flags{NodeName: "n1", KubeconfigDir: "/etc"}, Options{}, `--kubeconfig-dir "/etc": /etc is a system directory`},
		{"cert dir /var/lib", Flags{NodeName: "n1", CertDir: "/var/lib/"}, Options{}, `--cert-dir "/var/lib": /var/lib is a system directory`},
		{"cert dir /", Flags{NodeName: "n1", CertDir: "/"}, Options{}, `--cert-dir "/": must not be the root directory`},
		{"config required", Flags{NodeName: "n1"}, Options{RequireConfig: true}, "--config is required"},
		{"missing config", Flags{ConfigPath: missing}, Options{}, missing},
		{"node not in config", Flags{ConfigPath: path, NodeName: "node09"}, Options{}, `--node-name "node09" is not a host of cluster`},
		{"machine not in config", Flags{ConfigPath: path}, Options{Identity: identity("laptop", "127.0.0.1")}, path + ": this machine"},
		{"no hostname", Flags{}, Options{Identity: func() (string, []net.IP, error) { return "", nil, errors.New("uts") }}, "--node-name not given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opened string
			tc.opts.Out = &bytes.Buffer{}
			tc.opts.OpenHost = fakeOpen(&fakeHost{}, &opened)
			_, err := New(context.Background(), tc.flags, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			if opened != "" {
				t.Error("host opened despite invalid input")
			}
		})
	}
}

func TestHostLifecycle(t *testing.T) {
	h := &fakeHost{name: "cp1"}
	var opened string
	n, err := New(context.Background(), Flags{NodeName: "cp1", CertDir: "/tmp/pki/"}, Options{Out: &bytes.Buffer{}, OpenHost: fakeOpen(h, &opened)})
	if err != nil {
		t.Fatal(err)
	}
	if owndirs.Unwrap(n.Host()) != h {
		t.Fatalf("Host() = %v", n.Host())
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

// With the default (local) host, --dry-run must record a write instead of making
// it and print the plan when the run data is closed.
func TestDryRunWrapsLocalHost(t *testing.T) {
	target := filepath.Join(t.TempDir(), "etc", "kubernetes", "admin.conf")
	var out bytes.Buffer
	n, err := New(context.Background(), Flags{NodeName: "cp1", DryRun: true}, Options{Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := owndirs.Unwrap(n.Host()).(*dryrun.Host); !ok {
		t.Fatalf("dry-run host is %T", owndirs.Unwrap(n.Host()))
	}
	err = n.Host().WriteFile(n.Context(), target, []byte("apiVersion: v1\n"), host.WriteOptions{Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("dry run wrote %s (stat: %v)", target, err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "planned change") || !strings.Contains(out.String(), target) {
		t.Errorf("plan not printed on Close:\n%s", out.String())
	}

	n, err = New(context.Background(), Flags{NodeName: "cp1"}, Options{Out: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, ok := owndirs.Unwrap(n.Host()).(*local.Host); !ok {
		t.Errorf("default host is %T, want the local host", owndirs.Unwrap(n.Host()))
	}
}

func TestFrom(t *testing.T) {
	n, err := New(context.Background(), Flags{NodeName: "n1"}, Options{Out: &bytes.Buffer{}, OpenHost: fakeOpen(&fakeHost{}, new(string))})
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
