package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	sshhost "github.com/kubeforge/kubeforge/bootstrap/host/ssh"
	"github.com/kubeforge/kubeforge/bootstrap/lab"
)

// The checks the broken node01 must fail, by their stable names.
var preflightBroken = []string{"Firewalld", "Swap", "Sysctls", "Hostname", "HostsFile", "TimeSync"}

// breakNode01 undoes everything preflight --fix does on a lab host: firewalld
// running, a swap line in /etc/fstab, a wrong hostname, no cluster entries in
// /etc/hosts, forwarding sysctls off and chrony not following the cluster.
const breakNode01 = `set -e
systemctl start firewalld
echo '/swapfile none swap sw 0 0' >> /etc/fstab
hostnamectl set-hostname wrong-name
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts
sysctl -q -w net.ipv4.ip_forward=0 net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0
printf '# not configured for the cluster\ndriftfile /var/lib/chrony/chrony.drift\n' > /etc/chrony/chrony.conf
systemctl restart chrony
`

// hostState fingerprints what a fix could change: every file under /etc, the
// services, the hostname, the sysctls and the active swaps.
const hostState = `find /etc -xdev -type f -print0 | sort -z | xargs -0 sha256sum
for u in firewalld chrony; do echo "unit $u $(systemctl is-active $u) $(systemctl is-enabled $u)"; done
echo "hostname $(hostname)"
sysctl net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
cat /proc/swaps`

func TestPreflight(t *testing.T) {
	requireE2E(t)
	t.Parallel()
	s := labFor(t, "preflight", "192.168.172.0/24", bundleDir(), "master01", "node01")
	paths := s.Paths()
	master, _ := s.Host("master01")
	node, _ := s.Host("node01")

	cfg := filepath.Join(t.TempDir(), "cluster.yaml")
	cluster := fmt.Sprintf(`apiVersion: kubeforge.io/v1alpha1
kind: Cluster
metadata:
  name: preflight-e2e
spec:
  hosts:
  - name: master01
    address: %s
    roles: [control-plane, etcd]
  - name: node01
    address: %s
    roles: [worker]
  timeSync:
    server: master01
`, master.Address, node.Address)
	if err := os.WriteFile(cfg, []byte(cluster), 0o644); err != nil {
		t.Fatal(err)
	}
	sshFlags := []string{"--identity", paths.IdentityFile, "--known-hosts", paths.KnownHosts}
	remote := func(hostName string, args ...string) (string, error) {
		out, err := kubeforge(t, append(append([]string{"preflight", "--config", cfg, "--host", hostName}, sshFlags...), args...)...)
		return string(out), err
	}

	// kubeforge and the config go into node01 through kubeforge's own SSH host.
	installInHost(t, paths, "node01", node.Address, map[string]fileSpec{
		"/usr/local/bin/kubeforge": {path: kubeforgeBin, mode: 0o755},
		"/root/cluster.yaml":       {path: cfg, mode: 0o600},
	})
	local := func(args ...string) (string, error) {
		return sshOutput(s, "node01", "kubeforge preflight --config /root/cluster.yaml "+strings.Join(args, " "))
	}

	// master01 serves the cluster's time; node01's TimeSync can only pass once it does.
	if out, err := remote("master01", "--fix"); err != nil {
		t.Fatalf("preflight --fix on master01: %v\n%s", err, out)
	}

	sshRun(t, s, "node01", breakNode01)

	t.Run("broken host fails the named checks", func(t *testing.T) {
		out, err := local()
		if err == nil {
			t.Fatalf("preflight passed on a broken host:\n%s", out)
		}
		for _, name := range preflightBroken {
			if !strings.Contains(out, "[ERROR "+name+"]: ") {
				t.Errorf("no [ERROR %s] in:\n%s", name, out)
			}
		}
		jsonOut, err := sshStdout(s, "node01", "kubeforge preflight --config /root/cluster.yaml -o json")
		if err == nil {
			t.Fatal("-o json exited 0 on a broken host")
		}
		got := failedChecks(t, jsonOut)
		if strings.Join(got, ",") != strings.Join(preflightBroken, ",") {
			t.Errorf("failed checks %v, want exactly %v\n%s", got, preflightBroken, jsonOut)
		}
	})

	t.Run("dry run prints the plan and changes nothing", func(t *testing.T) {
		before := sshRun(t, s, "node01", hostState)
		out, err := local("--fix", "--dry-run")
		if err != nil {
			t.Fatalf("--fix --dry-run: %v\n%s", err, out)
		}
		for _, want := range []string{
			"[dry-run] Planned changes (nothing was changed):",
			"stop unit firewalld.service",
			"write /etc/fstab",
			"+#kubeforge:swapoff# /swapfile none swap sw 0 0",
			"write /etc/sysctl.d/99-kubeforge.conf",
			"hostnamectl set-hostname node01",
			"+# BEGIN kubeforge managed hosts",
			"+server " + master.Address + " iburst",
			"restart unit chrony.service",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("dry-run output lacks %q:\n%s", want, out)
			}
		}
		if after := sshRun(t, s, "node01", hostState); after != before {
			t.Errorf("the dry run changed node01:\n%s", lineDiff(before, after))
		}
	})

	// verifyFixed checks the outcome with the host's own tools, not kubeforge's.
	verifyFixed := func(t *testing.T) {
		t.Helper()
		got := sshRun(t, s, "node01", `systemctl is-active firewalld || true; systemctl is-enabled firewalld || true
hostname; cat /etc/hostname
sysctl -n net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
grep -c '^/swapfile' /etc/fstab || true
getent hosts master01 node01
chronyc -n -c sources | grep '^\^,\*,'`)
		want := []string{"inactive", "disabled", "node01", "node01", "1", "1", "1", "0",
			master.Address + "    master01", node.Address + "    node01"}
		lines := strings.Split(got, "\n")
		if len(lines) < len(want)+1 {
			t.Fatalf("node01 after the fix:\n%s", got)
		}
		for i, w := range want {
			if strings.Join(strings.Fields(lines[i]), " ") != strings.Join(strings.Fields(w), " ") {
				t.Errorf("node01 after the fix, line %d = %q, want %q\n%s", i+1, lines[i], w, got)
			}
		}
		if !strings.HasPrefix(lines[len(want)], "^,*,"+master.Address+",") {
			t.Errorf("chrony does not follow master01: %q", lines[len(want)])
		}
	}

	t.Run("fix run inside the host", func(t *testing.T) {
		out, err := local("--fix")
		if err != nil {
			t.Fatalf("--fix inside node01: %v\n%s", err, out)
		}
		for _, name := range preflightBroken {
			if !strings.Contains(out, fmt.Sprintf("%-18s %-8s -> %s", name, "fail", "pass")) {
				t.Errorf("no %s fail -> pass in:\n%s", name, out)
			}
		}
		if !strings.Contains(out, "node01: all 15 checks passed") {
			t.Errorf("not all checks pass after the fix:\n%s", out)
		}
		verifyFixed(t)
	})

	t.Run("fix over SSH from outside", func(t *testing.T) {
		sshRun(t, s, "node01", breakNode01)
		out, err := remote("node01")
		if err == nil {
			t.Fatalf("re-broken node01 passes over SSH:\n%s", out)
		}
		for _, name := range preflightBroken {
			if !strings.Contains(out, "[ERROR "+name+"]: ") {
				t.Errorf("over SSH: no [ERROR %s] in:\n%s", name, out)
			}
		}
		out, err = remote("node01", "--fix")
		if err != nil {
			t.Fatalf("--fix over SSH: %v\n%s", err, out)
		}
		if !strings.Contains(out, "node01: all 15 checks passed") {
			t.Errorf("not all checks pass after the SSH fix:\n%s", out)
		}
		verifyFixed(t)
	})

	t.Run("second fix changes nothing and says so", func(t *testing.T) {
		before := sshRun(t, s, "node01", hostState)
		out, err := remote("node01", "--fix")
		if err != nil {
			t.Fatalf("second --fix: %v\n%s", err, out)
		}
		if !strings.Contains(out, "[preflight] Nothing to fix on node01: no changes made") || strings.Contains(out, "[fix ") {
			t.Errorf("second --fix output:\n%s", out)
		}
		if after := sshRun(t, s, "node01", hostState); after != before {
			t.Errorf("the second fix changed node01:\n%s", lineDiff(before, after))
		}
		// And the same from inside the host.
		out, err = local("--fix")
		if err != nil || !strings.Contains(out, "Nothing to fix on node01") {
			t.Errorf("second --fix inside node01: %v\n%s", err, out)
		}
	})
}

type fileSpec struct {
	path string
	mode os.FileMode
}

// installInHost copies local files into a lab host with kubeforge's SSH host
// (strict known_hosts, the lab's client key).
func installInHost(t *testing.T, p lab.Paths, name, addr string, files map[string]fileSpec) {
	t.Helper()
	h, err := sshhost.New(sshhost.Config{Name: name, Address: addr, KeyFiles: []string{p.IdentityFile}, KnownHostsPath: p.KnownHosts})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for dst, src := range files {
		data, err := os.ReadFile(src.path)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.WriteFile(ctx, dst, data, host.WriteOptions{Mode: src.mode}); err != nil {
			t.Fatalf("copy %s to %s:%s: %v", src.path, name, dst, err)
		}
	}
}

// sshOutput runs cmd on a lab host and returns stdout and stderr together; a
// non-zero exit is the error (preflight exits 1 when checks fail).
func sshOutput(s *lab.State, hostName, cmd string) (string, error) {
	out, err := labSSH(s, hostName, cmd).CombinedOutput()
	return string(out), err
}

// sshStdout is sshOutput with stdout only.
func sshStdout(s *lab.State, hostName, cmd string) (string, error) {
	var stdout bytes.Buffer
	c := labSSH(s, hostName, cmd)
	c.Stdout = &stdout
	err := c.Run()
	return stdout.String(), err
}

// failedChecks reads `preflight -o json` and returns the names with status fail.
func failedChecks(t *testing.T, out string) []string {
	t.Helper()
	var list []struct {
		Name, Status string
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("preflight -o json: %v\n%s", err, out)
	}
	var names []string
	for _, r := range list {
		if r.Status == "fail" {
			names = append(names, r.Name)
		}
	}
	return names
}

// lineDiff lists lines only in a or only in b.
func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ia, ib := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !ib[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ia[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
