// Package bootstraptoken manages bootstrap tokens (the short-lived bearer tokens
// joining nodes authenticate with) and the RBAC that lets a kubelet holding one
// bootstrap itself: post a CSR for its client certificate, have it approved
// automatically, and later rotate it.
//
// Tokens are kube-system Secrets of type bootstrap.kubernetes.io/token, exactly as
// kubeadm writes them, and the RBAC objects carry kubeadm's names and groups. A
// kubeforge cluster therefore accepts `kubeadm join` and kubeadm's runbooks, and
// the controller-manager's tokencleaner and bootstrapsigner work on them unchanged.
package bootstraptoken

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

// Defaults, kubeadm's.
const (
	// DefaultTTL is how long a join token lives unless told otherwise.
	DefaultTTL = 24 * time.Hour
	// NodeGroup is the extra group of node join tokens; the RBAC below is bound
	// to it.
	NodeGroup = "system:bootstrappers:kubeadm:default-node-token"
	// InitDescription marks the token `kubeforge init` creates, so a rerun finds
	// and keeps it instead of piling up tokens.
	InitDescription = "kubeforge init: token for joining nodes"
)

// Usages every join token has: authentication (the kubelet's bootstrap
// credential) and signing (cluster-info's JWS signature for discovery).
var DefaultUsages = []string{"authentication", "signing"}

// Token is a bootstrap token.
type Token struct {
	ID     string
	Secret string
	// Description says what the token is for (shown by `token list`).
	Description string
	// Expires is when the tokencleaner deletes it; zero means never.
	Expires time.Time
	Usages  []string
	Groups  []string
}

// String is the token as it is passed around: "<id>.<secret>".
func (t Token) String() string { return bootstraputil.TokenFromIDAndSecret(t.ID, t.Secret) }

// SecretName is the name of the token's Secret in kube-system.
func (t Token) SecretName() string { return bootstraputil.BootstrapTokenSecretName(t.ID) }

// Expired reports whether the token has expired at now.
func (t Token) Expired(now time.Time) bool { return !t.Expires.IsZero() && !now.Before(t.Expires) }

// Generate returns a new random join token valid for ttl (0: never expires),
// with the default usages and group.
func Generate(ttl time.Duration, description string) (Token, error) {
	s, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		return Token{}, fmt.Errorf("generating a bootstrap token: %w", err)
	}
	t, err := Parse(s)
	if err != nil {
		return Token{}, err
	}
	t.Description = description
	t.Usages = slices.Clone(DefaultUsages)
	t.Groups = []string{NodeGroup}
	if ttl > 0 {
		t.Expires = time.Now().Add(ttl).UTC().Truncate(time.Second)
	}
	return t, nil
}

// Parse splits "<id>.<secret>" and checks its format ([a-z0-9]{6}.[a-z0-9]{16}).
func Parse(s string) (Token, error) {
	if !bootstraputil.IsValidBootstrapToken(s) {
		// The value may be a real secret with a typo: never echo it.
		return Token{}, errors.New("a bootstrap token has the form [a-z0-9]{6}.[a-z0-9]{16}")
	}
	id, secret, _ := strings.Cut(s, ".")
	return Token{ID: id, Secret: secret}, nil
}

// ToSecret is the token's Secret.
func (t Token) ToSecret() *corev1.Secret {
	data := map[string][]byte{
		bootstrapapi.BootstrapTokenIDKey:     []byte(t.ID),
		bootstrapapi.BootstrapTokenSecretKey: []byte(t.Secret),
	}
	if t.Description != "" {
		data[bootstrapapi.BootstrapTokenDescriptionKey] = []byte(t.Description)
	}
	if !t.Expires.IsZero() {
		data[bootstrapapi.BootstrapTokenExpirationKey] = []byte(t.Expires.UTC().Format(time.RFC3339))
	}
	for _, u := range t.Usages {
		data[bootstrapapi.BootstrapTokenUsagePrefix+u] = []byte("true")
	}
	if len(t.Groups) > 0 {
		data[bootstrapapi.BootstrapTokenExtraGroupsKey] = []byte(strings.Join(t.Groups, ","))
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: t.SecretName(), Namespace: metav1.NamespaceSystem},
		Type:       bootstrapapi.SecretTypeBootstrapToken,
		Data:       data,
	}
}

// FromSecret reads a token back from its Secret.
func FromSecret(s *corev1.Secret) (Token, error) {
	if s.Type != bootstrapapi.SecretTypeBootstrapToken {
		return Token{}, fmt.Errorf("secret %s is of type %q, not a bootstrap token", s.Name, s.Type)
	}
	t := Token{
		ID:          string(s.Data[bootstrapapi.BootstrapTokenIDKey]),
		Secret:      string(s.Data[bootstrapapi.BootstrapTokenSecretKey]),
		Description: string(s.Data[bootstrapapi.BootstrapTokenDescriptionKey]),
	}
	if !bootstraputil.IsValidBootstrapToken(t.String()) || s.Name != t.SecretName() {
		return Token{}, fmt.Errorf("secret %s does not hold a valid bootstrap token", s.Name)
	}
	if e := string(s.Data[bootstrapapi.BootstrapTokenExpirationKey]); e != "" {
		exp, err := time.Parse(time.RFC3339, e)
		if err != nil {
			return Token{}, fmt.Errorf("secret %s: expiration %q is not RFC 3339", s.Name, e)
		}
		t.Expires = exp
	}
	for k, v := range s.Data {
		if u, ok := strings.CutPrefix(k, bootstrapapi.BootstrapTokenUsagePrefix); ok && string(v) == "true" {
			t.Usages = append(t.Usages, u)
		}
	}
	sort.Strings(t.Usages)
	if g := string(s.Data[bootstrapapi.BootstrapTokenExtraGroupsKey]); g != "" {
		t.Groups = strings.Split(g, ",")
	}
	return t, nil
}

// Create stores a new token. A token with the same ID is an error, never
// overwritten: its secret may be in use.
func Create(ctx context.Context, c kubernetes.Interface, t Token) (*corev1.Secret, error) {
	for _, g := range t.Groups {
		if err := bootstraputil.ValidateBootstrapGroupName(g); err != nil {
			return nil, err
		}
	}
	if err := bootstraputil.ValidateUsages(t.Usages); err != nil {
		return nil, err
	}
	s, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, t.ToSecret(), metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("a bootstrap token with ID %q already exists", t.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("creating bootstrap token %s: %w", t.ID, err)
	}
	return s, nil
}

// List returns the bootstrap tokens in the cluster, ordered by ID. Malformed
// token Secrets are skipped.
func List(ctx context.Context, c kubernetes.Interface) ([]Token, error) {
	sel := fields.OneTermEqualSelector("type", string(bootstrapapi.SecretTypeBootstrapToken)).String()
	l, err := c.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing bootstrap tokens: %w", err)
	}
	var out []Token
	for i := range l.Items {
		if t, err := FromSecret(&l.Items[i]); err == nil {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Get returns the token with the given ID.
func Get(ctx context.Context, c kubernetes.Interface, id string) (Token, error) {
	s, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, bootstraputil.BootstrapTokenSecretName(id), metav1.GetOptions{})
	if err != nil {
		return Token{}, err
	}
	return FromSecret(s)
}

// Delete removes a token, given by ID or as the full token. A token that does not
// exist is an error naming it.
func Delete(ctx context.Context, c kubernetes.Interface, idOrToken string) error {
	id := idOrToken
	if t, err := Parse(idOrToken); err == nil {
		id = t.ID
	} else if !bootstraputil.IsValidBootstrapTokenID(id) {
		return errors.New("not a bootstrap token or token ID (want [a-z0-9]{6} or [a-z0-9]{6}.[a-z0-9]{16})")
	}
	err := c.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, bootstraputil.BootstrapTokenSecretName(id), metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("bootstrap token %q does not exist", id)
	}
	return err
}

// EnsureInitToken returns the token `kubeforge init` prints in the join command:
// an existing one marked with InitDescription that is valid for at least
// minRemaining, or else a new one valid for ttl. created says which.
func EnsureInitToken(ctx context.Context, c kubernetes.Interface, ttl, minRemaining time.Duration) (t Token, created bool, err error) {
	tokens, err := List(ctx, c)
	if err != nil {
		return Token{}, false, err
	}
	now := time.Now()
	for _, t := range tokens {
		if t.Description == InitDescription && (t.Expires.IsZero() || t.Expires.Sub(now) >= minRemaining) &&
			slices.Contains(t.Usages, "authentication") && slices.Contains(t.Usages, "signing") {
			return t, false, nil
		}
	}
	t, err = Generate(ttl, InitDescription)
	if err != nil {
		return Token{}, false, err
	}
	if _, err := Create(ctx, c, t); err != nil {
		return Token{}, false, err
	}
	return t, true, nil
}
