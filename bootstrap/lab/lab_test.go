package lab

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

func TestAddressPlan(t *testing.T) {
	_, subnet, _ := net.ParseCIDR("192.168.161.0/24")
	got, err := addressPlan(subnet, []string{"node02", "master01", "extra1", "node01", "master02", "extra2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"master02": "192.168.161.150", "master01": "192.168.161.151", "node01": "192.168.161.152",
		"node02": "192.168.161.153", "extra1": "192.168.161.154", "extra2": "192.168.161.155",
	}
	for n, a := range want {
		if got[n] != a {
			t.Errorf("%s: %s, want %s", n, got[n], a)
		}
	}
	// Existing hosts keep their addresses; a new host takes the next free one.
	got, err = addressPlan(subnet, []string{"master01", "extra3"}, map[string]string{"master01": "192.168.161.151", "x": "192.168.161.154"})
	if err != nil {
		t.Fatal(err)
	}
	if got["master01"] != "192.168.161.151" || got["extra3"] != "192.168.161.155" {
		t.Errorf("plan with existing hosts: %v", got)
	}
	_, wide, _ := net.ParseCIDR("10.0.0.0/16")
	if _, err := addressPlan(wide, []string{"a"}, nil); err == nil || !strings.Contains(err.Error(), "/24") {
		t.Errorf("a /16 lab subnet must be refused, got %v", err)
	}
}

func TestClusterConfigWithoutSeedNames(t *testing.T) {
	s := &State{Dir: "/tmp/lab", Subnet: "192.168.178.0/24", Hosts: []HostState{{Name: "hostlab01", Address: "192.168.178.154"}, {Name: "hostlab02", Address: "192.168.178.155"}}}
	c, err := s.ClusterConfig()
	if err != nil {
		t.Fatal(err)
	}
	h, _ := c.Host("hostlab01")
	if !h.HasRole(config.RoleControlPlane) || !h.HasRole(config.RoleEtcd) || !h.HasRole(config.RoleWorker) {
		t.Errorf("first host roles %v", h.Roles)
	}
}

func TestValidHostName(t *testing.T) {
	for _, ok := range []string{"master01", "node-1", "a"} {
		if err := validHostName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Master01", "-node", "node-", "node_1", "n.1", strings.Repeat("a", 41)} {
		if err := validHostName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestLabIDIsShortAndStable(t *testing.T) {
	a, b := labID("/var/lib/kubeforge/lab"), labID("/var/lib/kubeforge/lab/")
	if a != b || len(a) != 6 {
		t.Fatalf("labID: %q %q", a, b)
	}
	// Interface names are limited to 15 characters.
	if n := machineLink(a); len(n) > 15 {
		t.Fatalf("machine link name %q too long", n)
	}
	if labID("/tmp/other") == a {
		t.Fatal("two lab dirs share an id")
	}
}

func TestClusterConfigMirrorsSeedPlan(t *testing.T) {
	s := &State{Dir: "/var/lib/kubeforge/lab", Subnet: "192.168.161.0/24", Hosts: []HostState{
		{Name: "master01", Address: "192.168.161.151"}, {Name: "node01", Address: "192.168.161.152"},
		{Name: "node02", Address: "192.168.161.153"}, {Name: "node03", Address: "192.168.161.154"},
	}}
	c, err := s.ClusterConfig()
	if err != nil {
		t.Fatal(err)
	}
	h, _ := c.Host("master01")
	if !h.HasRole(config.RoleControlPlane) || !h.HasRole(config.RoleEtcd) || h.HasRole(config.RoleWorker) {
		t.Errorf("master01 roles %v", h.Roles)
	}
	h, _ = c.Host("node02")
	if !h.HasRole(config.RoleWorker) || !h.HasRole(config.RoleEtcd) {
		t.Errorf("node02 roles %v", h.Roles)
	}
	h, _ = c.Host("node03")
	if len(h.Roles) != 1 || !h.HasRole(config.RoleWorker) {
		t.Errorf("node03 roles %v", h.Roles)
	}
	if c.Spec.ControlPlaneEndpoint != "192.168.161.151:6443" || c.Spec.TimeSync.Server != "master01" {
		t.Errorf("endpoint %q, time server %q", c.Spec.ControlPlaneEndpoint, c.Spec.TimeSync.Server)
	}
	if h.SSH == nil || h.SSH.KeyPath != "/var/lib/kubeforge/lab/id_ed25519" {
		t.Errorf("ssh settings %+v", h.SSH)
	}
}

// TestUpRefusesWithoutRoot runs the real CLI path as nobody.
func TestUpRefusesWithoutRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		if err := Prerequisites(); err == nil || !strings.Contains(err.Error(), "needs root") {
			t.Fatalf("non-root: %v", err)
		}
		return
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go not on PATH")
	}
	binDir, err := os.MkdirTemp("", "kubeforge-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	os.Chmod(binDir, 0o755) // nobody must be able to reach the binary
	bin := filepath.Join(binDir, "kubeforge")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/kubeforge/kubeforge/cmd/kubeforge").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	cmd := exec.Command(bin, "lab", "up", "--dir", filepath.Join(binDir, "lab"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "needs root") {
		t.Fatalf("lab up as nobody: err=%v output=%s", err, out)
	}
}

func TestCheckSubnetFreeRefusesMachineAddress(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command")
	}
	// The loopback range is always on the machine.
	_, n, _ := net.ParseCIDR("127.0.0.0/24")
	err := checkSubnetFree(n, "kfnone")
	if err == nil || !strings.Contains(err.Error(), "taken") || !strings.Contains(err.Error(), "lo") {
		t.Fatalf("want a refusal naming lo, got %v", err)
	}
}
