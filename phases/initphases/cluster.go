package initphases

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/bootstraptoken"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/phases/rundata"
	"github.com/kubeforge/kubeforge/phases/workflow"
)

func (r *run) uploadConfigPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "upload-config",
		Short: "Store the cluster configuration in the cluster for later joins",
		Long: `Store the cluster configuration in ConfigMap kube-system/kubeforge-config,
readable by joining hosts (with a join token) and by nodes, and keep a copy on
this host in ` + ClusterConfigPath + ` (0600) for later commands such as
'kubeforge certs renew'.`,
		Run: r.runUploadConfig,
	}
}

func (r *run) runUploadConfig(d workflow.RunData) error {
	data, err := r.data(d, "upload-config")
	if err != nil {
		return err
	}
	cli, err := r.client(data)
	if err != nil {
		return err
	}
	changed, err := clusterinfo.UploadConfig(data.Context(), cli, data.Config())
	if err != nil {
		return err
	}
	wrote, err := keepConfigCopy(data)
	if err != nil {
		return err
	}
	if wrote {
		changed = append(changed, ClusterConfigPath)
	}
	if len(changed) == 0 {
		return workflow.Unchanged("kube-system/%s is current", clusterinfo.ConfigMapName)
	}
	if !data.DryRun() { // a dry run printed every object already
		data.Logger().Printf("stored: %s", strings.Join(changed, ", "))
	}
	return nil
}

// ClusterConfigPath is the host's own copy of the cluster configuration init ran
// with. Later commands on the host that must rebuild a unit exactly as init wrote
// it (`kubeforge certs renew` re-ensuring the control-plane units) read it when
// --config is not given. 0600: it names every host and its SSH key path.
const ClusterConfigPath = config.HostCopyPath

// keepConfigCopy writes ClusterConfigPath unless it already holds this
// configuration; it reports whether it wrote.
func keepConfigCopy(data rundata.Data) (bool, error) {
	ctx, h := data.Context(), data.Host()
	want, err := config.Marshal(data.Config())
	if err != nil {
		return false, err
	}
	if cur, err := h.ReadFile(ctx, ClusterConfigPath); err == nil && bytes.Equal(cur, want) {
		if fi, err := h.Stat(ctx, ClusterConfigPath); err == nil && fi.Mode.Perm() == 0o600 {
			return false, nil
		}
	} else if err != nil && !host.IsNotExist(err) {
		return false, err
	}
	if err := h.WriteFile(ctx, ClusterConfigPath, want, host.WriteOptions{Mode: 0o600}); err != nil {
		return false, fmt.Errorf("%s: keeping a copy of the configuration: %w", h.Name(), err)
	}
	return true, nil
}

func (r *run) uploadCertsPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "upload-certs",
		Short: "Store the encrypted control-plane certificates for joining control-plane nodes",
		Long: `Encrypt the CA keys, the service-account key pair and the encryption
configuration that a joining control-plane host needs with a new random
certificate key (AES-256-GCM), store them in Secret kube-system/kubeforge-certs and
print the key. The Secret is owned by a bootstrap token that expires after two
hours, so the cluster deletes it by itself.

etcd hosts that are not control-plane hosts get a hand-over of their own, under a
separate etcd certificate key, in Secret kube-system/kubeforge-etcd-members: per
host its etcd member certificates, issued here from the etcd CA for the address
the configuration records (no CA key), and, for a host that is not a member yet,
a one-join etcd credential (valid two hours; its join deletes its etcd user).
A new hand-over also renews the member certificates of hosts that joined.

Within a full 'kubeforge init' a live upload of the current files is kept, so a
rerun changes nothing; 'kubeforge init phase upload-certs' on its own always
makes a new upload under a new key.`,
		Run: r.runUploadCerts,
	}
}

// sharedFiles are what a joining control-plane host receives.
func sharedFiles(data rundata.Data) (map[string][]byte, error) {
	ctx, h := data.Context(), data.Host()
	files, err := certs.ReadSharedFiles(certs.HostFS{Ctx: ctx, Host: h}, data.CertDir())
	if err != nil {
		return nil, err
	}
	o := controlPlaneOptions(data)
	enc, err := h.ReadFile(ctx, o.EncryptionConfigPath())
	switch {
	case err == nil:
		files[clusterinfo.EncryptionConfigKey] = enc
	case !host.IsNotExist(err):
		return nil, err
	}
	return files, nil
}

func (r *run) runUploadCerts(d workflow.RunData) error {
	data, err := rundata.From(d, "upload-certs")
	if err != nil {
		return err
	}
	alone := !r.started("upload-certs")
	if data.Config() == nil {
		return errors.New("phase upload-certs needs the cluster configuration (--config)")
	}
	ctx, h, log := data.Context(), data.Host(), data.Logger()
	cli, err := r.client(data)
	if err != nil {
		return err
	}
	// etcd member hosts get their own hand-over under their own key: member
	// certificates only, never a CA key.
	if r.etcdKey, err = r.uploadEtcdMembers(data, alone); err != nil {
		return err
	}
	if alone && r.etcdKey != "" && !data.DryRun() {
		log.Printf("etcd certificate key (for `kubeforge join ... --etcd`):")
		fmt.Fprintln(log.Writer(), r.etcdKey)
	}
	files, err := sharedFiles(data)
	if err != nil {
		return err
	}
	keyPath := certificateKeyPath(data)
	if !alone {
		if old, err := h.ReadFile(ctx, keyPath); err == nil {
			key := strings.TrimSpace(string(old))
			current, err := clusterinfo.UploadCurrent(ctx, cli, key, files)
			if err != nil {
				return err
			}
			if current {
				r.certKey = key
				return workflow.Unchanged("kube-system/%s holds the current files (key in %s)", clusterinfo.CertsSecretName, keyPath)
			}
		} else if !host.IsNotExist(err) {
			return err
		}
	}
	key, err := certs.NewCertificateKey()
	if err != nil {
		return err
	}
	if err := clusterinfo.UploadCerts(ctx, cli, key, files); err != nil {
		return err
	}
	if err := h.WriteFile(ctx, keyPath, []byte(key+"\n"), host.WriteOptions{Mode: 0o600, Secret: true}); err != nil {
		return err
	}
	// The key goes from the disk when the upload goes from the cluster.
	if err := armCertificateKeyExpiry(ctx, h, keyPath, time.Now()); err != nil {
		return err
	}
	r.certKey = key
	if data.DryRun() {
		log.Printf("dry run: would store %d files encrypted under a new certificate key", len(files))
		return nil
	}
	log.Printf("stored %d files encrypted in Secret kube-system/%s; it is deleted in %s", len(files), clusterinfo.CertsSecretName, clusterinfo.CertsTTL)
	if alone {
		// Run on its own, the key is the point: print it where scripts find it.
		log.Printf("certificate key:")
		fmt.Fprintln(log.Writer(), key)
	} else {
		log.Printf("the certificate key is part of the join commands at the end")
	}
	return nil
}

func (r *run) bootstrapTokenPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "bootstrap-token",
		Short: "Create the bootstrap token and RBAC for node TLS bootstrap",
		Long: `Create (or keep, while it is valid for at least an hour) the join token,
the RBAC that lets kubelets with it request a client certificate that is approved
automatically (and renew it later), and the cluster-info ConfigMap that joining
hosts verify against the CA hash. Then wait until the controller-manager's
bootstrap signer has signed cluster-info for the token, and check the signature.`,
		Run: r.runBootstrapToken,
	}
}

func (r *run) runBootstrapToken(d workflow.RunData) error {
	data, err := r.data(d, "bootstrap-token")
	if err != nil {
		return err
	}
	ctx, h, log := data.Context(), data.Host(), data.Logger()
	cli, err := r.client(data)
	if err != nil {
		return err
	}
	tok, created, err := bootstraptoken.EnsureInitToken(ctx, cli, bootstraptoken.DefaultTTL, time.Hour)
	if err != nil {
		return err
	}
	r.token = &tok
	var changed []string
	if created && !data.DryRun() {
		log.Printf("created join token %s, valid until %s", tok.ID, tok.Expires.Local().Format(time.RFC3339))
	}
	rb, err := bootstraptoken.EnsureNodeBootstrapRBAC(ctx, cli)
	if err != nil {
		return err
	}
	changed = append(changed, rb...)
	ca, err := h.ReadFile(ctx, path.Join(data.CertDir(), "ca.crt"))
	if err != nil {
		return err
	}
	ci, err := clusterinfo.EnsureClusterInfo(ctx, cli, data.Config().APIServerURL(), ca)
	if err != nil {
		return err
	}
	changed = append(changed, ci...)
	if created {
		changed = append(changed, "token "+tok.ID)
	}
	if len(changed) > 0 && !data.DryRun() {
		log.Printf("created or updated: %s", strings.Join(changed, ", "))
	}
	if data.DryRun() {
		log.Printf("dry run: would wait for the bootstrap signer to sign cluster-info")
	} else {
		took, err := clusterinfo.WaitSigned(ctx, cli, tok, 2*time.Minute, log.Printf)
		if err != nil {
			return err
		}
		if len(changed) > 0 {
			log.Printf("cluster-info signed for token %s after %s", tok.ID, took.Round(10*time.Millisecond))
		}
	}
	if len(changed) == 0 {
		return workflow.Unchanged("token %s valid until %s; RBAC and signed cluster-info in place", tok.ID, tok.Expires.Local().Format(time.RFC3339))
	}
	return nil
}

func (r *run) showJoinPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "show-join-command",
		Short: "Print the command that joins further nodes",
		Run:   r.runShowJoin,
	}
}

func (r *run) runShowJoin(d workflow.RunData) error {
	data, err := r.data(d, "show-join-command")
	if err != nil {
		return err
	}
	ctx, h := data.Context(), data.Host()
	caPEM, err := h.ReadFile(ctx, path.Join(data.CertDir(), "ca.crt"))
	if err != nil {
		return err
	}
	ca, err := certs.ParseCertPEM(caPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", path.Join(data.CertDir(), "ca.crt"), err)
	}
	j := bootstraptoken.JoinCommand{Endpoint: data.Config().Spec.ControlPlaneEndpoint, CAHash: certs.CAHash(ca)}
	if data.DryRun() {
		j.Token, j.CertificateKey, j.EtcdCertificateKey = "<token>", "<certificate-key>", "<etcd-certificate-key>"
	} else {
		cli, err := r.client(data)
		if err != nil {
			return err
		}
		tok := r.token
		if tok == nil {
			tokens, err := bootstraptoken.List(ctx, cli)
			if err != nil {
				return err
			}
			for _, t := range tokens {
				if t.Description == bootstraptoken.InitDescription && !t.Expired(time.Now()) {
					tok = &t
					break
				}
			}
		}
		if tok == nil {
			return errors.New("no valid join token from kubeforge init: run `kubeforge init phase bootstrap-token` (or `kubeforge token create --print-join-command`)")
		}
		j.Token = tok.String()
		key := r.certKey
		if key == "" {
			if b, err := h.ReadFile(ctx, certificateKeyPath(data)); err == nil {
				key = strings.TrimSpace(string(b))
				_, err := clusterinfo.DownloadCerts(ctx, cli, key)
				switch {
				case errors.Is(err, clusterinfo.ErrNoUpload), errors.Is(err, certs.ErrWrongCertificateKey), errors.Is(err, certs.ErrCorruptBundle):
					// Expired or replaced: the key would not help a joining host,
					// and on disk it only decrypts old copies of the CA keys.
					key = ""
					if err := h.Remove(ctx, certificateKeyPath(data)); err != nil {
						return err
					}
					data.Logger().Printf("removed %s: its upload has expired or was replaced", certificateKeyPath(data))
				case err != nil:
					key = ""
				}
			}
		}
		j.CertificateKey = key
		ekey := r.etcdKey
		if ekey == "" {
			if b, err := h.ReadFile(ctx, etcdCertificateKeyPath(data)); err == nil {
				ekey = strings.TrimSpace(string(b))
				var names []string
				for _, m := range etcdHandoverHosts(data.Config(), data.Node().Name) {
					names = append(names, m.Name)
				}
				live, err := clusterinfo.EtcdUploadLive(ctx, cli, ekey, names)
				if err == nil && !live {
					// Expired or replaced: on disk it only decrypts old copies.
					if err := h.Remove(ctx, etcdCertificateKeyPath(data)); err != nil {
						return err
					}
					data.Logger().Printf("removed %s: its upload has expired or was replaced", etcdCertificateKeyPath(data))
				}
				if err != nil || !live {
					ekey = ""
				}
			}
		}
		j.EtcdCertificateKey = ekey
	}
	fmt.Fprint(data.Logger().Writer(), "\n"+j.Text()+"\n")
	return workflow.Unchanged("printed the join commands")
}
