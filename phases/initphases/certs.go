package initphases

import (
	"io/fs"
	"strings"
	"sync/atomic"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

// countingFS counts the files the PKI writes, which is how a phase knows it
// changed nothing.
type countingFS struct {
	certs.FS
	writes atomic.Int32
}

func (c *countingFS) WriteFile(path string, data []byte, perm fs.FileMode) error {
	c.writes.Add(1)
	return c.FS.WriteFile(path, data, perm)
}

// pki is the certs package's PKI for this node, writing through the host (so a
// dry run plans the files, with key material marked secret).
func pki(data interface {
	workflow.LoggerProvider
}, spec certs.Spec, certDir, kubeconfigDir string, fsys certs.FS) *certs.PKI {
	return &certs.PKI{Spec: spec, CertDir: certDir, KubeconfigDir: kubeconfigDir, FS: fsys, Out: &lineLogger{l: data.Logger()}}
}

func (r *run) certsPhase() workflow.Phase {
	var subs []workflow.Phase
	for _, c := range certs.Catalog() {
		p := workflow.Phase{Name: c.Name, Short: "Create or check the " + c.Description, Run: r.runCert(c.Name)}
		if c.Name == certs.CertEtcdServer || c.Name == certs.CertEtcdPeer {
			// Only an etcd member has a member certificate.
			p.RunIf = hasRole(config.RoleEtcd)
		}
		subs = append(subs, p)
	}
	return workflow.Phase{
		Name:  "certs",
		Short: "Create the cluster PKI",
		Long: `Create the CAs, certificates and keys in kubeadm's layout under --cert-dir,
or check and keep the ones that are there. A file that does not match (another CA,
a missing SAN, a key of another certificate) stops the run, naming the file; a
file is never silently replaced.`,
		Phases: subs,
	}
}

func (r *run) runCert(name string) func(workflow.RunData) error {
	return func(d workflow.RunData) error {
		data, err := r.data(d, "certs/"+name)
		if err != nil {
			return err
		}
		spec, err := certs.SpecFromConfig(data.Config(), data.Node().Name)
		if err != nil {
			return err
		}
		fsys := &countingFS{FS: certs.HostFS{Ctx: data.Context(), Host: data.Host()}}
		if err := pki(data, spec, data.CertDir(), data.KubeconfigDir(), fsys).CreateCerts(name); err != nil {
			return err
		}
		if fsys.writes.Load() == 0 {
			return workflow.Unchanged("%s is in place", name)
		}
		return nil
	}
}

func (r *run) kubeconfigPhase() workflow.Phase {
	var subs []workflow.Phase
	for _, n := range certs.KubeconfigNames() {
		short := map[string]string{
			certs.KubeconfigAdmin:             "Kubeconfig for the cluster administrator",
			certs.KubeconfigSuperAdmin:        "Kubeconfig that bypasses RBAC (break-glass)",
			certs.KubeconfigControllerManager: "Kubeconfig for kube-controller-manager",
			certs.KubeconfigScheduler:         "Kubeconfig for kube-scheduler",
			certs.KubeconfigKubelet:           "Kubeconfig for this node's kubelet",
			certs.KubeconfigKubeProxy:         "Kubeconfig for kube-proxy",
		}[n]
		subs = append(subs, workflow.Phase{Name: strings.TrimSuffix(n, ".conf"), Short: short, Run: r.runKubeconfig(n)})
	}
	return workflow.Phase{
		Name:  "kubeconfig",
		Short: "Write the kubeconfig files of clients and components",
		Long: `Write the kubeconfig files (0600, client certificate embedded) under
--kubeconfig-dir, or check and keep the ones that are there.`,
		Phases: subs,
	}
}

func (r *run) runKubeconfig(file string) func(workflow.RunData) error {
	return func(d workflow.RunData) error {
		data, err := r.data(d, "kubeconfig/"+strings.TrimSuffix(file, ".conf"))
		if err != nil {
			return err
		}
		spec, err := certs.SpecFromConfig(data.Config(), data.Node().Name)
		if err != nil {
			return err
		}
		fsys := &countingFS{FS: certs.HostFS{Ctx: data.Context(), Host: data.Host()}}
		if err := pki(data, spec, data.CertDir(), data.KubeconfigDir(), fsys).CreateKubeconfigs(file); err != nil {
			return err
		}
		if fsys.writes.Load() == 0 {
			return workflow.Unchanged("%s is in place", file)
		}
		return nil
	}
}
