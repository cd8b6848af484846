package apply

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/owndirs"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/component"
)

// The units whose kubeforge header tells init and join a re-run.
var (
	kubeAPIServerUnit = component.UnitDir + "/kube-apiserver.service"
	kubeletUnit       = component.UnitDir + "/kubelet.service"
)

const (
	testToken = "abcdef.0123456789abcdef"
	cpKey     = "1111111111111111111111111111111111111111111111111111111111111111"
	etcdKey   = "2222222222222222222222222222222222222222222222222222222222222222"
	caHash    = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

// initOut is what a first `kubeforge init` prints at its end.
var initOut = "[certs] done in 1s\n" +
	"  KUBEFORGE_TOKEN=" + testToken + " kubeforge join 10.0.0.1:6443 --discovery-token-ca-cert-hash " + caHash + "\n" +
	"  KUBEFORGE_TOKEN=" + testToken + " KUBEFORGE_CERTIFICATE_KEY=" + etcdKey + " kubeforge join 10.0.0.1:6443 --discovery-token-ca-cert-hash " + caHash + " --etcd\n" +
	"  KUBEFORGE_TOKEN=" + testToken + " KUBEFORGE_CERTIFICATE_KEY=" + cpKey + " kubeforge join 10.0.0.1:6443 --discovery-token-ca-cert-hash " + caHash + " --control-plane\n"

// cluster is a fake fleet: in-memory hosts that answer the commands apply
// runs, recording what ran, with what stdin, and how many joins of etcd
// members ran at once.
type cluster struct {
	mu        sync.Mutex
	hosts     map[string]*fakeHost
	converged bool // every kubeforge run reports unchanged
	order     []string
	etcdNow   atomic.Int32
	etcdMax   atomic.Int32
}

type fakeHost struct {
	c      *cluster
	name   string
	mu     sync.Mutex
	files  map[string][]byte
	ran    []host.Cmd
	writes int
}

func (h *fakeHost) Name() string { return h.name }
func (h *fakeHost) Close() error { return nil }
func (h *fakeHost) Units() host.Units {
	return nil
}
func (h *fakeHost) ReadFile(_ context.Context, p string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b, ok := h.files[p]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
}
func (h *fakeHost) WriteFile(_ context.Context, p string, data []byte, _ host.WriteOptions) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.files[p] = bytes.Clone(data)
	h.writes++
	return nil
}
func (h *fakeHost) Stat(ctx context.Context, p string) (host.FileInfo, error) {
	b, err := h.ReadFile(ctx, p)
	return host.FileInfo{Path: p, Size: int64(len(b))}, err
}
func (h *fakeHost) Remove(_ context.Context, p string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := range h.files {
		if k == p || strings.HasPrefix(k, p+"/") {
			delete(h.files, k)
		}
	}
	return nil
}
func (h *fakeHost) MkdirAll(context.Context, string, fs.FileMode) error { return nil }

func (h *fakeHost) Run(ctx context.Context, c host.Cmd) (host.Result, error) {
	h.mu.Lock()
	h.ran = append(h.ran, c)
	h.mu.Unlock()
	argv := c.Argv
	if argv[0] == "sh" { // the stdin-to-environment wrapper
		_, rest, _ := strings.Cut(argv[2], "exec ")
		argv = strings.Fields(strings.ReplaceAll(rest, "'", ""))
	}
	switch {
	case argv[0] == "uname":
		return host.Result{Stdout: []byte(h.name + "\n")}, nil
	case argv[0] == "kubectl":
		return host.Result{Stdout: []byte("master01 node01 node02 node03 node04 node07")}, nil
	case argv[0] == "sha256sum":
		b, _ := h.ReadFile(ctx, argv[1])
		return host.Result{Stdout: []byte(fmt.Sprintf("%x  %s\n", sha(b), argv[1]))}, nil
	case argv[0] != RemoteBinary:
		return host.Result{ExitCode: 127}, nil
	}
	switch argv[1] {
	case "preflight":
		return host.Result{Stdout: []byte("[preflight] all checks passed\n")}, nil
	case "init":
		h.files[kubeAPIServerUnit] = []byte("# kube-apiserver, " + component.UnitMarker)
		if h.c.converged {
			return host.Result{Stdout: []byte(strings.ReplaceAll(initOut, "done in", "unchanged in"))}, nil
		}
		return host.Result{Stdout: []byte(initOut)}, nil
	case "join":
		h.files[kubeletUnit] = []byte("# kubelet, " + component.UnitMarker)
		if strings.Contains(strings.Join(argv, " "), "--etcd") {
			n := h.c.etcdNow.Add(1)
			defer h.c.etcdNow.Add(-1)
			time.Sleep(20 * time.Millisecond) // long enough to overlap a parallel join
			for m := h.c.etcdMax.Load(); n > m && !h.c.etcdMax.CompareAndSwap(m, n); m = h.c.etcdMax.Load() {
			}
			// Echo the key back as a real join never would: the log must not keep it.
			return host.Result{Stdout: []byte("[discovery] key " + string(c.Stdin) + "\n[kubelet] " + h.c.state() + " in 1s\n")}, nil
		}
		return host.Result{Stdout: []byte("[kubelet] " + h.c.state() + " in 1s\n")}, nil
	case "reset", "etcd":
		h.c.mu.Lock()
		h.c.order = append(h.c.order, h.name+": "+strings.Join(argv[1:], " "))
		h.c.mu.Unlock()
		return host.Result{Stdout: []byte("[cleanup] done in 1s\n")}, nil
	}
	return host.Result{ExitCode: 2}, nil
}

func (c *cluster) state() string {
	if c.converged {
		return "unchanged"
	}
	return "done"
}

func newCluster(names ...string) *cluster {
	c := &cluster{hosts: map[string]*fakeHost{}}
	for _, n := range names {
		c.hosts[n] = &fakeHost{c: c, name: n, files: map[string][]byte{RemoteBundle + "/manifest.json": []byte("{}")}}
	}
	return c
}

func testConfig() *config.Cluster {
	c := config.Default()
	c.Spec.Hosts = []config.Host{
		{Name: "master01", Address: "10.0.0.1", Roles: []config.Role{config.RoleControlPlane, config.RoleEtcd}},
		{Name: "node01", Address: "10.0.0.2", Roles: []config.Role{config.RoleWorker, config.RoleEtcd}},
		{Name: "node02", Address: "10.0.0.3", Roles: []config.Role{config.RoleWorker, config.RoleEtcd}},
		{Name: "node03", Address: "10.0.0.4", Roles: []config.Role{config.RoleWorker}},
		{Name: "node04", Address: "10.0.0.5", Roles: []config.Role{config.RoleWorker}},
	}
	return c
}

func options(t *testing.T, fc *cluster, out *bytes.Buffer) Options {
	bin := filepath.Join(t.TempDir(), "kubeforge")
	if err := os.WriteFile(bin, []byte("#!kubeforge"), 0o755); err != nil {
		t.Fatal(err)
	}
	return Options{
		Cluster: testConfig(), ConfigYAML: []byte("kind: Cluster\n"), Binary: bin,
		RunDir: t.TempDir(), Out: out,
		Dial: func(_ context.Context, h config.Host) (host.Host, error) {
			if fh, ok := fc.hosts[h.Name]; ok {
				return fh, nil
			}
			return nil, fmt.Errorf("dial tcp %s:22: connect: no route to host", h.Address)
		},
	}
}

func TestApplyMakesAndConvergesTheCluster(t *testing.T) {
	fc := newCluster("master01", "node01", "node02", "node03", "node04")
	var out bytes.Buffer
	o := options(t, fc, &out)
	res, err := Apply(context.Background(), o)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out.String())
	}
	want := map[string]string{"master01": "init", "node01": "join --etcd", "node02": "join --etcd", "node03": "join", "node04": "join"}
	for _, r := range res {
		if r.Outcome != Done || r.Action != want[r.Name] {
			t.Errorf("%s: %s %s, want %s done", r.Name, r.Action, r.Outcome, want[r.Name])
		}
	}
	if !strings.Contains(out.String(), "node07 is a Node of the cluster but not a host of the file: left as it is (`kubeforge node remove node07` on master01") {
		t.Errorf("the Node missing from the file is not reported:\n%s", out.String())
	}
	if m := fc.etcdMax.Load(); m != 1 {
		t.Errorf("%d etcd members joined at once; etcd adds one learner at a time", m)
	}
	// The secrets went on stdin only, each host got the key for its role, and
	// neither the output nor a log keeps them.
	for name, h := range fc.hosts {
		for _, c := range h.ran {
			argv := strings.Join(c.Argv, " ")
			for _, s := range []string{testToken, cpKey, etcdKey} {
				if strings.Contains(argv, s) {
					t.Errorf("%s: a secret in argv: %s", name, argv)
				}
			}
			if !strings.Contains(argv, " join ") {
				continue
			}
			if !c.Secret || !strings.HasPrefix(string(c.Stdin), testToken+"\n") {
				t.Errorf("%s: join's stdin does not carry the token (secret=%v)", name, c.Secret)
			}
			key := strings.TrimSpace(strings.TrimPrefix(string(c.Stdin), testToken+"\n"))
			if wantKey := map[bool]string{true: etcdKey, false: ""}[strings.Contains(argv, "--etcd")]; key != wantKey {
				t.Errorf("%s: got certificate key %q, want %q", name, key, wantKey)
			}
		}
		if string(h.files[RemoteConfig]) != "kind: Cluster\n" || string(h.files[RemoteBinary]) != "#!kubeforge" {
			t.Errorf("%s: binary or configuration not staged", name)
		}
	}
	logs, _ := filepath.Glob(filepath.Join(o.RunDir, "*.log"))
	if len(logs) != 5 {
		t.Errorf("%d host logs, want 5", len(logs))
	}
	for _, l := range append(logs, "") {
		b := out.Bytes()
		if l != "" {
			b, _ = os.ReadFile(l)
		}
		for _, s := range []string{testToken, cpKey, etcdKey} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s keeps a secret", map[bool]string{true: "the output", false: l}[l == ""])
			}
		}
	}
	if b, _ := os.ReadFile(filepath.Join(o.RunDir, "master01.log")); !bytes.Contains(b, []byte(caHash)) {
		t.Error("the master01 log lost the CA hash, which is no secret")
	}

	// A second apply: nothing to copy, every host unchanged.
	fc.converged = true
	writes := map[string]int{}
	for n, h := range fc.hosts {
		writes[n] = h.writes
	}
	out.Reset()
	res, err = Apply(context.Background(), o)
	if err != nil {
		t.Fatalf("second apply: %v\n%s", err, out.String())
	}
	for _, r := range res {
		if r.Outcome != Unchanged {
			t.Errorf("second apply: %s %s", r.Name, r.Outcome)
		}
	}
	for n, h := range fc.hosts {
		if h.writes != writes[n] {
			t.Errorf("second apply wrote %d files on %s", h.writes-writes[n], n)
		}
	}
}

func TestUnreachableHostStopsBeforeAnyChange(t *testing.T) {
	fc := newCluster("master01", "node01", "node02", "node03") // node04 does not answer
	var out bytes.Buffer
	_, err := Apply(context.Background(), options(t, fc, &out))
	if err == nil || !strings.Contains(err.Error(), "node04: connect") || !strings.Contains(err.Error(), "no host was changed") {
		t.Fatalf("err = %v", err)
	}
	for name, h := range fc.hosts {
		for _, c := range h.ran {
			if c.Argv[0] != "uname" {
				t.Errorf("%s ran %v although node04 was unreachable", name, c.Argv)
			}
		}
		if _, ok := h.files[RemoteBinary]; ok {
			t.Errorf("%s was staged although node04 was unreachable", name)
		}
	}
	if !strings.Contains(out.String(), "node04 failed in connect") {
		t.Errorf("summary does not name node04:\n%s", out.String())
	}
}

func TestMissingBundleNamesTheHost(t *testing.T) {
	fc := newCluster("master01", "node01", "node02", "node03", "node04")
	delete(fc.hosts["node02"].files, RemoteBundle+"/manifest.json")
	var out bytes.Buffer
	_, err := Apply(context.Background(), options(t, fc, &out))
	if err == nil || !strings.Contains(err.Error(), "node02: stage: no bundle at "+RemoteBundle+" (pass --bundle") {
		t.Fatalf("err = %v", err)
	}
	if _, ok := fc.hosts["master01"].files[kubeAPIServerUnit]; ok {
		t.Error("init ran although a host could not be staged")
	}
}

func TestParseJoinAndRedact(t *testing.T) {
	j, err := parseJoin(initOut)
	if err != nil || j.Token != testToken || j.CertificateKey != cpKey || j.EtcdCertificateKey != etcdKey || j.Endpoint != "10.0.0.1:6443" || j.CAHash != caHash {
		t.Fatalf("%+v %v", j, err)
	}
	r := redact(initOut + "certificate key:\n" + cpKey + "\n")
	for _, s := range []string{testToken, cpKey, etcdKey} {
		if strings.Contains(r, s) {
			t.Errorf("redact kept %s:\n%s", s, r)
		}
	}
	if !strings.Contains(r, caHash) {
		t.Errorf("redact removed the CA hash:\n%s", r)
	}
	if _, err := parseJoin("[init] failed\n"); err == nil {
		t.Error("no join command parsed without error")
	}
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

func TestResetAllOrder(t *testing.T) {
	fc := newCluster("master01", "node01", "node02", "node03", "node04")
	for _, h := range fc.hosts {
		h.files[RemoteBinary] = []byte("#!kubeforge")
		h.files[RemoteConfig] = []byte("kind: Cluster\n")
	}
	var out bytes.Buffer
	if _, err := ResetAll(context.Background(), options(t, fc, &out)); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	o := fc.order
	if len(o) != 8 || o[0] != "master01: etcd remove-member node01" || o[1] != "master01: etcd remove-member node02" {
		t.Fatalf("order: %q", o)
	}
	// master01 last, and as etcd's last member its etcd phase is forced.
	if !strings.HasPrefix(o[6], "master01: reset phase etcd --force --force-etcd-removal") || !strings.HasPrefix(o[7], "master01: reset --force") {
		t.Errorf("master01 is not reset last with its etcd forced: %q", o)
	}
	for _, l := range o[2:6] {
		if strings.Contains(l, "force-etcd-removal") {
			t.Errorf("a member host forced its etcd removal although master01 removed it: %q", l)
		}
	}
	for n, h := range fc.hosts {
		if _, ok := h.files[RemoteConfig]; ok {
			t.Errorf("%s keeps apply's configuration", n)
		}
	}
}

// ranPreflight reports whether apply ran the standalone preflight on h.
func (h *fakeHost) ranPreflight() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.ran {
		if strings.Contains(strings.Join(c.Argv, " "), RemoteBinary+" preflight") {
			return true
		}
	}
	return false
}

// A run killed half-way leaves hosts that init or join set up in part: their
// daemons hold the ports and /etc/kubernetes is full, so the standalone
// preflight would refuse them. apply leaves such a host to init's or join's
// re-run checks, by the same test they use (their unit is kubeforge's, or
// kubeforge created /etc/kubernetes), and still checks a host whose kubelet
// someone else installed.
func TestResumedApplyLeavesHalfSetUpHostsToInitAndJoin(t *testing.T) {
	fc := newCluster("master01", "node01", "node02", "node03", "node04", "node05")
	fc.hosts["master01"].files[kubeAPIServerUnit] = []byte("# kube-apiserver, " + component.UnitMarker)
	fc.hosts["node01"].files[kubeletUnit] = []byte("# kubelet, " + component.UnitMarker)                                // join killed after its kubelet phase
	fc.hosts["node02"].files[component.UnitDir+"/containerd.service"] = []byte("# containerd, " + component.UnitMarker) // ... after containerd
	fc.hosts["node03"].files[kubeletUnit] = []byte("[Unit]\nDescription=kubelet from a package\n")
	// ... after its certs phase, before any unit: /etc/kubernetes is kubeforge's.
	fc.hosts["node05"].files[certs.DefaultKubeconfigDir+"/"+owndirs.Marker] = []byte("created by kubeforge\n")
	var out bytes.Buffer
	if _, err := Apply(context.Background(), options(t, fc, &out)); err != nil {
		t.Fatalf("apply: %v\n%s", err, out.String())
	}
	for name, want := range map[string]bool{"master01": false, "node01": false, "node02": false, "node03": true, "node04": true, "node05": false} {
		if got := fc.hosts[name].ranPreflight(); got != want {
			t.Errorf("%s: standalone preflight ran = %v, want %v", name, got, want)
		}
	}
}
