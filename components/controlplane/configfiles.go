package controlplane

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"

	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// ClusterInfoPath is the one API path besides the health endpoints that anonymous
// requests may use: bootstrap-token discovery (kubeadm's and kubeforge's join)
// reads the cluster-info ConfigMap before it has any credentials, and checks it
// against the CA hash and the token's JWS signature, not against TLS.
const ClusterInfoPath = "/api/v1/namespaces/kube-public/configmaps/cluster-info"

// AnonymousPaths are the paths on which the apiserver authenticates anonymous
// requests at all.
var AnonymousPaths = []string{"/livez", "/readyz", "/healthz", ClusterInfoPath}

// AuthenticationConfig is the apiserver's AuthenticationConfiguration: no JWT
// authenticators, anonymous only on AnonymousPaths. (What anonymous requests
// there may do is still RBAC's: system:public-info-viewer covers the health
// paths, kubeforge's cluster-info Role the ConfigMap.)
func AuthenticationConfig() []byte {
	type cond struct {
		Path string `json:"path"`
	}
	var conds []cond
	for _, p := range AnonymousPaths {
		conds = append(conds, cond{p})
	}
	doc := map[string]any{
		"apiVersion": "apiserver.config.k8s.io/v1",
		"kind":       "AuthenticationConfiguration",
		"anonymous":  map[string]any{"enabled": true, "conditions": conds},
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		panic(err) // a literal map always marshals
	}
	return append([]byte("# Written by kubeforge: anonymous requests are authenticated only on these paths.\n"), out...)
}

// auditPolicy records who did what to which object for every request, and the
// request body of writes, except where the body holds credentials (Secrets,
// ConfigMaps such as kubeforge-config, token and access reviews, CSRs carry
// only public keys but are noisy). Health checks and the control plane's own
// leader-election heartbeats, several per second, are left out.
const auditPolicy = `# Written by kubeforge.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - RequestReceived
rules:
  - level: None
    nonResourceURLs:
      - /healthz*
      - /livez*
      - /readyz*
      - /version
  - level: None
    users:
      - system:kube-controller-manager
      - system:kube-scheduler
      - system:apiserver
    verbs: ["get", "update"]
    resources:
      - group: coordination.k8s.io
        resources: ["leases"]
  - level: None
    userGroups: ["system:nodes"]
    verbs: ["get", "update", "patch"]
    resources:
      - group: coordination.k8s.io
        resources: ["leases"]
  - level: None
    resources:
      - group: ""
        resources: ["events"]
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps", "serviceaccounts/token"]
      - group: authentication.k8s.io
        resources: ["tokenreviews"]
      - group: authorization.k8s.io
        resources: ["subjectaccessreviews", "selfsubjectaccessreviews", "localsubjectaccessreviews"]
      - group: certificates.k8s.io
        resources: ["certificatesigningrequests"]
  - level: Request
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: Metadata
`

// AuditPolicy is the apiserver's audit policy.
func AuditPolicy() []byte { return []byte(auditPolicy) }

// encryptionConfig is the part of an EncryptionConfiguration kubeforge checks.
type encryptionConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Resources  []struct {
		Resources []string         `json:"resources"`
		Providers []map[string]any `json:"providers"`
	} `json:"resources"`
}

// NewEncryptionConfig returns an EncryptionConfiguration that encrypts Secrets
// with secretbox under a fresh random 32-byte key. identity comes second so that
// Secrets written before encryption was on stay readable.
func NewEncryptionConfig() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generating the encryption key: %w", err)
	}
	return []byte(`# Written by kubeforge. Keep this file secret and identical on every control-plane host.
# To rotate: add a new key first in the list on every host, restart the apiservers,
# rewrite all Secrets (kubectl get secrets -A -o json | kubectl replace -f -), then
# remove the old key.
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - secretbox:
          keys:
            - name: key1
              secret: ` + base64.StdEncoding.EncodeToString(key) + `
      - identity: {}
`), nil
}

// CheckEncryptionConfig verifies that data is an EncryptionConfiguration whose
// first provider for Secrets actually encrypts.
func CheckEncryptionConfig(data []byte) error {
	var c encryptionConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("not a valid EncryptionConfiguration: %v", err)
	}
	if c.Kind != "EncryptionConfiguration" || c.APIVersion != "apiserver.config.k8s.io/v1" {
		return fmt.Errorf("apiVersion/kind is %q/%q, want apiserver.config.k8s.io/v1/EncryptionConfiguration", c.APIVersion, c.Kind)
	}
	for _, r := range c.Resources {
		if !slices.Contains(r.Resources, "secrets") {
			continue
		}
		if len(r.Providers) == 0 {
			return fmt.Errorf("secrets have no provider")
		}
		for name := range r.Providers[0] {
			if name == "identity" {
				return fmt.Errorf("the first provider for secrets is identity: Secrets would be stored unencrypted")
			}
		}
		return nil
	}
	return fmt.Errorf("no entry covers secrets: Secrets would be stored unencrypted")
}

// EnsureEncryptionConfig returns the encryption configuration the apiserver on h
// must use: the existing file at p when there is one (its key encrypts what is
// already stored; replacing it would make every Secret unreadable), a new one
// otherwise. An existing file that does not encrypt Secrets is an error naming it,
// never silently replaced.
func EnsureEncryptionConfig(ctx context.Context, h host.Host, p string) (data []byte, created bool, err error) {
	old, err := h.ReadFile(ctx, p)
	switch {
	case err == nil:
		if err := CheckEncryptionConfig(old); err != nil {
			return nil, false, fmt.Errorf("%s: %s: %w; fix or remove it (removing it makes existing Secrets unreadable)", h.Name(), p, err)
		}
		return old, false, nil
	case !host.IsNotExist(err):
		return nil, false, err
	}
	data, err = NewEncryptionConfig()
	return data, true, err
}
