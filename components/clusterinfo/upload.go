package clusterinfo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/bootstraptoken"
	"github.com/kubeforge/kubeforge/components/kubeclient"
)

// Names of what upload-config and upload-certs store.
const (
	ConfigMapName = "kubeforge-config"
	// ConfigKey holds the cluster configuration YAML in ConfigMapName.
	ConfigKey  = "cluster.yaml"
	ConfigRole = "kubeforge:config-reader"

	CertsSecretName = "kubeforge-certs"
	// CertsKey holds the encrypted bundle (certs.EncryptBundle) in CertsSecretName.
	CertsKey  = "bundle"
	CertsRole = "kubeforge:certs-reader"
	// CertsTTL is how long the uploaded certificates live (kubeadm's 2 h).
	CertsTTL = 2 * time.Hour
	// CertsTokenDescription marks the token that only carries the TTL.
	CertsTokenDescription = "kubeforge: proxy for managing the TTL of the " + CertsSecretName + " Secret"

	// EncryptionConfigKey is the bundle entry of the apiserver's encryption
	// configuration: every apiserver of a cluster needs the same key, or Secrets
	// written through one are unreadable through the others. The other entries
	// are certs.SharedFiles, relative to the cert dir.
	EncryptionConfigKey = "kubeforge/encryption-config.yaml"
)

// readers is who may read the uploads: joining hosts authenticate with a join
// token (NodeGroup); joined nodes (system:nodes) may read the configuration.
func readerRole(name, resource string, objects ...string) *rbacv1.Role {
	return &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceSystem},
		Rules:      []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{resource}, ResourceNames: objects}},
	}
}

func readerBinding(name string, groups ...string) *rbacv1.RoleBinding {
	b := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceSystem},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
	}
	for _, g := range groups {
		b.Subjects = append(b.Subjects, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: g})
	}
	return b
}

// UploadConfig stores the cluster configuration in kube-system/kubeforge-config,
// readable by joining and joined nodes, and creates the (empty) record of
// joined hosts next to it (JoinedHostsConfigMapName), readable by the same. It
// reports what it changed.
func UploadConfig(ctx context.Context, c kubernetes.Interface, cfg *config.Cluster) ([]string, error) {
	data, err := config.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding the cluster configuration: %w", err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: metav1.NamespaceSystem},
		Data:       map[string]string{ConfigKey: string(data)},
	}
	var changed []string
	ch, err := kubeclient.Apply(ctx, c.CoreV1().ConfigMaps(metav1.NamespaceSystem), cm, kubeclient.ConfigMapData)
	if err != nil {
		return nil, fmt.Errorf("ConfigMap kube-system/%s: %w", ConfigMapName, err)
	}
	if ch {
		changed = append(changed, "ConfigMap kube-system/"+ConfigMapName)
	}
	created, err := EnsureJoinedHosts(ctx, c)
	if err != nil {
		return changed, err
	}
	if created {
		changed = append(changed, "ConfigMap kube-system/"+JoinedHostsConfigMapName)
	}
	more, err := applyRole(ctx, c, readerRole(ConfigRole, "configmaps", ConfigMapName, JoinedHostsConfigMapName),
		readerBinding(ConfigRole, bootstraptoken.NodeGroup, bootstraptoken.NodesGroup))
	return append(changed, more...), err
}

// DownloadConfig reads the cluster configuration back (join, the CSR
// approver), with the recorded joined hosts appended to its hosts table
// (MergeJoinedHosts). A record the reader may not read (a cluster from before
// it existed) adds nothing.
func DownloadConfig(ctx context.Context, c kubernetes.Interface) (*config.Cluster, error) {
	cfg, err := downloadConfig(ctx, c)
	if err != nil {
		return nil, err
	}
	joined, err := JoinedHosts(ctx, c)
	if apierrors.IsForbidden(errors.Unwrap(err)) {
		return cfg, nil
	}
	if err != nil {
		return nil, err
	}
	return MergeJoinedHosts(cfg, joined), nil
}

// downloadConfig reads kube-system/kubeforge-config alone.
func downloadConfig(ctx context.Context, c kubernetes.Interface) (*config.Cluster, error) {
	cm, err := c.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, ConfigMapName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading kube-system/%s: %w", ConfigMapName, err)
	}
	cfg, err := config.Decode([]byte(cm.Data[ConfigKey]))
	if err != nil {
		return nil, fmt.Errorf("kube-system/%s: %w", ConfigMapName, err)
	}
	return cfg, nil
}

// ErrNoUpload means kubeforge-certs does not exist (never uploaded, or deleted
// after its two hours).
var ErrNoUpload = errors.New("no certificates are uploaded (Secret kube-system/" + CertsSecretName + " does not exist, or expired): run `kubeforge init phase upload-certs --config <cluster configuration>` on the first control-plane host")

// UploadCerts encrypts files (relative path -> content) under key and stores
// them in kube-system/kubeforge-certs, owned by a new bootstrap token without
// usages that expires after CertsTTL: the tokencleaner deletes the token, and the
// garbage collector the Secret with it. A previous upload is replaced, and the
// token that carried its TTL deleted.
func UploadCerts(ctx context.Context, c kubernetes.Interface, key string, files map[string][]byte) error {
	blob, err := certs.EncryptBundle(key, files)
	if err != nil {
		return err
	}
	return uploadSecret(ctx, c, CertsSecretName, CertsRole, map[string][]byte{CertsKey: blob})
}

// ttlTokenDescription is the description of the token that carries the TTL of
// Secret kube-system/name.
func ttlTokenDescription(name string) string {
	return "kubeforge: proxy for managing the TTL of the " + name + " Secret"
}

// uploadSecret stores data in kube-system/name with a two-hour life (see
// UploadCerts), readable by joining hosts through role.
func uploadSecret(ctx context.Context, c kubernetes.Interface, name, role string, data map[string][]byte) error {
	var superseded []string
	if old, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, name, metav1.GetOptions{}); err == nil {
		for _, o := range old.OwnerReferences {
			if o.Kind == "Secret" && strings.HasPrefix(o.Name, "bootstrap-token-") {
				superseded = append(superseded, o.Name)
			}
		}
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading kube-system/%s: %w", name, err)
	}
	// Each upload's carrier names its own Secret: `token list` then says
	// which upload a token keeps alive.
	tok, err := bootstraptoken.Generate(CertsTTL, ttlTokenDescription(name))
	if err != nil {
		return err
	}
	tok.Usages, tok.Groups = nil, nil // a TTL carrier, not a credential
	owner, err := bootstraptoken.Create(ctx, c, tok)
	if err != nil {
		return err
	}
	ctrl := true
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: metav1.NamespaceSystem,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Secret", Name: owner.Name, UID: owner.UID, Controller: &ctrl}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
	if _, err := kubeclient.Apply(ctx, c.CoreV1().Secrets(metav1.NamespaceSystem), secret, kubeclient.SecretData); err != nil {
		return fmt.Errorf("Secret kube-system/%s: %w", name, err)
	}
	for _, tn := range superseded {
		// Only a TTL carrier of an earlier upload; it owns nothing any more.
		if err := c.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, tn, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting the superseded upload token %s: %w", tn, err)
		}
	}
	_, err = applyRole(ctx, c, readerRole(role, "secrets", name), readerBinding(role, bootstraptoken.NodeGroup))
	return err
}

// The etcd member hand-over: kube-system/kubeforge-etcd-members holds one entry
// per etcd host that is not a control-plane host, each encrypted under the etcd
// certificate key (not the control-plane one): its member certificates
// (certs.EtcdMemberHandoverFiles) and a one-join etcd credential
// (EtcdJoinCertFile, EtcdJoinKeyFile), which is only used in memory.
const (
	EtcdMembersSecretName = "kubeforge-etcd-members"
	EtcdMembersRole       = "kubeforge:etcd-members-reader"
	EtcdJoinCertFile      = "kubeforge/etcd-join.crt"
	EtcdJoinKeyFile       = "kubeforge/etcd-join.key"
)

// ErrNoEtcdUpload means there is no live etcd member hand-over for a host.
var ErrNoEtcdUpload = errors.New("no etcd member certificates are uploaded for this host (Secret kube-system/" + EtcdMembersSecretName + " does not exist, expired, or has no entry for it): run `kubeforge init phase upload-certs --config <cluster configuration>` on the first control-plane host")

// UploadEtcdMembers encrypts each member's files under key and stores them in
// kube-system/kubeforge-etcd-members, with the two-hour life of UploadCerts.
func UploadEtcdMembers(ctx context.Context, c kubernetes.Interface, key string, members map[string]map[string][]byte) error {
	data := map[string][]byte{}
	for name, files := range members {
		blob, err := certs.EncryptBundle(key, files)
		if err != nil {
			return err
		}
		data[name] = blob
	}
	return uploadSecret(ctx, c, EtcdMembersSecretName, EtcdMembersRole, data)
}

// DownloadEtcdMember reads and decrypts node's entry of the etcd member
// hand-over.
func DownloadEtcdMember(ctx context.Context, c kubernetes.Interface, key, node string) (map[string][]byte, error) {
	s, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, EtcdMembersSecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, ErrNoEtcdUpload
	}
	if err != nil {
		return nil, fmt.Errorf("reading kube-system/%s: %w", EtcdMembersSecretName, err)
	}
	blob, ok := s.Data[node]
	if !ok {
		return nil, fmt.Errorf("%w (%s)", ErrNoEtcdUpload, node)
	}
	files, err := certs.DecryptBundle(key, blob)
	if err != nil {
		return nil, fmt.Errorf("kube-system/%s: %w", EtcdMembersSecretName, err)
	}
	return files, nil
}

// MinUploadLife is how long an upload must still live for a rerun of init to
// keep it. An upload about to expire is replaced: the token cleaner deletes
// its TTL carrier (and the garbage collector the Secret) at any moment after
// expiry, which after a cluster restart is seconds after init has looked.
const MinUploadLife = CertsTTL / 2

// uploadLongLived reports whether kube-system/name exists and its TTL carrier
// lives for at least MinUploadLife more.
func uploadLongLived(ctx context.Context, c kubernetes.Interface, name string, now time.Time) (bool, error) {
	s, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading kube-system/%s: %w", name, err)
	}
	for _, o := range s.OwnerReferences {
		if o.Kind != "Secret" || !strings.HasPrefix(o.Name, "bootstrap-token-") {
			continue
		}
		owner, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, o.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading the TTL token of kube-system/%s: %w", name, err)
		}
		tok, err := bootstraptoken.FromSecret(owner)
		if err != nil {
			return false, nil // not ours to judge: upload again
		}
		return tok.Expires.IsZero() || tok.Expires.Sub(now) >= MinUploadLife, nil
	}
	return false, nil
}

// EtcdUploadLive reports whether the etcd member hand-over exists, lives for at
// least MinUploadLife more, has an entry for every one of members and decrypts
// with key.
func EtcdUploadLive(ctx context.Context, c kubernetes.Interface, key string, members []string) (bool, error) {
	if ok, err := uploadLongLived(ctx, c, EtcdMembersSecretName, time.Now()); !ok || err != nil {
		return false, err
	}
	for _, m := range members {
		_, err := DownloadEtcdMember(ctx, c, key, m)
		switch {
		case errors.Is(err, ErrNoEtcdUpload), errors.Is(err, certs.ErrWrongCertificateKey), errors.Is(err, certs.ErrCorruptBundle):
			return false, nil
		case err != nil:
			return false, err
		}
	}
	return true, nil
}

// DownloadCerts reads and decrypts kube-system/kubeforge-certs. A wrong key is
// certs.ErrWrongCertificateKey; no upload is ErrNoUpload.
func DownloadCerts(ctx context.Context, c kubernetes.Interface, key string) (map[string][]byte, error) {
	s, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, CertsSecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, ErrNoUpload
	}
	if err != nil {
		return nil, fmt.Errorf("reading kube-system/%s: %w", CertsSecretName, err)
	}
	files, err := certs.DecryptBundle(key, s.Data[CertsKey])
	if err != nil {
		return nil, fmt.Errorf("kube-system/%s: %w", CertsSecretName, err)
	}
	return files, nil
}

// UploadCurrent reports whether the live upload decrypts with key, holds
// exactly files and lives for at least MinUploadLife more: then there is
// nothing to upload again.
func UploadCurrent(ctx context.Context, c kubernetes.Interface, key string, files map[string][]byte) (bool, error) {
	if ok, err := uploadLongLived(ctx, c, CertsSecretName, time.Now()); !ok || err != nil {
		return false, err
	}
	got, err := DownloadCerts(ctx, c, key)
	switch {
	case errors.Is(err, ErrNoUpload), errors.Is(err, certs.ErrWrongCertificateKey), errors.Is(err, certs.ErrCorruptBundle):
		return false, nil
	case err != nil:
		return false, err
	}
	return maps.EqualFunc(got, files, bytes.Equal), nil
}
