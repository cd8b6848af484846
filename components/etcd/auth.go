package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/overlay/subnet"
)

// etcd authentication. With client-certificate authentication the common name of
// the client certificate is the etcd user, so the etcd CA alone no longer decides
// who may read the cluster's state: each identity gets only its own key range.
//
//	user (= client CN)              role                   may
//	root                            root                   everything (required by `auth enable`; no certificate is issued for it)
//	kubeforge-etcd-admin            root                   everything; certificates only in memory, from the etcd CA key
//	kube-apiserver-etcd-client      root                   everything: etcd 3.6 lets only root call Compact, which the
//	                                                       apiserver's compactor needs (continue tokens expire with it);
//	                                                       its key lives only on control-plane hosts, which hold the etcd
//	                                                       CA key anyway (role kube-apiserver stays for older clusters)
//	kube-etcd-healthcheck-client    kube-etcd-healthcheck  read the key "health" (a linearizable read proves a quorum)
//	kubeforge-overlay               kubeforge-overlay      read/write <overlay prefix>/ only
//	kubeforge-etcd-join-<host>      root                   one member join (add learner, promote); deleted by that join
//
// A member's own server and peer certificates (CN = the member's name) belong to
// no user, so they give no key access and no membership changes.
const (
	RootUser      = "root"
	AdminUser     = "kubeforge-etcd-admin"
	APIServerRole = "kube-apiserver"
	HealthRole    = "kube-etcd-healthcheck"
	OverlayRole   = "kubeforge-overlay"
	// JoinUserPrefix starts the name of a member's one-join user.
	JoinUserPrefix = "kubeforge-etcd-join-"
	// HealthKey is the key health checks read.
	HealthKey = "health"
	// adminValidity bounds the in-memory admin certificates.
	adminValidity = time.Hour
)

// ErrNoAdminCredential means this host holds no etcd CA key, so it cannot act as
// etcd's administrator (membership changes, status of every member).
var ErrNoAdminCredential = errors.New("this host holds no etcd CA key (etcd/ca.key), so it has no etcd administrator credential")

// JoinUser is the etcd user of node's one-join credential.
func JoinUser(node string) string { return JoinUserPrefix + node }

// AuthPlan are the users and roles EnsureAuth creates.
type AuthPlan struct {
	// APIServerUser, HealthUser and OverlayUser are the common names of the
	// apiserver's, the health check's and the overlay agent's client
	// certificates.
	APIServerUser, HealthUser, OverlayUser string
	// OverlayPrefix is the overlay's key prefix (subnet.DefaultPrefix).
	OverlayPrefix string
}

// AuthPlanFor is the plan for cluster c: the certificate names of its PKI.
func AuthPlanFor(c *config.Cluster) (AuthPlan, error) {
	etcdHosts := c.HostsWithRole(config.RoleEtcd)
	if len(etcdHosts) == 0 {
		return AuthPlan{}, fmt.Errorf("the cluster configuration has no host with role %q", config.RoleEtcd)
	}
	// The client names do not depend on the host; any etcd host completes the spec.
	spec, err := certs.SpecFromConfig(c, etcdHosts[0].Name)
	if err != nil {
		return AuthPlan{}, err
	}
	p := AuthPlan{OverlayPrefix: subnet.DefaultPrefix, OverlayUser: spec.OverlayClientCN}
	if p.OverlayUser == "" {
		p.OverlayUser = certs.DefaultOverlayClientCN
	}
	for name, dst := range map[string]*string{certs.CertAPIServerEtcdClient: &p.APIServerUser, certs.CertEtcdHealthcheckClient: &p.HealthUser} {
		l, err := certs.LeafSpecFor(spec, name, "")
		if err != nil {
			return AuthPlan{}, err
		}
		*dst = l.Subject.CommonName
	}
	return p, nil
}

type perm struct {
	key, end string
	typ      clientv3.PermissionType
}

func (p AuthPlan) roles() map[string][]perm {
	prefix := strings.TrimSuffix(p.OverlayPrefix, "/") + "/"
	return map[string][]perm{
		// "\x00" to "\x00" is etcd's "every key" (etcdctl --from-key '').
		APIServerRole: {{"\x00", "\x00", clientv3.PermissionType(clientv3.PermReadWrite)}},
		HealthRole:    {{HealthKey, "", clientv3.PermissionType(clientv3.PermRead)}},
		OverlayRole:   {{prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite)}},
	}
}

func (p AuthPlan) users() [][2]string {
	return [][2]string{
		{RootUser, "root"},
		{AdminUser, "root"},
		{p.APIServerUser, "root"},
		{p.HealthUser, HealthRole},
		{p.OverlayUser, OverlayRole},
	}
}

// EnsureAuth creates the roles and users of plan and enables authentication. cli
// must authenticate as an administrator once authentication is on (AdminUser);
// before, any client of the etcd CA may. It reports what it changed; a rerun on a
// cluster that has them changes nothing.
func EnsureAuth(ctx context.Context, cli *clientv3.Client, plan AuthPlan) ([]string, error) {
	var changed []string
	for role, perms := range plan.roles() {
		cur, err := cli.RoleGet(ctx, role)
		switch {
		case errors.Is(err, rpctypes.ErrRoleNotFound):
			if _, err := cli.RoleAdd(ctx, role); err != nil {
				return changed, fmt.Errorf("etcd role %s: %w", role, err)
			}
			changed = append(changed, "role "+role)
			cur = &clientv3.AuthRoleGetResponse{}
		case err != nil:
			return changed, fmt.Errorf("etcd role %s: %w", role, err)
		}
		for _, p := range perms {
			if hasPerm(cur.Perm, p) {
				continue
			}
			if _, err := cli.RoleGrantPermission(ctx, role, p.key, p.end, p.typ); err != nil {
				return changed, fmt.Errorf("etcd role %s: granting %q: %w", role, p.key, err)
			}
			changed = append(changed, fmt.Sprintf("role %s permission on %q", role, p.key))
		}
	}
	for _, ur := range plan.users() {
		c, err := ensureUser(ctx, cli, ur[0], ur[1])
		if err != nil {
			return changed, err
		}
		changed = append(changed, c...)
	}
	st, err := cli.AuthStatus(ctx)
	if err != nil {
		return changed, fmt.Errorf("etcd auth status: %w", err)
	}
	if !st.Enabled {
		if _, err := cli.AuthEnable(ctx); err != nil {
			return changed, fmt.Errorf("enabling etcd authentication: %w", err)
		}
		changed = append(changed, "authentication enabled")
	}
	return changed, nil
}

func hasPerm(have []*authpb.Permission, p perm) bool {
	for _, h := range have {
		if string(h.Key) == p.key && string(h.RangeEnd) == p.end && clientv3.PermissionType(h.PermType) == p.typ {
			return true
		}
	}
	return false
}

// ensureUser makes user exist without a password (certificate authentication
// only) and hold role.
func ensureUser(ctx context.Context, cli *clientv3.Client, user, role string) ([]string, error) {
	var changed []string
	cur, err := cli.UserGet(ctx, user)
	switch {
	case errors.Is(err, rpctypes.ErrUserNotFound):
		if _, err := cli.UserAddWithOptions(ctx, user, "", &clientv3.UserAddOptions{NoPassword: true}); err != nil {
			return nil, fmt.Errorf("etcd user %s: %w", user, err)
		}
		changed = append(changed, "user "+user)
		cur = &clientv3.AuthUserGetResponse{}
	case err != nil:
		return nil, fmt.Errorf("etcd user %s: %w", user, err)
	}
	for _, r := range cur.Roles {
		if r == role {
			return changed, nil
		}
	}
	if _, err := cli.UserGrantRole(ctx, user, role); err != nil {
		return changed, fmt.Errorf("etcd user %s: granting role %s: %w", user, role, err)
	}
	return append(changed, fmt.Sprintf("user %s role %s", user, role)), nil
}

// EnsureJoinUser creates node's one-join user with the root role (the only role
// etcd lets change membership). Its credential is a certificate that expires
// with the hand-over, and the join deletes the user when it is done.
func EnsureJoinUser(ctx context.Context, cli *clientv3.Client, node string) error {
	_, err := ensureUser(ctx, cli, JoinUser(node), "root")
	return err
}

// DeleteOwnUser deletes the user cli authenticates as (a one-join user, at the
// end of its join). A refusal because the user is gone or no longer an
// administrator means the credential is powerless already, which is the point.
// It reports whether it deleted the user now.
func DeleteOwnUser(ctx context.Context, cli *clientv3.Client, user string) (bool, error) {
	_, err := cli.UserDelete(ctx, user)
	if err == nil {
		return true, nil
	}
	if IsAuthRefusal(err) {
		return false, nil
	}
	return false, fmt.Errorf("deleting etcd user %s: %w", user, err)
}

// DeleteUser deletes user; one that does not exist is no error.
func DeleteUser(ctx context.Context, cli *clientv3.Client, user string) error {
	_, err := cli.UserDelete(ctx, user)
	if err == nil || errors.Is(err, rpctypes.ErrUserNotFound) {
		return nil
	}
	return fmt.Errorf("deleting etcd user %s: %w", user, err)
}

// IsAuthRefusal reports an error of etcd's authorization: the request reached
// the member (so it serves), but the client's user may not do that.
func IsAuthRefusal(err error) bool {
	return errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrUserNotFound) ||
		errors.Is(err, rpctypes.ErrUserEmpty) || errors.Is(err, rpctypes.ErrAuthFailed)
}

// IssueClient issues a client certificate for user from ca, valid for validity,
// and returns it as PEM.
func IssueClient(ca *certs.CA, user string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	alg, err := certs.AlgorithmOf(ca.Cert.PublicKey)
	if err != nil {
		alg = certs.DefaultKeyAlgorithm
	}
	return certs.Issue(ca, certs.LeafSpec{
		Subject:      pkix.Name{CommonName: user},
		Usages:       []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyAlgorithm: alg,
		Validity:     validity,
	})
}

// TLSConfigFromPEM is a client TLS configuration with the etcd CA as the only
// root and the given client certificate.
func TLSConfigFromPEM(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("etcd CA: no PEM certificate in it")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// AdminTLS is kubeforge's administrator credential on a host that holds the etcd
// CA key (the control plane): a client certificate for AdminUser, issued in
// memory and never written, valid for an hour. Without the key it is
// ErrNoAdminCredential.
func AdminTLS(read ReadFunc, certDir string) (*tls.Config, error) {
	d := PKIDir(certDir)
	caPEM, err := read(filepath.Join(d, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("etcd CA %s: %w", filepath.Join(d, "ca.crt"), err)
	}
	keyPEM, err := read(filepath.Join(d, "ca.key"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoAdminCredential, filepath.Join(d, "ca.key"), err)
	}
	ca, err := certs.ParseCA(caPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("etcd CA in %s: %w", d, err)
	}
	crt, key, err := IssueClient(ca, AdminUser, adminValidity)
	if err != nil {
		return nil, err
	}
	return TLSConfigFromPEM(caPEM, crt, key)
}

// UserOf is the etcd user a client TLS configuration authenticates as.
func UserOf(cfg *tls.Config) string {
	if cfg == nil || len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
		return ""
	}
	c, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		return ""
	}
	return c.Subject.CommonName
}
