package noderuntime

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
	"github.com/kubeforge/kubeforge/components/etcd"
)

var cpOptions = RunOptions{
	Roles:              []config.Role{config.RoleControlPlane, config.RoleEtcd},
	OverlayConfig:      "/etc/kubeforge/overlay.yaml",
	ApproverKubeconfig: "/etc/kubernetes/csr-approver.conf",
	APIServerCert:      "/etc/kubernetes/pki/apiserver.crt",
	APILBKubeconfig:    "/etc/kubernetes/kube-proxy.conf",
	APILBListen:        DefaultAPILBListen,
	StatusAddress:      DefaultStatusAddress,
}

func TestUnitLoadsOnSystemd219(t *testing.T) {
	u := Unit(cpOptions.Args(), "sha256:00")
	if err := etcd.LintUnit(u); err != nil {
		t.Fatalf("unit uses directives systemd 219 does not load: %v\n%s", err, u)
	}
	for _, want := range []string{"Type=notify", "ExecStart=/usr/local/bin/kubeforge node run --roles=control-plane,etcd --overlay-config", "--approver-kubeconfig=/etc/kubernetes/csr-approver.conf", "--apilb-listen=127.0.0.1:6444", "Restart=always", "StartLimitInterval=0", "Inputs: sha256:00"} {
		if !strings.Contains(string(u), want) {
			t.Errorf("unit lacks %q:\n%s", want, u)
		}
	}
	worker := cpOptions
	worker.Roles = []config.Role{config.RoleWorker}
	if w := string(Unit(worker.Args(), "")); strings.Contains(w, "--approver-kubeconfig") {
		t.Errorf("a worker's unit names the approver's credential:\n%s", w)
	}
	if got := strings.Join(worker.Features(), ","); got != "overlay,apilb" {
		t.Errorf("worker features %s", got)
	}
	if got := strings.Join(cpOptions.Features(), ","); got != "overlay,csr-approver,apilb" {
		t.Errorf("control-plane features %s", got)
	}
	// The overlay phase skipped (another CNI): no overlay agent, and the
	// flag says so explicitly rather than falling back to the default path.
	noOverlay := cpOptions
	noOverlay.OverlayConfig = ""
	if got := strings.Join(noOverlay.Features(), ","); got != "csr-approver,apilb" {
		t.Errorf("features without an overlay %s", got)
	}
	if !slices.Contains(noOverlay.Args(), "--overlay-config=") || slices.Contains(noOverlay.Inputs(), "") {
		t.Errorf("without an overlay: args %v inputs %v", noOverlay.Args(), noOverlay.Inputs())
	}
}

// TestInstallUpgradesFromPerFeatureUnits: a host running the two old units
// gets them stopped, disabled and deleted before the one runtime starts; a
// second run changes nothing; a changed input restarts the runtime.
func TestInstallUpgradesFromPerFeatureUnits(t *testing.T) {
	ctx := context.Background()
	h := fakehost.New("master01")
	for _, u := range LegacyUnits {
		h.UnitFiles[u] = &fakehost.Unit{Content: []byte("[Service]\nExecStart=/usr/local/bin/kubeforge old\n"), Enabled: true, Active: true}
	}
	h.SetFile("/etc/kubeforge/overlay.yaml", "nodeName: master01\n", 0o600)
	h.SetFile("/etc/kubernetes/csr-approver.conf", "approver credential", 0o600)
	exe := filepath.Join(t.TempDir(), "kubeforge")
	if err := os.WriteFile(exe, []byte("new kubeforge"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := InstallOptions{Host: h, Args: cpOptions.Args(), Inputs: cpOptions.Inputs(), Executable: exe}

	changed, err := Install(ctx, o)
	if err != nil || !changed {
		t.Fatalf("Install: %v %v", changed, err)
	}
	want := []string{
		"stop kubeforge-overlay.service", "disable kubeforge-overlay.service", "remove-unit kubeforge-overlay.service",
		"stop kubeforge-csr-approver.service", "disable kubeforge-csr-approver.service", "remove-unit kubeforge-csr-approver.service",
		"write /usr/local/bin/kubeforge 0755",
		"unit kubeforge-node.service", "enable kubeforge-node.service", "start kubeforge-node.service",
	}
	if got := h.Changes(); !slices.Equal(got, want) {
		t.Errorf("changes:\n got %q\nwant %q", got, want)
	}
	for _, u := range LegacyUnits {
		if _, ok := h.UnitFiles[u]; ok {
			t.Errorf("%s still there", u)
		}
	}
	if u := h.UnitFiles[UnitName]; u == nil || !u.Active || !u.Enabled {
		t.Fatalf("%s not enabled and active: %+v", UnitName, u)
	}
	if strings.Contains(string(h.UnitFiles[UnitName].Content), "approver credential") {
		t.Error("the unit carries a credential")
	}

	// Converged: nothing changes (the binary compares by its sha256).
	h.Commands[host.QuoteArgv([]string{"sha256sum", BinaryPath})] = host.Result{Stdout: []byte(fmt.Sprintf("%x  %s\n", sha256.Sum256([]byte("new kubeforge")), BinaryPath))}
	h.ResetChanges()
	if changed, err := Install(ctx, o); err != nil || changed {
		t.Errorf("second Install: changed %v, %v; changes %q", changed, err, h.Changes())
	}
	if c := h.Changes(); len(c) != 0 {
		t.Errorf("second Install changed %q", c)
	}

	// A renewed approver credential restarts the runtime.
	h.SetFile("/etc/kubernetes/csr-approver.conf", "renewed credential", 0o600)
	h.ResetChanges()
	if changed, err := Install(ctx, o); err != nil || !changed {
		t.Fatalf("Install after a changed input: %v %v", changed, err)
	}
	if got, want := h.Changes(), []string{"unit kubeforge-node.service", "restart kubeforge-node.service"}; !slices.Equal(got, want) {
		t.Errorf("changes after a changed input:\n got %q\nwant %q", got, want)
	}

	// Reset takes it away; a second reset has nothing to do.
	h.ResetChanges()
	removed, err := Remove(ctx, h, nil)
	if err != nil || !slices.Equal(removed, []string{UnitName}) {
		t.Errorf("Remove: %v %v", removed, err)
	}
	if removed, err := Remove(ctx, h, nil); err != nil || len(removed) != 0 {
		t.Errorf("second Remove: %v %v", removed, err)
	}
}
