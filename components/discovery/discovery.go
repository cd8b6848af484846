// Package discovery is how a joining host finds the cluster and decides to trust
// it, with nothing but the join command: an endpoint, a bootstrap token and the
// CA's public-key hash (kubeadm's token discovery).
//
//  1. cluster-info is fetched from kube-public without credentials and without
//     verifying the server's certificate — the host has no CA yet. This is the
//     only request made that way; its answer is trusted only after 2 and 3.
//  2. The bootstrap signer in the controller-manager signs cluster-info's
//     kubeconfig with every bootstrap token (a detached JWS, HS256 keyed by the
//     token secret). A valid signature for our token proves the content was
//     published by someone holding the token, i.e. the cluster.
//  3. The CA in that kubeconfig must hash (SPKI sha256) to the pinned value, so
//     even a party that knows the token cannot substitute its own CA. It must
//     also be the only thing there: a bundle is refused (ErrCABundle), since
//     everything later trusts the whole of it, and a second CA appended to the
//     pinned one would let its holder impersonate the API server.
//  4. Only now, over TLS verified against that CA, the token authenticates the
//     host: it downloads the cluster configuration and, for an etcd or
//     control-plane join, the encrypted certificates, decrypting them with the
//     certificate key.
//
// Everything here is network reads; nothing is written to the host, so a
// wrong hash, an unknown or expired token, an unreachable endpoint or a wrong
// certificate key fails the join before it changed anything. Each of those is
// its own error value (errors.Is) with a message that says what to do.
package discovery

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/bootstraptoken"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/kubeclient"
)

// The ways discovery fails, for errors.Is.
var (
	ErrBadInput        = errors.New("invalid join input")
	ErrUnreachable     = errors.New("the API server cannot be reached")
	ErrNoClusterInfo   = errors.New("the endpoint does not publish cluster-info")
	ErrUnknownToken    = errors.New("the bootstrap token is not known to the cluster")
	ErrTokenSignature  = errors.New("the bootstrap token does not match the cluster's signature")
	ErrCAHashMismatch  = errors.New("the cluster CA does not match --discovery-token-ca-cert-hash")
	ErrCABundle        = errors.New("cluster-info must hold exactly one CA certificate, the pinned one")
	ErrTokenRejected   = errors.New("the API server rejected the bootstrap token")
	ErrNoConfig        = errors.New("the cluster has no kubeforge configuration")
	ErrCertificateKey  = errors.New("the certificate key does not decrypt the uploaded certificates")
	ErrNoCertsUploaded = errors.New("no certificates are uploaded")
)

// DefaultTimeout bounds discovery when Options.Timeout is zero (kubeadm's
// --discovery-timeout default).
const DefaultTimeout = 5 * time.Minute

// Options are the join command's discovery inputs.
type Options struct {
	// Endpoint is the API server, host:port (the join command's argument).
	Endpoint string
	// Token is "<id>.<secret>".
	Token string
	// CAHashes are accepted pins ("sha256:<hex>"); at least one is required.
	CAHashes []string
	// CertificateKey, when set, downloads and decrypts kube-system/kubeforge-certs,
	// or with EtcdMember that member's etcd hand-over.
	CertificateKey string
	// EtcdMember names the etcd member host whose entry of
	// kube-system/kubeforge-etcd-members CertificateKey decrypts (join --etcd
	// without --control-plane): member certificates, no CA key.
	EtcdMember string
	// Timeout bounds the whole discovery; DefaultTimeout when zero. Connection
	// errors (an apiserver that is restarting answers again soon) and a
	// cluster-info not yet signed for the token (a token created a moment ago)
	// are retried within it.
	Timeout time.Duration
	Logf    func(format string, a ...any)
}

// Result is what discovery established.
type Result struct {
	// Server is the API server URL cluster-info names (what the kubelet and
	// kube-proxy will use).
	Server string
	CAPEM  []byte
	CA     *x509.Certificate
	Token  bootstraptoken.Token
	// Config is the cluster configuration kube-system/kubeforge-config holds.
	Config *config.Cluster
	// Certs are the decrypted shared files (relative to the cert dir), when a
	// certificate key was given.
	Certs map[string][]byte
	// REST is a client configuration that trusts the pinned CA and
	// authenticates with the token.
	REST *rest.Config
}

// ParseCAHash checks the format of a --discovery-token-ca-cert-hash value.
func ParseCAHash(s string) (string, error) {
	alg, hexSum, ok := strings.Cut(s, ":")
	if !ok || alg != "sha256" {
		return "", fmt.Errorf("%w: --discovery-token-ca-cert-hash %q must be sha256:<64 hex digits>", ErrBadInput, s)
	}
	if b, err := hex.DecodeString(hexSum); err != nil || len(b) != 32 {
		return "", fmt.Errorf("%w: --discovery-token-ca-cert-hash %q must be sha256:<64 hex digits>", ErrBadInput, s)
	}
	return "sha256:" + strings.ToLower(hexSum), nil
}

// ParseEndpoint checks host:port.
func ParseEndpoint(s string) (string, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil || h == "" {
		return "", fmt.Errorf("%w: endpoint %q must be host:port (e.g. 192.168.161.151:6443)", ErrBadInput, s)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%w: endpoint %q: port %q is not 1..65535", ErrBadInput, s, p)
	}
	return net.JoinHostPort(h, p), nil
}

// Check validates the inputs without any network access.
func (o Options) Check() (bootstraptoken.Token, []string, error) {
	if _, err := ParseEndpoint(o.Endpoint); err != nil {
		return bootstraptoken.Token{}, nil, err
	}
	t, err := bootstraptoken.Parse(o.Token)
	if err != nil {
		return t, nil, fmt.Errorf("%w: --token: %v", ErrBadInput, err)
	}
	if len(o.CAHashes) == 0 {
		return t, nil, fmt.Errorf("%w: --discovery-token-ca-cert-hash is required: without it the host would trust whatever CA answers at %s", ErrBadInput, o.Endpoint)
	}
	var hashes []string
	for _, h := range o.CAHashes {
		n, err := ParseCAHash(h)
		if err != nil {
			return t, nil, err
		}
		hashes = append(hashes, n)
	}
	if o.CertificateKey != "" {
		if b, err := hex.DecodeString(o.CertificateKey); err != nil || len(b) != certs.CertificateKeySize {
			return t, nil, fmt.Errorf("%w: --certificate-key must be %d hex digits (as `kubeforge init` printed it)", ErrBadInput, 2*certs.CertificateKeySize)
		}
	}
	return t, hashes, nil
}

// Discover runs the four steps in the package comment, in one function so the
// order of trust reads top to bottom: nothing the server sends is used before
// the step that verifies it.
func Discover(ctx context.Context, o Options) (*Result, error) {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	tok, hashes, err := o.Check()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	cm, sig, err := signedClusterInfo(ctx, o.Endpoint, tok.ID, o.Timeout, o.Logf)
	if err != nil {
		return nil, err
	}
	content := cm.Data[bootstrapapi.KubeConfigKey]
	if content == "" {
		return nil, fmt.Errorf("%w: kube-public/cluster-info at %s has no kubeconfig", ErrNoClusterInfo, o.Endpoint)
	}
	want, err := jws.ComputeDetachedSignature(content, tok.ID, tok.Secret)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(sig), []byte(want)) != 1 {
		return nil, fmt.Errorf("%w: cluster-info's signature for token ID %q does not verify with the given token secret: the secret is wrong (or cluster-info was tampered with)", ErrTokenSignature, tok.ID)
	}
	kc, err := clientcmd.Load([]byte(content))
	if err != nil || len(kc.Clusters) != 1 {
		return nil, fmt.Errorf("%w: cluster-info's kubeconfig must hold exactly one cluster: %v", ErrNoClusterInfo, err)
	}
	var server string
	var caPEM []byte
	for _, c := range kc.Clusters {
		server, caPEM = c.Server, c.CertificateAuthorityData
	}
	ca, err := singleCA(caPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %v (at %s); the cluster publishes only its CA there — something is impersonating the cluster or has altered cluster-info",
			ErrCABundle, err, o.Endpoint)
	}
	got := certs.CAHash(ca)
	pinned := false
	for _, h := range hashes {
		if subtle.ConstantTimeCompare([]byte(h), []byte(got)) == 1 {
			pinned = true
		}
	}
	if !pinned {
		return nil, fmt.Errorf("%w: the cluster at %s presents CA %q with public-key hash %s, but the join command pins %s; check the hash (`kubeforge token create --print-join-command` prints the right one) — if it is right, something is impersonating the cluster",
			ErrCAHashMismatch, o.Endpoint, ca.Subject.CommonName, got, strings.Join(hashes, ", "))
	}
	o.Logf("cluster CA %s pinned (%s), cluster-info signed for token %s; API server %s", ca.Subject.CommonName, got, tok.ID, server)

	// From here on only the pinned certificate is trusted, re-encoded from what
	// was parsed and checked, never the bytes the untrusted server sent.
	caPEM = certs.EncodeCertPEM(ca)
	res := &Result{Server: server, CAPEM: caPEM, CA: ca, Token: tok,
		REST: &rest.Config{Host: server, BearerToken: tok.String(), TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}}}
	cli, err := kubeclient.NewForConfig(res.REST, kubeclient.Options{Timeout: 15 * time.Second})
	if err != nil {
		return nil, err
	}
	res.Config, err = clusterinfo.DownloadConfig(ctx, cli)
	if err != nil {
		return nil, apiError(err, o.Endpoint, tok.ID, "kube-system/"+clusterinfo.ConfigMapName, ErrNoConfig)
	}
	if o.CertificateKey != "" && o.EtcdMember != "" {
		res.Certs, err = clusterinfo.DownloadEtcdMember(ctx, cli, o.CertificateKey, o.EtcdMember)
		switch {
		case errors.Is(err, certs.ErrWrongCertificateKey), errors.Is(err, certs.ErrCorruptBundle):
			return nil, fmt.Errorf("%w: %v; use the etcd key of the `--etcd` join command `kubeforge init` (or `kubeforge init phase upload-certs --config <cluster configuration>`) printed", ErrCertificateKey, err)
		case errors.Is(err, clusterinfo.ErrNoEtcdUpload):
			return nil, fmt.Errorf("%w: %v", ErrNoCertsUploaded, err)
		case err != nil:
			return nil, apiError(err, o.Endpoint, tok.ID, "kube-system/"+clusterinfo.EtcdMembersSecretName, ErrNoCertsUploaded)
		}
	} else if o.CertificateKey != "" {
		res.Certs, err = clusterinfo.DownloadCerts(ctx, cli, o.CertificateKey)
		switch {
		case errors.Is(err, certs.ErrWrongCertificateKey), errors.Is(err, certs.ErrCorruptBundle):
			return nil, fmt.Errorf("%w: %v; use the key `kubeforge init` (or `kubeforge init phase upload-certs --config <cluster configuration>`) printed with the current upload", ErrCertificateKey, err)
		case errors.Is(err, clusterinfo.ErrNoUpload):
			return nil, fmt.Errorf("%w: %v", ErrNoCertsUploaded, err)
		case err != nil:
			return nil, apiError(err, o.Endpoint, tok.ID, "kube-system/"+clusterinfo.CertsSecretName, ErrNoCertsUploaded)
		}
	}
	return res, nil
}

// singleCA parses data as exactly one PEM CERTIFICATE block with nothing but
// whitespace around it: no second certificate, no other block, no trailing
// bytes that a later parser might read differently.
func singleCA(data []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("cluster-info's certificate-authority-data is not a PEM certificate")
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("cluster-info's certificate-authority-data holds a %q PEM block, not a certificate", block.Type)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		extra := 0
		for r := rest; ; extra++ {
			b, more := pem.Decode(r)
			if b == nil {
				break
			}
			r = more
		}
		if extra == 0 {
			return nil, errors.New("cluster-info's certificate-authority-data has trailing data after the CA certificate")
		}
		return nil, fmt.Errorf("cluster-info's certificate-authority-data holds %d more PEM block(s) after the CA certificate", extra)
	}
	if len(block.Headers) > 0 {
		return nil, errors.New("cluster-info's CA certificate carries PEM headers")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("cluster-info's CA certificate does not parse: %v", err)
	}
	return c, nil
}

// apiError names what a failed authenticated read means for the operator.
func apiError(err error, endpoint, tokenID, object string, notFound error) error {
	switch {
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w: token %s was valid for cluster-info's signature but the API server at %s does not accept it: it has expired or was revoked; create a new one with `kubeforge token create --print-join-command`",
			ErrTokenRejected, tokenID, endpoint)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w: token %s may not read %s (the RBAC `kubeforge init` sets up for joins is missing): %v", ErrTokenRejected, tokenID, object, err)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: %s does not exist: run `kubeforge init phase upload-config --config <cluster configuration>` on the first control-plane host", notFound, object)
	}
	return fmt.Errorf("%w: reading %s from %s: %v", ErrUnreachable, object, endpoint, err)
}

// signedClusterInfo reads cluster-info until it carries a signature for token
// id and returns it with that signature (not yet verified). A cluster-info
// without one is what a joiner sees in the seconds between the token's creation
// and the bootstrap signer's update, so it waits for it, like kubeadm, saying
// once what it saw; at the deadline (ctx) it says what it saw last.
func signedClusterInfo(ctx context.Context, endpoint, id string, timeout time.Duration, logf func(string, ...any)) (*corev1.ConfigMap, string, error) {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see package comment: verified by JWS and CA pin
		Proxy:           nil,
		DialContext:     (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var (
		cm          *corev1.ConfigMap
		sig         string
		unreachable error
		waitedFor   bool
	)
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		c, err := fetchClusterInfo(ctx, hc, endpoint)
		var conn *connError
		if errors.As(err, &conn) {
			if ctx.Err() != nil {
				// The deadline cut this request: what was seen before stands.
				return false, nil
			}
			if unreachable == nil {
				logf("waiting for %s: %v", endpoint, conn.err)
			}
			unreachable = conn.err
			return false, nil
		}
		if err != nil {
			return false, err
		}
		cm, unreachable = c, nil
		if s, ok := cm.Data[bootstrapapi.JWSSignatureKeyPrefix+id]; ok {
			sig = s
			return true, nil
		}
		if !waitedFor {
			waitedFor = true
			logf("cluster-info at %s carries no signature for token ID %q yet (signed for: %s); waiting up to %s for the bootstrap signer (--discovery-timeout)",
				endpoint, id, signedFor(cm), timeout)
		}
		return false, nil
	})
	switch {
	case err == nil:
		return cm, sig, nil
	case unreachable != nil:
		return nil, "", fmt.Errorf("%w: %s: %v", ErrUnreachable, endpoint, unreachable)
	case cm != nil:
		return nil, "", fmt.Errorf("%w: cluster-info at %s still carried no signature for token ID %q after %s (signed for: %s): the token was never created, was deleted, or has expired (expired tokens are removed by the token cleaner); create a new one on a control-plane host with `kubeforge token create --print-join-command`",
			ErrUnknownToken, endpoint, id, timeout, signedFor(cm))
	case ctx.Err() != nil:
		return nil, "", fmt.Errorf("%w: %s: no answer within %s (--discovery-timeout)", ErrUnreachable, endpoint, timeout)
	}
	return nil, "", err
}

// signedFor lists the token IDs cluster-info carries signatures for.
func signedFor(cm *corev1.ConfigMap) string {
	var ids []string
	for k := range cm.Data {
		if id, ok := strings.CutPrefix(k, bootstrapapi.JWSSignatureKeyPrefix); ok {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return "no token"
	}
	sort.Strings(ids)
	return strings.Join(ids, ", ")
}

// connError is a request that did not reach the API server: retried.
type connError struct{ err error }

func (e *connError) Error() string { return e.err.Error() }

// fetchClusterInfo GETs cluster-info once, without credentials and without
// verifying the server (nothing to verify against yet). The response is at
// most 1 MiB: the server is untrusted.
func fetchClusterInfo(ctx context.Context, hc *http.Client, endpoint string) (*corev1.ConfigMap, error) {
	url := "https://" + endpoint + "/api/v1/namespaces/" + "kube-public" + "/configmaps/" + bootstrapapi.ConfigMapClusterInfo
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, &connError{err}
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case rerr != nil:
		return nil, fmt.Errorf("%w: reading cluster-info from %s: %v", ErrUnreachable, endpoint, rerr)
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%w: %s answers 404 for kube-public/cluster-info: not a kubeforge (or kubeadm) control plane, or init has not published it yet", ErrNoClusterInfo, endpoint)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("%w: %s refuses anonymous reads of kube-public/cluster-info (HTTP %d); the API server must allow them for token discovery", ErrNoClusterInfo, endpoint, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: %s answers HTTP %d for cluster-info: %.200s", ErrNoClusterInfo, endpoint, resp.StatusCode, body)
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal(body, &cm); err != nil || cm.Name != bootstrapapi.ConfigMapClusterInfo {
		return nil, fmt.Errorf("%w: %s did not answer with the cluster-info ConfigMap: %v", ErrNoClusterInfo, endpoint, err)
	}
	return &cm, nil
}
