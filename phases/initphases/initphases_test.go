package initphases

import (
	"slices"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

func TestPhaseTreeFollowsTheCatalogs(t *testing.T) {
	r := workflow.NewRunner()
	for _, p := range Phases() {
		r.AppendPhase(p)
	}
	names, err := r.PhaseNames()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs.CertNames() {
		if !slices.Contains(names, "certs/"+c) {
			t.Errorf("no phase certs/%s", c)
		}
	}
	for _, k := range certs.KubeconfigNames() {
		if !slices.Contains(names, "kubeconfig/"+strings.TrimSuffix(k, ".conf")) {
			t.Errorf("no phase for %s", k)
		}
	}
	// The order the control plane needs: PKI before etcd before the units, the
	// API phases after the wait, the join command last.
	order := []string{"preflight", "install-binaries", "certs", "kubeconfig", "etcd", "control-plane", "wait-control-plane",
		"upload-config", "upload-certs", "bootstrap-token", "show-join-command"}
	last := -1
	for _, n := range order {
		i := slices.Index(names, n)
		if i <= last {
			t.Errorf("phase %s at %d, after %d", n, i, last)
		}
		last = i
	}
}

func TestUploadCertsKnowsWhenItRunsAlone(t *testing.T) {
	r := &run{}
	if r.started("upload-certs") {
		t.Error("first phase of a process thinks others ran")
	}
	r = &run{}
	r.started("preflight")
	if !r.started("upload-certs") {
		t.Error("within a full init, upload-certs thinks it runs alone")
	}
}

func TestLineLoggerDropsTheTag(t *testing.T) {
	var out strings.Builder
	l := workflow.NewLogger(&out)
	w := &lineLogger{l: l}
	_, _ = w.Write([]byte("[certs] Generating \"ca\" certificate and key\n[kubeconfig] Writing"))
	_, _ = w.Write([]byte(" \"admin.conf\"\nplain line\n[not a tag line\n"))
	want := "Generating \"ca\" certificate and key\nWriting \"admin.conf\"\nplain line\n[not a tag line\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}
