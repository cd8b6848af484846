package initphases

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/certs"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/phases/rundata"
)

// etcdCertificateKeyPath keeps the etcd member hand-over's key, which is not the
// control-plane one: it decrypts member certificates only.
func etcdCertificateKeyPath(data rundata.Data) string {
	return path.Join(data.CertDir(), "kubeforge-etcd-certificate-key")
}

// etcdHandoverHosts are the etcd hosts that get their member certificates from
// this host: every etcd host of the configuration except this one and the
// control-plane hosts (which receive the CA keys and issue their own).
func etcdHandoverHosts(c *config.Cluster, self string) []config.Host {
	var out []config.Host
	for _, h := range c.HostsWithRole(config.RoleEtcd) {
		if h.Name != self && !h.HasRole(config.RoleControlPlane) {
			out = append(out, h)
		}
	}
	return out
}

// uploadEtcdMembers hands every other etcd member host its member certificates
// and a one-join credential, issued here from the etcd CA for the addresses the
// configuration records, encrypted under a key of their own (the etcd
// certificate key). A full init keeps a live hand-over; alone, the phase always
// makes a new one. It returns the key ("" when there is no such host).
func (r *run) uploadEtcdMembers(data rundata.Data, alone bool) (string, error) {
	ctx, h, log := data.Context(), data.Host(), data.Logger()
	hosts := etcdHandoverHosts(data.Config(), data.Node().Name)
	if len(hosts) == 0 {
		return "", nil
	}
	cli, err := r.client(data)
	if err != nil {
		return "", err
	}
	names := make([]string, len(hosts))
	for i, m := range hosts {
		names[i] = m.Name
	}
	keyPath := etcdCertificateKeyPath(data)
	if !alone {
		if old, err := h.ReadFile(ctx, keyPath); err == nil {
			key := strings.TrimSpace(string(old))
			live, err := clusterinfo.EtcdUploadLive(ctx, cli, key, names)
			if err != nil {
				return "", err
			}
			if live {
				log.Printf("kube-system/%s holds the member certificates of %s (key in %s)", clusterinfo.EtcdMembersSecretName, strings.Join(names, ", "), keyPath)
				return key, nil
			}
		} else if !host.IsNotExist(err) {
			return "", err
		}
	}
	if data.DryRun() {
		log.Printf("dry run: would issue etcd member certificates and a one-join credential for %s and store them encrypted in Secret kube-system/%s", strings.Join(names, ", "), clusterinfo.EtcdMembersSecretName)
		return "<etcd-certificate-key>", nil
	}
	members, err := issueEtcdHandovers(data, hosts, names)
	if err != nil {
		return "", err
	}
	key, err := certs.NewCertificateKey()
	if err != nil {
		return "", err
	}
	if err := clusterinfo.UploadEtcdMembers(ctx, cli, key, members); err != nil {
		return "", err
	}
	if err := h.WriteFile(ctx, keyPath, []byte(key+"\n"), host.WriteOptions{Mode: 0o600, Secret: true}); err != nil {
		return "", err
	}
	// Like the control-plane key: gone from the disk when the upload is gone.
	if err := armEtcdCertificateKeyExpiry(ctx, h, keyPath, time.Now()); err != nil {
		return "", err
	}
	log.Printf("stored the etcd member certificates of %s (no CA key) encrypted in Secret kube-system/%s; it is deleted in %s",
		strings.Join(names, ", "), clusterinfo.EtcdMembersSecretName, clusterinfo.CertsTTL)
	return key, nil
}

// issueEtcdHandovers issues, from the etcd CA on this host, each of hosts its
// member certificates and, to a host that is not a voting member yet, a one-join
// credential (an etcd user that may add exactly that member); a voter's leftover
// join user is deleted.
func issueEtcdHandovers(data rundata.Data, hosts []config.Host, names []string) (map[string]map[string][]byte, error) {
	ctx, h := data.Context(), data.Host()
	caCert, caKey, _ := certs.CertPaths(data.CertDir(), certs.CertEtcdCA)
	ca, err := certs.LoadCA(certs.HostFS{Ctx: ctx, Host: h}, caCert, caKey)
	if err != nil {
		return nil, fmt.Errorf("%s: etcd CA: %w", h.Name(), err)
	}
	if !ca.CanSign() {
		return nil, fmt.Errorf("%s: %s is missing: the etcd member hand-over is issued on the host that holds the etcd CA key", h.Name(), caKey)
	}
	admin, err := etcd.AdminTLS(etcd.HostRead(ctx, h), data.CertDir())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.Name(), err)
	}
	var eps []string
	for _, m := range data.Config().HostsWithRole(config.RoleEtcd) {
		if !contains(names, m.Name) {
			eps = append(eps, etcd.MemberOf(m).ClientURL())
		}
	}
	ecli, err := etcd.NewClient(eps, admin)
	if err != nil {
		return nil, err
	}
	defer ecli.Close()
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	list, err := ecli.MemberList(lctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("listing the etcd members: %w", err)
	}
	voters := map[string]bool{}
	for _, m := range list.Members {
		if !m.IsLearner && m.Name != "" {
			voters[m.Name] = true
		}
	}
	members := map[string]map[string][]byte{}
	for _, m := range hosts {
		spec, err := certs.SpecFromConfig(data.Config(), m.Name)
		if err != nil {
			return nil, err
		}
		files, err := certs.IssueEtcdMemberHandover(ca, spec, m.Name)
		if err != nil {
			return nil, fmt.Errorf("etcd member certificates for %s: %w", m.Name, err)
		}
		members[m.Name] = files
		uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if voters[m.Name] {
			// A voting member needs no membership change (a new hand-over renews
			// its certificates): no join credential, and none left over.
			err = etcd.DeleteUser(uctx, ecli, etcd.JoinUser(m.Name))
			cancel()
			if err != nil {
				return nil, err
			}
			continue
		}
		// The one-join credential expires with the hand-over; the join deletes its
		// user as soon as the member is a voter.
		err = etcd.EnsureJoinUser(uctx, ecli, m.Name)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("etcd one-join user for %s: %w", m.Name, err)
		}
		crt, key, err := etcd.IssueClient(ca, etcd.JoinUser(m.Name), clusterinfo.CertsTTL)
		if err != nil {
			return nil, err
		}
		files[clusterinfo.EtcdJoinCertFile], files[clusterinfo.EtcdJoinKeyFile] = crt, key
	}
	return members, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
