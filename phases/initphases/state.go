package initphases

import (
	"fmt"
	"io"
	"path"
	"strings"
	"sync"

	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/bootstraptoken"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/controlplane"
	"github.com/kubeforge/kubeforge/components/kubeclient"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// run is what the phases of one `init` process share beyond the run data: the
// API client (built once, after the control plane is up), what earlier phases
// produced for show-join-command, and which phases ran.
type run struct {
	mu  sync.Mutex
	ran []string
	cli *kubeclient.Client
	// token and certKey as created or found by bootstrap-token and upload-certs.
	token   *bootstraptoken.Token
	certKey string
	// etcdKey decrypts the etcd member hand-over (not the CA keys).
	etcdKey string
}

// started records that a phase runs and reports whether any phase ran before it
// in this process, which tells `init phase upload-certs` (on its own: an
// operator asking for a fresh key) from a full `init` (keep a live upload).
func (r *run) started(name string) (others bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	others = len(r.ran) > 0
	r.ran = append(r.ran, name)
	return others
}

// data asserts the run data and records the phase as started.
func (r *run) data(d workflow.RunData, phase string) (rundata.Data, error) {
	data, err := rundata.From(d, phase)
	if err != nil {
		return nil, err
	}
	r.started(phase)
	if data.Config() == nil || data.Node() == nil {
		return nil, fmt.Errorf("phase %s needs the cluster configuration (--config)", phase)
	}
	return data, nil
}

// certificateKeyPath is where init keeps the certificate key of the live upload,
// so that a rerun can print the same control-plane join command. It sits with
// the CA keys it protects: whoever can read it can read those already.
func certificateKeyPath(data rundata.Data) string {
	return path.Join(data.CertDir(), "kubeforge-certificate-key")
}

// controlPlaneOptions maps the run data onto the control-plane package.
func controlPlaneOptions(data rundata.Data) controlplane.Options {
	return controlplane.Options{Cluster: data.Config(), Node: *data.Node(), CertDir: data.CertDir(), KubeconfigDir: data.KubeconfigDir()}
}

func hasRole(role config.Role) func(workflow.RunData) (bool, error) {
	return func(d workflow.RunData) (bool, error) {
		data, err := rundata.From(d, "init")
		if err != nil {
			return false, err
		}
		return data.Node() != nil && data.Node().HasRole(role), nil
	}
}

// client returns the API client of this run, from admin.conf (read through the
// host, so a dry run sees its planned file). The first call also makes sure
// admin.conf has its rights: its group kubeadm:cluster-admins is bound to
// cluster-admin through super-admin.conf, once, as kubeadm does.
func (r *run) client(data rundata.Data) (*kubeclient.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cli != nil {
		return r.cli, nil
	}
	ctx, h := data.Context(), data.Host()
	open := func(name string) (*kubeclient.Client, error) {
		p := path.Join(data.KubeconfigDir(), name)
		kc, err := h.ReadFile(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (run `kubeforge init phase kubeconfig`)", p, err)
		}
		c, err := kubeclient.New(kc, kubeclient.Options{DryRun: data.DryRun(), Logf: data.Logger().Printf})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return c, nil
	}
	cli, err := open(certs.KubeconfigAdmin)
	if err != nil {
		return nil, err
	}
	changed, err := clusterinfo.EnsureClusterAdmins(ctx, cli, func() (kubernetes.Interface, error) { return open(certs.KubeconfigSuperAdmin) })
	if err != nil {
		return nil, fmt.Errorf("giving %s its rights (ClusterRoleBinding %s): %w", certs.KubeconfigAdmin, clusterinfo.ClusterAdminsGroup, err)
	}
	if changed && !data.DryRun() {
		data.Logger().Printf("bound group %s to cluster-admin for %s", clusterinfo.ClusterAdminsGroup, certs.KubeconfigAdmin)
	}
	r.cli = cli
	return cli, nil
}

// lineLogger turns a package's "[tag] message" lines into the phase logger's
// lines, without the tag the phase prefix already says.
type lineLogger struct {
	l   *workflow.Logger
	buf strings.Builder
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.buf.Write(p)
	s := w.buf.String()
	for {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			break
		}
		line := s[:i]
		if strings.HasPrefix(line, "[") {
			if j := strings.Index(line, "] "); j > 0 && !strings.Contains(line[:j], " ") {
				line = line[j+2:]
			}
		}
		w.l.Printf("%s", line)
		s = s[i+1:]
	}
	w.buf.Reset()
	w.buf.WriteString(s)
	return len(p), nil
}

var _ io.Writer = (*lineLogger)(nil)
