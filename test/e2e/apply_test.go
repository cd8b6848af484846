package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/bootstrap/config"
)

// TestApply makes the seed cluster from this machine with one `kubeforge
// apply` over SSH, as an operator would: bad inputs stop it before any host
// changes, a second apply changes nothing, an apply killed half-way converges
// when run again, and `reset --all` leaves every host passing preflight.
func TestApply(t *testing.T) {
	requireE2E(t)
	t.Parallel()
	bdir := requireBundle(t, "bin/containerd", "bin/runc", "cni/bin/bridge", "images/pause.tar")
	s := labFor(t, "apply", "192.168.182.0/24", bdir, "master01", "node01", "node02")
	l := &nodesLab{t: t, s: s, addr: map[string]string{}}
	p := s.Paths()
	dir := t.TempDir()
	apply := func(cfg, knownHosts string, extra ...string) (string, error) {
		args := append([]string{"apply", "-f", cfg, "--known-hosts", knownHosts, "--run-dir", filepath.Join(dir, "run"+time.Now().Format("150405.000"))}, extra...)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, kubeforgeBin, args...).CombinedOutput()
		return string(out), err
	}
	untouched := func(step string) {
		t.Helper()
		for _, h := range []string{"master01", "node01", "node02"} {
			if out, err := l.ssh(h, "ls /usr/local/bin/kubeforge /var/lib/kubeforge/apply 2>/dev/null", nil); strings.TrimSpace(out) != "" || err == nil {
				t.Fatalf("%s: %s was changed: %s", step, h, out)
			}
		}
	}
	cfg, err := config.Load(p.ClusterConfig)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, c *config.Cluster) string {
		data, err := config.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	t.Run("bad input stops before any host changes", func(t *testing.T) {
		// A wrong key path on node02.
		bad := *cfg
		bad.Spec.Hosts = append([]config.Host(nil), cfg.Spec.Hosts...)
		ssh := *bad.Spec.Hosts[2].SSH
		ssh.KeyPath = filepath.Join(dir, "no-such-key")
		bad.Spec.Hosts[2].SSH = &ssh
		out, err := apply(write("badkey.yaml", &bad), p.KnownHosts)
		if err == nil || !strings.Contains(out, "node02: connect: node02: ssh key: open "+ssh.KeyPath) || !strings.Contains(out, "no host was changed") {
			t.Fatalf("wrong key path: err=%v\n%s", err, out)
		}
		untouched("wrong key path")
		// An unreachable host: an address in the lab's subnet nobody has.
		bad.Spec.Hosts = append(append([]config.Host(nil), cfg.Spec.Hosts...), cfg.Spec.Hosts[2])
		bad.Spec.Hosts[3].Name = "node09"
		bad.Spec.Hosts[3].Address = strings.TrimSuffix(cfg.Spec.Hosts[2].Address, ".153") + ".199"
		out, err = apply(write("unreachable.yaml", &bad), p.KnownHosts)
		if err == nil || !regexp.MustCompile(`node09: connect: node09: cannot reach \S+:22`).MatchString(out) {
			t.Fatalf("unreachable host: err=%v\n%s", err, out)
		}
		untouched("unreachable host")
		// node01 presents a key other than the one known_hosts has for it.
		kh, err := os.ReadFile(p.KnownHosts)
		if err != nil {
			t.Fatal(err)
		}
		other, err := os.ReadFile(filepath.Join(filepath.Dir(p.KnownHosts), "id_ed25519.pub"))
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, line := range strings.Split(strings.TrimSpace(string(kh)), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && strings.Contains(f[0], cfg.Spec.Hosts[1].Address) {
				o := strings.Fields(string(other))
				line = f[0] + " " + o[0] + " " + o[1]
			}
			lines = append(lines, line)
		}
		badKH := filepath.Join(dir, "known_hosts")
		if err := os.WriteFile(badKH, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err = apply(p.ClusterConfig, badKH)
		if err == nil || !strings.Contains(out, "host key for node01") || !strings.Contains(out, "CHANGED") {
			t.Fatalf("changed host key: err=%v\n%s", err, out)
		}
		untouched("changed host key")
	})

	ready := func() {
		t.Helper()
		var last string
		err := wait.PollUntilContextTimeout(context.Background(), time.Second, 5*time.Minute, true, func(context.Context) (bool, error) {
			r, _, _ := l.readyNodes()
			last = strings.Join(r, ",")
			return last == "master01,node01,node02", nil
		})
		if err != nil {
			t.Fatalf("3 Ready nodes: last saw %q", last)
		}
		if m := l.etcdMembers(); m != "master01:voter node01:voter node02:voter" {
			t.Fatalf("etcd members: %s", m)
		}
	}
	summary := regexp.MustCompile(`(?m)^(master01|node01|node02)\s+\S+\s+(init|join --etcd)\s+(done|unchanged)\s`)
	t.Run("apply makes the cluster, a second changes nothing", func(t *testing.T) {
		start := time.Now()
		out, err := apply(p.ClusterConfig, p.KnownHosts, "--fix")
		if err != nil {
			t.Fatalf("apply: %v\n%s", err, out)
		}
		t.Logf("apply of 3 booted hosts: %s\n%s", time.Since(start).Round(time.Second), out)
		ready()
		if n := len(summary.FindAllString(out, -1)); n != 3 {
			t.Errorf("summary has %d host rows, want 3:\n%s", n, out)
		}
		logs, _ := filepath.Glob(filepath.Join(dir, "run*", "*.log"))
		for _, f := range logs {
			b, _ := os.ReadFile(f)
			if regexp.MustCompile(`\b[a-z0-9]{6}\.[a-z0-9]{16}\b|KUBEFORGE_CERTIFICATE_KEY=[0-9a-f]`).Match(b) {
				t.Errorf("%s keeps a join token or certificate key", f)
			}
		}
		out, err = apply(p.ClusterConfig, p.KnownHosts)
		if err != nil {
			t.Fatalf("second apply: %v\n%s", err, out)
		}
		for _, m := range summary.FindAllStringSubmatch(out, -1) {
			if m[3] != "unchanged" {
				t.Errorf("second apply: %s %s", m[1], m[3])
			}
		}
	})

	t.Run("status -f shows every host, and a stopped unit by name", func(t *testing.T) {
		status := func() (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, kubeforgeBin, "status", "-f", p.ClusterConfig, "--known-hosts", p.KnownHosts).CombinedOutput()
			return string(out), err
		}
		// Right after apply a scheduled run or the overlay's first sync may
		// still be on its way: healthy within a minute.
		var out string
		err := wait.PollUntilContextTimeout(context.Background(), 2*time.Second, time.Minute, true, func(context.Context) (bool, error) {
			var err error
			out, err = status()
			return err == nil, nil
		})
		if err != nil {
			t.Fatalf("status -f of the fresh cluster never showed it healthy within a minute:\n%s", out)
		}
		for _, h := range []string{"master01", "node01", "node02"} {
			if !regexp.MustCompile(`(?m)^` + h + `\s.*\s\d+/\d+ ok\s+\d+d\s+3/3 healthy\s+Ready\s+2\s+0$`).MatchString(out) {
				t.Errorf("no healthy row for %s (3/3 etcd, Ready, 2 overlay peers, 0 problems):\n%s", h, out)
			}
		}
		t.Logf("status -f:\n%s", out)
		l.must("node02", "systemctl stop kube-proxy.service")
		defer l.must("node02", "systemctl start kube-proxy.service")
		out, err = status()
		if err == nil || !strings.Contains(out, "node02: kube-proxy.service: inactive/dead, want active") {
			t.Errorf("status -f with kube-proxy stopped on node02: err %v, want a failure naming it:\n%s", err, out)
		}
		// On the host itself, a joined host with no configuration of its own.
		if out, err := l.ssh("node01", "kubeforge status", nil); err != nil || !strings.Contains(out, "problems: none") {
			t.Errorf("kubeforge status on node01: %v\n%s", err, out)
		}
	})

	// Killed at a step boundary, as a lost terminal or a Ctrl-C would: the next
	// apply converges. Each kill lands when apply announces a step.
	resetAll := func() {
		t.Helper()
		out, err := kubeforge(t, "reset", "--all", "--config", p.ClusterConfig, "--known-hosts", p.KnownHosts, "--force")
		if err != nil {
			t.Fatalf("reset --all: %v\n%s", err, out)
		}
	}
	for _, at := range []string{"master01: kubeforge init", "node01: kubeforge join --etcd"} {
		t.Run("killed at "+at, func(t *testing.T) {
			resetAll()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			c := exec.CommandContext(ctx, kubeforgeBin, "apply", "-f", p.ClusterConfig, "--known-hosts", p.KnownHosts, "--fix", "--run-dir", filepath.Join(dir, "killed"))
			var out lockedBuffer
			c.Stdout, c.Stderr = &out, &out
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 10*time.Minute, true, func(context.Context) (bool, error) {
				return strings.Contains(out.String(), at), nil
			})
			if err != nil {
				c.Process.Kill()
				c.Wait()
				t.Fatalf("apply never reached %q:\n%s", at, out.String())
			}
			// Let the step start on the host, then kill apply without a chance
			// to clean up.
			time.Sleep(3 * time.Second)
			_ = c.Process.Signal(syscall.SIGKILL)
			_ = c.Wait()
			out2, err := apply(p.ClusterConfig, p.KnownHosts, "--fix")
			if err != nil {
				t.Fatalf("apply after the kill at %q: %v\n%s\n--- killed run ---\n%s", at, err, out2, out.String())
			}
			ready()
		})
	}

	t.Run("reset --all leaves every host passing preflight", func(t *testing.T) {
		resetAll()
		for _, h := range []string{"master01", "node01", "node02"} {
			out, err := kubeforge(t, "preflight", "--config", p.ClusterConfig, "--host", h, "--known-hosts", p.KnownHosts)
			if err != nil {
				t.Errorf("%s after reset --all: %v\n%s", h, err, out)
			}
		}
	})
}

// lockedBuffer is a bytes.Buffer a running command writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
