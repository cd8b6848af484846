package cmd

import (
	"strings"
	"testing"
)

// TestJoinConfigWithoutEndpoint: `join --config` without ENDPOINT, as the help
// promises, runs the join phases from the configuration instead of failing on
// the run data's type (it used to: "run data is *rundata.Node, not join's").
func TestJoinConfigWithoutEndpoint(t *testing.T) {
	out, err := runRoot(t, "", "join", "phase", "discovery", "--config", seedConfig(t), "--node-name", "node01", "--dry-run")
	if err != nil {
		t.Fatalf("join phase discovery --config: %v\n%s", err, out)
	}
	if !strings.Contains(out, "no ENDPOINT") || !strings.Contains(out, "node01") {
		t.Errorf("discovery does not say it used --config:\n%s", out)
	}
	// Without ENDPOINT and without --config there is nothing to join.
	if _, err := runRoot(t, "", "join", "phase", "discovery", "--node-name", "node01", "--dry-run"); err == nil || !strings.Contains(err.Error(), "--config is required") {
		t.Errorf("join without ENDPOINT and --config: %v", err)
	}
}

// A phase that needs discovery's result says so instead of writing an empty CA.
func TestJoinConfigWithoutEndpointCertsNeedDiscovery(t *testing.T) {
	_, err := runRoot(t, "", "join", "phase", "certs", "--config", seedConfig(t), "--node-name", "node01", "--dry-run")
	if err == nil || !strings.Contains(err.Error(), "kubeforge join ENDPOINT") {
		t.Errorf("join phase certs --config without ENDPOINT: %v", err)
	}
}
