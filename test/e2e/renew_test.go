package e2e

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// renewCerts are the certificate files checked before and after the renewal;
// renewKubeconfigs the kubeconfigs whose embedded client certificate is.
var (
	renewCerts = []string{"apiserver", "apiserver-kubelet-client", "apiserver-etcd-client", "front-proxy-client",
		"etcd/server", "etcd/peer", "etcd/healthcheck-client"}
	renewKubeconfigs = []string{"admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf"}
)

// certFacts is what openssl says about one certificate.
type certFacts struct {
	notAfter time.Time
	// rest is subject, issuer and SANs: what a renewal must keep.
	subject, issuer, sans string
	sha                   string
}

// TestRenew renews every certificate of a running control-plane host with
// `kubeforge certs renew all`, driven over ssh the way an operator would, and
// checks that etcd and kube-apiserver were not restarted but serve the renewed
// certificates, that the other affected units were restarted one at a time,
// in order, and are healthy, that the certificates kept their names and CA,
// and that a later `kubeforge init` finds the control plane unchanged.
func TestRenew(t *testing.T) {
	requireE2E(t)
	t.Parallel()
	bdir := requireBundle(t)
	s := labFor(t, "renew", "192.168.177.0/24", bdir, "master01")
	m := &remote{t: t, s: s, host: "master01"}
	cfg, err := s.ClusterConfig()
	if err != nil {
		t.Fatal(err)
	}
	// Short-lived leaves, as a cluster nearing its renewal date has.
	cfg.Spec.Certificates.Validity = config.Duration("2h")
	// ClusterConfig filled in the defaults for the old validity; let the
	// renewal window be defaulted again for the new one (a third of it).
	cfg.Spec.Certificates.AutoRenew.RenewBefore = ""
	m.put(kubeforgeBin, "/root/kf/kubeforge", 0o755)
	m.putConfig(cfg, "/root/kf/cluster.yaml")
	const kf = "/root/kf/kubeforge"
	initCmd := kf + " init --config /root/kf/cluster.yaml --node-name master01"
	if skip := os.Getenv("KUBEFORGE_E2E_RENEW_SKIP_PHASES"); skip != "" {
		initCmd += " --skip-phases " + skip
	}
	m.run(kf + " preflight --config /root/kf/cluster.yaml --node-name master01 --fix")
	initStart := time.Now()
	m.run(initCmd)
	t.Logf("init took %s", time.Since(initStart).Round(time.Second))
	if m.run("stat -c %a /etc/kubeforge/cluster.yaml") != "600" {
		t.Error("init's copy of the configuration is not 0600")
	}

	before := map[string]certFacts{}
	for _, c := range renewCerts {
		before[c] = m.certFacts(t, "cat /etc/kubernetes/pki/"+c+".crt")
	}
	for _, k := range renewKubeconfigs {
		before[k] = m.certFacts(t, kubeconfigCert(k))
	}
	caSum := m.run("sha256sum /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/etcd/ca.crt /etc/kubernetes/pki/front-proxy-ca.crt")

	t.Run("without a configuration it refuses and changes nothing", func(t *testing.T) {
		m := m.with(t)
		m.run("mv /etc/kubeforge/cluster.yaml /root/kf/cluster.yaml.kept")
		defer m.run("mv /root/kf/cluster.yaml.kept /etc/kubeforge/cluster.yaml")
		snap := m.etcSnapshot()
		out, err := m.try(kf + " certs renew all")
		if err == nil {
			t.Fatalf("renew without a configuration succeeded:\n%s", out)
		}
		for _, w := range []string{"etcd.service, kube-apiserver.service", "--no-restart", "nothing was changed"} {
			if !strings.Contains(out, w) {
				t.Errorf("refusal lacks %q:\n%s", w, out)
			}
		}
		if d := diffSnapshots(snap, m.etcSnapshot()); d != "" {
			t.Errorf("the refused renewal changed files:\n%s", d)
		}
	})

	var planned, reloads []string
	t.Run("dry run lists files and units and changes nothing", func(t *testing.T) {
		m := m.with(t)
		snap, units := m.etcSnapshot(), m.unitStates(t, renewalOrder)
		out := m.run(kf + " certs renew all --dry-run")
		t.Logf("dry run:\n%s", out)
		if d := diffSnapshots(snap, m.etcSnapshot()); d != "" {
			t.Errorf("the dry run changed files:\n%s", d)
		}
		after := m.unitStates(t, renewalOrder)
		for _, u := range renewalOrder {
			if after[u].pid != units[u].pid {
				t.Errorf("the dry run restarted %s", u)
			}
		}
		for _, w := range []string{"apiserver ", "would renew: /etc/kubernetes/pki/apiserver.crt", "would be backed up to /etc/kubernetes/tmp/kubeforge-certs-backup-"} {
			if !strings.Contains(out, w) {
				t.Errorf("dry run lacks %q", w)
			}
		}
		for _, mm := range regexp.MustCompile(`(?m)^(\S+\.service) \(reads [^)]*\): would restart`).FindAllStringSubmatch(out, -1) {
			planned = append(planned, mm[1])
		}
		for _, mm := range regexp.MustCompile(`(?m)^(\S+\.service) \(reads [^)]*\): would not restart: it reloads them by itself`).FindAllStringSubmatch(out, -1) {
			reloads = append(reloads, mm[1])
		}
		for _, must := range []string{"kube-controller-manager.service", "kube-scheduler.service"} {
			if !slices.Contains(planned, must) {
				t.Errorf("the dry run does not plan to restart %s (plans %v)", must, planned)
			}
		}
		if want := []string{"etcd.service", "kube-apiserver.service"}; !slices.Equal(reloads, want) {
			t.Errorf("the dry run says %v reload by themselves, want %v", reloads, want)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	var renewOut string
	t.Run("renew all restarts the affected units one at a time", func(t *testing.T) {
		m := m.with(t)
		units := m.unitStates(t, renewalOrder)
		others := m.unitStates(t, []string{"containerd.service"})
		servedBefore := m.servedSerials(t)
		start := time.Now()
		// No --config: the copy init keeps on the host is what it needs.
		renewOut = m.run(kf + " certs renew all 2>&1")
		wall := time.Since(start)
		t.Logf("renew all:\n%s", renewOut)
		took := submatch(t, renewOut, `Renewal and restarts took (\S+)\.`)
		t.Logf("renewal + restarts: %s as reported by kubeforge, %s wall clock over ssh", took, wall.Round(10*time.Millisecond))

		after := m.unitStates(t, renewalOrder)
		var restarted []string
		for _, u := range renewalOrder {
			switch {
			case slices.Contains(planned, u):
				if after[u].pid == units[u].pid || after[u].pid == 0 || after[u].activeEnter <= units[u].activeEnter {
					t.Errorf("%s was not restarted: pid %d -> %d, active since %d -> %d", u, units[u].pid, after[u].pid, units[u].activeEnter, after[u].activeEnter)
				}
				restarted = append(restarted, u)
			case slices.Contains(reloads, u):
				if after[u].pid != units[u].pid || after[u].activeEnter != units[u].activeEnter {
					t.Errorf("%s reloads by itself but was restarted: pid %d -> %d", u, units[u].pid, after[u].pid)
				}
				if !regexp.MustCompile(regexp.QuoteMeta(u) + ` \(reads [^)]*\): not restarted: reloaded them by itself, healthy after \S+ \(pid \d+, unchanged\)`).MatchString(renewOut) {
					t.Errorf("the report does not say %s reloaded by itself", u)
				}
			case after[u].pid != units[u].pid:
				t.Errorf("%s was restarted though it was not planned", u)
			}
		}
		// One at a time, in order: each unit went down only after the one
		// before it was active again (for Type=notify units: ready).
		var lines []string
		for i, u := range restarted {
			a := after[u]
			lines = append(lines, fmt.Sprintf("%-34s pid %6d -> %6d  stopped %s  active again %s", u, units[u].pid, a.pid, a.inactiveEnterWall, a.activeEnterWall))
			if i > 0 {
				prev := after[restarted[i-1]]
				if a.inactiveEnter <= prev.activeEnter {
					t.Errorf("%s stopped (%s) before %s was active again (%s)", u, a.inactiveEnterWall, restarted[i-1], prev.activeEnterWall)
				}
			}
		}
		t.Logf("restarts in order:\n%s", strings.Join(lines, "\n"))
		// etcd and the apiserver serve the renewed certificates: new serials,
		// those of the files.
		servedAfter := m.servedSerials(t)
		for _, d := range []string{"etcd", "kube-apiserver"} {
			if servedAfter[d] == servedBefore[d] || servedAfter[d] != servedAfter[d+" file"] {
				t.Errorf("%s serves %s (before %s); its renewed file has %s", d, servedAfter[d], servedBefore[d], servedAfter[d+" file"])
			}
		}
		t.Logf("served serials: before %v, after %v", servedBefore, servedAfter)
		for u, st := range m.unitStates(t, []string{"containerd.service"}) {
			if st.pid != others[u].pid {
				t.Errorf("%s reads no renewed file but was restarted", u)
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("certificates renewed with the same names and CA", func(t *testing.T) {
		m := m.with(t)
		backup := submatch(t, renewOut, `The replaced files are backed up in (\S+)\.`)
		if m.run("stat -c %a "+backup) == "" {
			t.Fatalf("no backup directory %s", backup)
		}
		check := func(name, cmd, backupPath string) {
			now := m.certFacts(t, cmd)
			old := before[name]
			if !now.notAfter.After(old.notAfter) {
				t.Errorf("%s: NotAfter %s, not later than %s", name, now.notAfter, old.notAfter)
			}
			if now.subject != old.subject || now.issuer != old.issuer || now.sans != old.sans {
				t.Errorf("%s changed names:\n before %q %q %q\n after  %q %q %q", name, old.subject, old.issuer, old.sans, now.subject, now.issuer, now.sans)
			}
			if b := m.certFacts(t, backupPath); b.sha != old.sha {
				t.Errorf("%s: the backup does not hold the replaced certificate", name)
			}
			t.Logf("%-26s NotAfter %s -> %s, %s", name, old.notAfter.Format(time.RFC3339), now.notAfter.Format(time.RFC3339), now.subject)
		}
		for _, c := range renewCerts {
			check(c, "cat /etc/kubernetes/pki/"+c+".crt", "cat "+backup+"/pki/"+c+".crt")
			ca := "/etc/kubernetes/pki/ca.crt"
			switch {
			case strings.HasPrefix(c, "etcd/") || c == "apiserver-etcd-client":
				ca = "/etc/kubernetes/pki/etcd/ca.crt"
			case c == "front-proxy-client":
				ca = "/etc/kubernetes/pki/front-proxy-ca.crt"
			}
			if out, err := m.try("openssl verify -CAfile " + ca + " /etc/kubernetes/pki/" + c + ".crt"); err != nil {
				t.Errorf("%s does not verify against %s: %s", c, ca, out)
			}
		}
		for _, k := range renewKubeconfigs {
			check(k, kubeconfigCert(k), strings.Replace(kubeconfigCert(k), "/etc/kubernetes/"+k, backup+"/kubeconfig/"+k, 1))
		}
		if got := m.run("sha256sum /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/etcd/ca.crt /etc/kubernetes/pki/front-proxy-ca.crt"); got != caSum {
			t.Errorf("the CAs changed:\n%s\n%s", caSum, got)
		}
		if bad := m.run(`find /etc/kubernetes ` + backup + ` \( -name '*.key' -o -name '*.conf' \) -perm /077 -print`); bad != "" {
			t.Errorf("keys or kubeconfigs readable beyond root:\n%s", bad)
		}
	})

	t.Run("everything healthy on the new certificates", func(t *testing.T) {
		m := m.with(t)
		for _, u := range append(slices.Clone(reloads), planned...) {
			if st := m.run("systemctl is-active " + u); st != "active" {
				t.Errorf("%s is %s", u, st)
			}
		}
		kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
		if got := m.run(kubectl + "get --raw /readyz"); got != "ok" {
			t.Errorf("/readyz with the renewed admin.conf: %q", got)
		}
		// The apiserver presents the renewed serving certificate.
		served := m.run("echo | openssl s_client -connect 127.0.0.1:6443 2>/dev/null | openssl x509 -noout -fingerprint -sha256")
		onDisk := m.run("openssl x509 -noout -fingerprint -sha256 -in /etc/kubernetes/pki/apiserver.crt")
		if served != onDisk {
			t.Errorf("the apiserver serves %s, the renewed file is %s", served, onDisk)
		}
		// Through the apiserver to etcd with the renewed client certificate.
		m.run(kubectl + "create configmap e2e-renewed --from-literal=k=v")
		if v := m.run(kubectl + "get configmap e2e-renewed -o jsonpath={.data.k}"); v != "v" {
			t.Errorf("configmap round trip: %q", v)
		}
		m.run("/opt/kubeforge/bundle/bin/etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt " +
			"--cert /etc/kubernetes/pki/etcd/healthcheck-client.crt --key /etc/kubernetes/pki/etcd/healthcheck-client.key endpoint health")
		for _, hz := range []string{"https://127.0.0.1:10257/healthz", "https://127.0.0.1:10259/healthz"} {
			if got := m.run("curl -sk " + hz); got != "ok" {
				t.Errorf("%s: %q", hz, got)
			}
		}
		if slices.Contains(planned, "kubelet.service") {
			if got := m.run("curl -s http://127.0.0.1:10248/healthz"); got != "ok" {
				t.Errorf("kubelet /healthz: %q", got)
			}
		}
		// Leaders are elected again on the new kubeconfigs.
		for _, l := range []string{"kube-controller-manager", "kube-scheduler"} {
			var holder string
			for i := 0; i < 120; i++ {
				holder = m.run(kubectl + "-n kube-system get lease " + l + " -o jsonpath={.spec.holderIdentity}")
				renew := m.run(kubectl + "-n kube-system get lease " + l + " -o jsonpath={.spec.renewTime}")
				if rt, err := time.Parse(time.RFC3339Nano, renew); err == nil && time.Since(rt) < 20*time.Second && strings.HasPrefix(holder, "master01_") {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			if !strings.HasPrefix(holder, "master01_") {
				t.Errorf("lease %s held by %q", l, holder)
			}
		}
	})

	t.Run("init afterwards finds the control plane unchanged", func(t *testing.T) {
		m := m.with(t)
		out := m.run(initCmd)
		var changed []string
		for _, pt := range parseTimings(t, out) {
			if pt.Name == "control-plane" || strings.HasPrefix(pt.Name, "control-plane/") {
				if pt.Status != workflow.StatusUnchanged {
					t.Errorf("init after the renewal: phase %s is %s", pt.Name, pt.Status)
				}
				continue
			}
			if pt.Status != workflow.StatusUnchanged && pt.Status != workflow.StatusSkipped {
				changed = append(changed, pt.Name+" "+string(pt.Status))
			}
		}
		if len(changed) > 0 {
			t.Logf("other phases that did something on the rerun: %v", changed)
		}
	})
}

// renewalOrder is the restart order kubeforge promises.
var renewalOrder = []string{"etcd.service", "kube-apiserver.service", "kube-controller-manager.service", "kube-scheduler.service",
	"kubelet.service", "kube-proxy.service", "kubeforge-node.service"}

// kubeconfigCert is a shell command printing the client certificate embedded in
// a kubeconfig as PEM.
func kubeconfigCert(name string) string {
	return "sed -n 's/^ *client-certificate-data: //p' /etc/kubernetes/" + name + " | base64 -d"
}

// certFacts runs cmd (which prints a PEM certificate) and asks openssl about it.
func (r *remote) certFacts(t *testing.T, cmd string) certFacts {
	t.Helper()
	out := r.run("pem=$(" + cmd + ") && printf '%s\\n' \"$pem\" | openssl x509 -noout -enddate -subject -issuer -ext subjectAltName -nameopt RFC2253 && " +
		"printf '%s\\n' \"$pem\" | openssl x509 -outform DER | sha256sum")
	var f certFacts
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "notAfter="):
			ts, err := time.Parse("Jan _2 15:04:05 2006 MST", strings.TrimPrefix(l, "notAfter="))
			if err != nil {
				t.Fatalf("notAfter %q: %v", l, err)
			}
			f.notAfter = ts
		case strings.HasPrefix(l, "subject="):
			f.subject = strings.TrimPrefix(l, "subject=")
		case strings.HasPrefix(l, "issuer="):
			f.issuer = strings.TrimPrefix(l, "issuer=")
		case strings.Contains(l, "Subject Alternative Name") && i+1 < len(lines):
			f.sans = strings.TrimSpace(lines[i+1])
		case strings.HasSuffix(l, "  -"):
			f.sha = strings.TrimSuffix(l, "  -")
		}
	}
	if f.notAfter.IsZero() || f.subject == "" || f.sha == "" {
		t.Fatalf("no certificate from %q:\n%s", cmd, out)
	}
	return f
}

// unitState is what systemd records about a unit's last (re)start.
type unitState struct {
	pid                                int
	activeEnter, inactiveEnter         uint64 // monotonic, microseconds
	activeEnterWall, inactiveEnterWall string
}

func (r *remote) unitStates(t *testing.T, units []string) map[string]unitState {
	t.Helper()
	out := r.run("for u in " + strings.Join(units, " ") + "; do echo \"unit=$u\"; systemctl show -p MainPID -p ActiveEnterTimestampMonotonic -p InactiveEnterTimestampMonotonic " +
		"-p ActiveEnterTimestamp -p InactiveEnterTimestamp $u; done")
	states := map[string]unitState{}
	var cur string
	var st unitState
	flush := func() {
		if cur != "" {
			states[cur] = st
		}
	}
	for _, l := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(l, "=")
		switch k {
		case "unit":
			flush()
			cur, st = v, unitState{}
		case "MainPID":
			st.pid, _ = strconv.Atoi(v)
		case "ActiveEnterTimestampMonotonic":
			st.activeEnter, _ = strconv.ParseUint(v, 10, 64)
		case "InactiveEnterTimestampMonotonic":
			st.inactiveEnter, _ = strconv.ParseUint(v, 10, 64)
		case "ActiveEnterTimestamp":
			st.activeEnterWall = v
		case "InactiveEnterTimestamp":
			st.inactiveEnterWall = v
		}
	}
	flush()
	return states
}

// etcSnapshot hashes the files a renewal may touch: certificates, kubeconfigs,
// units and kubeforge's own files.
func (r *remote) etcSnapshot() map[string]string {
	r.t.Helper()
	out := r.run(`find /etc/kubernetes /etc/systemd/system /etc/kubeforge -type f -print0 | sort -z | xargs -0 sha256sum`)
	snap := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if sum, p, ok := strings.Cut(l, "  "); ok {
			snap[p] = sum
		}
	}
	return snap
}
