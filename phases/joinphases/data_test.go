package joinphases

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// TestTakeSecrets: the secrets come from the environment when the flags are
// empty, the flags win otherwise, and afterwards neither variable is in this
// process's environment nor in a child's.
func TestTakeSecrets(t *testing.T) {
	t.Setenv(TokenEnv, "abcdef.0123456789abcdef")
	t.Setenv(CertificateKeyEnv, strings.Repeat("ab", 32))
	tok, key := TakeSecrets("", "")
	if tok != "abcdef.0123456789abcdef" || key != strings.Repeat("ab", 32) {
		t.Errorf("from the environment: %q %q", tok, key)
	}
	for _, v := range []string{TokenEnv, CertificateKeyEnv} {
		if _, ok := os.LookupEnv(v); ok {
			t.Errorf("$%s is still set", v)
		}
	}
	out, err := exec.Command("env").Output()
	if err != nil {
		t.Fatal(err)
	}
	// Only the two secrets: the test command itself exports other KUBEFORGE_*
	// variables (the bundle, the lab).
	if strings.Contains(string(out), "0123456789abcdef") || strings.Contains(string(out), TokenEnv+"=") || strings.Contains(string(out), CertificateKeyEnv+"=") {
		t.Errorf("a child process inherits the secrets:\n%s", out)
	}
	t.Setenv(TokenEnv, "zzzzzz.zzzzzzzzzzzzzzzz")
	if tok, _ := TakeSecrets("abcdef.0123456789abcdef", ""); tok != "abcdef.0123456789abcdef" {
		t.Errorf("the flag did not win: %q", tok)
	}
	if _, ok := os.LookupEnv(TokenEnv); ok {
		t.Error("$KUBEFORGE_TOKEN is still set when the flag was given")
	}
}

// TestJoinFromConfigAlone: `join --config` without ENDPOINT builds join's own
// run data; the phases that work from the file get its configuration, and the
// ones that need what only discovery brings fail with a message naming the
// command that supplies it.
func TestJoinFromConfigAlone(t *testing.T) {
	n, err := rundata.New(context.Background(), rundata.Flags{ConfigPath: "../../docs/examples/seed-topology.yaml", NodeName: "node01"}, rundata.Options{
		OpenHost: func(string) (host.Host, error) { return fakehost.New("node01"), nil },
		Identity: func() (string, []net.IP, error) { return "node01", nil, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	d, err := NewData(n, Flags{})
	if err != nil {
		t.Fatalf("join --config without ENDPOINT: %v", err)
	}
	if d.Config() != nil || d.Node() != nil {
		t.Error("Config and Node are set before the data is resolved: a getter ran discovery")
	}
	rd, err := rundata.From(d, "preflight")
	if err != nil {
		t.Fatalf("resolving join from --config: %v", err)
	}
	if rd.Config() == nil || rd.Node() == nil || rd.Node().Name != "node01" || rd.Node().Address != "192.168.161.152" {
		t.Fatalf("resolved to %+v: want node01 from the file", rd.Node())
	}
	if _, err := rd.Discovered(); !errors.Is(err, ErrNoEndpoint) || !strings.Contains(err.Error(), "kubeforge join ENDPOINT --token") {
		t.Errorf("Discovered without ENDPOINT: %v; want ErrNoEndpoint naming the join command", err)
	}
	// The discovery phase itself reports that nothing was discovered.
	err = discoveryPhase().Run(d)
	if !errors.Is(err, workflow.ErrUnchanged) || !strings.Contains(err.Error(), "from --config") {
		t.Errorf("discovery phase without ENDPOINT: %v", err)
	}
}

// TestGettersDoNotDiscover: Config and Node only read; discovery (network) runs
// when rundata.From resolves the data for a phase, and its failure fails that
// phase rather than vanishing into a nil configuration.
func TestGettersDoNotDiscover(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := l.Addr().String()
	l.Close() // nothing answers there now
	d, err := NewData(testNode(t), Flags{Endpoint: endpoint, Token: "abcdef.0123456789abcdef",
		CAHashes: []string{"sha256:" + strings.Repeat("ab", 32)}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if d.Config() != nil || d.Node() != nil || d.res != nil || d.err != nil {
		t.Fatal("a getter ran discovery")
	}
	if _, err := rundata.From(d, "kubelet"); err == nil || !strings.Contains(err.Error(), endpoint) {
		t.Errorf("resolving against a closed endpoint: %v; want an error naming %s", err, endpoint)
	}
	if d.Config() != nil {
		t.Error("a failed discovery left a configuration behind")
	}
}
