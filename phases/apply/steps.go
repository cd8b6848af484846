package apply

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kubeforge/kubeforge/bootstrap/bundle"
	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/bootstraptoken"
	"github.com/kubeforge/kubeforge/components/component"
	"github.com/kubeforge/kubeforge/phases/initphases"
	"github.com/kubeforge/kubeforge/phases/joinphases"
)

// stage puts kubeforge, the configuration and the bundle on h, each only when
// what is there differs.
func (r *run) stage(ctx context.Context, n config.Host, h host.Host) error {
	bin, err := os.ReadFile(r.o.Binary)
	if err != nil {
		return fmt.Errorf("reading the local kubeforge binary: %w", err)
	}
	if same, err := remoteSHA256(ctx, h, RemoteBinary, bin); err != nil {
		return err
	} else if !same {
		if err := h.WriteFile(ctx, RemoteBinary, bin, host.WriteOptions{Mode: 0o755}); err != nil {
			return err
		}
		r.logs.printf(n.Name, "[apply] installed %s (%d bytes)", RemoteBinary, len(bin))
	}
	if old, err := h.ReadFile(ctx, RemoteConfig); err != nil || !bytes.Equal(old, r.o.ConfigYAML) {
		if err := h.WriteFile(ctx, RemoteConfig, r.o.ConfigYAML, host.WriteOptions{Mode: 0o600}); err != nil {
			return err
		}
		r.logs.printf(n.Name, "[apply] wrote %s", RemoteConfig)
	}
	return r.stageBundle(ctx, n, h)
}

// stageBundle copies the files of the local bundle h misses or has in another
// version, by checksum; without a local bundle, h must have one.
func (r *run) stageBundle(ctx context.Context, n config.Host, h host.Host) error {
	manifest := path.Join(RemoteBundle, bundle.ManifestName)
	if r.o.BundleDir == "" {
		if _, err := h.Stat(ctx, manifest); err != nil {
			if host.IsNotExist(err) {
				return fmt.Errorf("no bundle at %s (pass --bundle with a local bundle directory to copy it)", RemoteBundle)
			}
			return err
		}
		return nil
	}
	b, err := bundle.Open(r.o.BundleDir)
	if err != nil {
		return err
	}
	local, err := os.ReadFile(path.Join(b.Dir, bundle.ManifestName))
	if err != nil {
		return err
	}
	if remote, err := h.ReadFile(ctx, manifest); err == nil && bytes.Equal(remote, local) {
		return nil // same manifest: the phases verify each file's checksum on use
	}
	copied := 0
	for _, f := range b.Manifest.Files {
		data, err := os.ReadFile(b.Path(f.Path))
		if err != nil {
			return err
		}
		dst := path.Join(RemoteBundle, f.Path)
		if same, err := remoteSHA256(ctx, h, dst, data); err != nil {
			return err
		} else if same {
			continue
		}
		if err := h.WriteFile(ctx, dst, data, host.WriteOptions{Mode: 0o755}); err != nil {
			return err
		}
		copied++
	}
	// The manifest last: a host with a manifest has every file it names.
	if err := h.WriteFile(ctx, manifest, local, host.WriteOptions{Mode: 0o644}); err != nil {
		return err
	}
	r.logs.printf(n.Name, "[apply] copied %d bundle files to %s", copied, RemoteBundle)
	return nil
}

// remoteSHA256 reports whether p on h holds exactly data (by sha256sum there,
// so nothing big travels back).
func remoteSHA256(ctx context.Context, h host.Host, p string, data []byte) (bool, error) {
	if _, err := h.Stat(ctx, p); host.IsNotExist(err) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	cmd := host.Cmd{Argv: []string{"sha256sum", p}, ReadOnly: true}
	res, err := h.Run(ctx, cmd)
	if err != nil {
		return false, err
	}
	if !res.OK() {
		return false, res.Err(h.Name(), cmd)
	}
	sum := sha256.Sum256(data)
	got, _, _ := strings.Cut(string(res.Stdout), " ")
	return got == hex.EncodeToString(sum[:]), nil
}

// preflight runs kubeforge's checks (and fixes, with Fix) on a host that init
// or join did not set up before. On a host they did, in whole or in part (a
// run killed half-way), its own daemons hold the ports and its own files fill
// /etc/kubernetes: init and join then run their re-run checks themselves, by
// the same test (component.SetUpBefore: one of their RerunUnits is kubeforge's,
// or kubeforge created /etc/kubernetes), and converge the host.
func (r *run) preflight(ctx context.Context, n config.Host, h host.Host) error {
	units, who := joinphases.RerunUnits, "join"
	if first, err := initHost(r.o.Cluster); err == nil && first.Name == n.Name {
		units, who = initphases.RerunUnits, "init"
	}
	unit, err := component.SetUpBefore(ctx, h, certs.DefaultKubeconfigDir, units...)
	if err != nil {
		return err
	}
	if unit != "" {
		r.logs.printf(n.Name, "[apply] %s on %s is kubeforge's: %s checks the host itself", unit, n.Name, who)
		return nil
	}
	args := []string{"preflight", "--config", RemoteConfig, "--node-name", n.Name}
	if r.o.Fix {
		args = append(args, "--fix")
	}
	_, err = r.kubeforge(ctx, n.Name, h, nil, args...)
	return err
}

// init runs kubeforge init on the first control-plane host and returns the
// join parameters it printed.
func (r *run) init(ctx context.Context, n config.Host) (bootstraptoken.JoinCommand, error) {
	res := r.result(n.Name)
	res.Action = "init"
	t := time.Now()
	r.printf("%s: kubeforge init", n.Name)
	out, err := r.kubeforge(ctx, n.Name, r.hosts[n.Name], nil, "init", "--config", RemoteConfig, "--node-name", n.Name)
	res.Elapsed = time.Since(t)
	if err != nil {
		return bootstraptoken.JoinCommand{}, r.fail(n.Name, "init", err)
	}
	res.Outcome = outcome(out)
	r.printf("%s: init %s in %s", n.Name, res.Outcome, res.Elapsed.Round(100*time.Millisecond))
	j, err := parseJoin(out)
	if err != nil {
		return j, r.fail(n.Name, "init", err)
	}
	return j, nil
}

// joins joins every other host: etcd (and control-plane) hosts one at a time,
// as etcd adds one learner at a time; plain workers in parallel with them.
func (r *run) joins(ctx context.Context, first config.Host, j bootstraptoken.JoinCommand) error {
	var serial, parallel []config.Host
	for _, h := range r.o.Cluster.Spec.Hosts {
		switch {
		case h.Name == first.Name:
		case h.HasRole(config.RoleEtcd) || h.HasRole(config.RoleControlPlane):
			serial = append(serial, h)
		default:
			parallel = append(parallel, h)
		}
	}
	var g errgroup.Group
	var errs []error
	errc := make(chan error, len(parallel)+1)
	g.Go(func() error {
		for _, h := range serial {
			if err := r.join(ctx, h, j); err != nil {
				errc <- err
				return nil // later members wait for a fixed one: the next apply
			}
		}
		return nil
	})
	for _, h := range parallel {
		g.Go(func() error {
			if err := r.join(ctx, h, j); err != nil {
				errc <- err
			}
			return nil
		})
	}
	_ = g.Wait()
	close(errc)
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (r *run) join(ctx context.Context, n config.Host, j bootstraptoken.JoinCommand) error {
	res := r.result(n.Name)
	args := []string{"join", j.Endpoint, "--discovery-token-ca-cert-hash", j.CAHash, "--node-name", n.Name}
	key := ""
	switch {
	case n.HasRole(config.RoleControlPlane):
		args, key = append(args, "--control-plane"), j.CertificateKey
		if n.HasRole(config.RoleEtcd) {
			args = append(args, "--etcd")
		}
	case n.HasRole(config.RoleEtcd):
		args, key = append(args, "--etcd"), j.EtcdCertificateKey
	}
	res.Action = strings.Join(args[:1], " ")
	if len(args) > 6 {
		res.Action += " " + strings.Join(args[6:], " ")
	}
	if r.o.Fix {
		args = append(args, "--fix")
	}
	r.printf("%s: kubeforge %s", n.Name, res.Action)
	t := time.Now()
	out, err := r.kubeforge(ctx, n.Name, r.hosts[n.Name], []byte(j.Token+"\n"+key+"\n"), args...)
	res.Elapsed = time.Since(t)
	if err != nil {
		return r.fail(n.Name, res.Action, err)
	}
	res.Outcome = outcome(out)
	r.printf("%s: %s %s in %s", n.Name, res.Action, res.Outcome, res.Elapsed.Round(100*time.Millisecond))
	return nil
}

var (
	joinLine  = regexp.MustCompile(bootstraptoken.TokenEnv + `=(\S+) (?:` + bootstraptoken.CertificateKeyEnv + `=([0-9a-f]{64}) )?kubeforge join (\S+) --discovery-token-ca-cert-hash (\S+)( --etcd| --control-plane)?`)
	secretPat = []*regexp.Regexp{
		regexp.MustCompile(`(` + bootstraptoken.TokenEnv + `|` + bootstraptoken.CertificateKeyEnv + `)=\S+`),
		regexp.MustCompile(`\b[a-z0-9]{6}\.[a-z0-9]{16}\b`), // a bootstrap token
		regexp.MustCompile(`(sha256:)?\b[0-9a-f]{64}\b`),    // a certificate key (not a CA hash)
	}
)

// parseJoin reads the join commands init printed: the worker, etcd and
// control-plane forms share the token, endpoint and CA hash and differ in key.
func parseJoin(out string) (bootstraptoken.JoinCommand, error) {
	var j bootstraptoken.JoinCommand
	for _, m := range joinLine.FindAllStringSubmatch(out, -1) {
		j.Token, j.Endpoint, j.CAHash = m[1], m[3], m[4]
		switch m[5] {
		case " --etcd":
			j.EtcdCertificateKey = m[2]
		case " --control-plane":
			j.CertificateKey = m[2]
		}
	}
	if j.Token == "" {
		return j, errors.New("init printed no join command")
	}
	return j, nil
}

// redact replaces tokens and keys in out. The CA hash stays: it is public.
func redact(out string) string {
	out = secretPat[0].ReplaceAllString(out, "$1=<redacted>")
	out = secretPat[1].ReplaceAllString(out, "<redacted-token>")
	// A 64-hex run that is part of "sha256:<hex>" is the CA hash, not a key.
	return secretPat[2].ReplaceAllStringFunc(out, func(s string) string {
		if strings.HasPrefix(s, "sha256:") {
			return s
		}
		return "<redacted-key>"
	})
}

// logs keeps one file per host in the run directory.
type logs struct {
	dir   string
	mu    sync.Mutex
	files map[string]*os.File
}

func openLogs(dir string) (*logs, error) {
	l := &logs{dir: dir, files: map[string]*os.File{}}
	if dir == "" {
		return l, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	return l, nil
}

func (l *logs) file(name string) io.Writer {
	if l.dir == "" {
		return io.Discard
	}
	if f, ok := l.files[name]; ok {
		return f
	}
	f, err := os.OpenFile(path.Join(l.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return io.Discard
	}
	l.files[name] = f
	return f
}

// write logs text for host name, secrets redacted.
func (l *logs) write(name, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	io.WriteString(l.file(name), redact(text))
}

func (l *logs) printf(name, format string, a ...any) {
	l.write(name, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, a...)+"\n")
}

func (l *logs) Close() {
	for _, f := range l.files {
		f.Close()
	}
}
