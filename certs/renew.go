package certs

import (
	"crypto/x509"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// RenewOptions says where the files are and how to renew them.
type RenewOptions struct {
	CertDir       string // DefaultCertDir when empty
	KubeconfigDir string // DefaultKubeconfigDir when empty
	FS            FS     // LocalFS when nil
	// DryRun computes and reports every renewal but writes nothing.
	DryRun bool
	// BackupDir receives the replaced files (pki/<path> and kubeconfig/<name>).
	// Default: <parent of CertDir>/tmp/kubeforge-certs-backup-<UTC timestamp>.
	BackupDir string
	// Validity of the renewed certificates; zero keeps each certificate's original
	// validity period (there is no cluster configuration to ask here).
	Validity time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// RenewedCert is the outcome for one certificate.
type RenewedCert struct {
	Name        string    `json:"name"`
	Path        string    `json:"path"`
	OldNotAfter time.Time `json:"oldNotAfter,omitzero"`
	NewNotAfter time.Time `json:"newNotAfter,omitzero"`
	// Skipped explains why a certificate was left alone (missing, externally
	// managed CA, not embedded); empty when it was (or would be) renewed.
	Skipped string `json:"skipped,omitempty"`
}

// RenewResult is what Renew did (or, in a dry run, would do).
type RenewResult struct {
	DryRun       bool          `json:"dryRun"`
	BackupDir    string        `json:"backupDir,omitempty"`
	Certificates []RenewedCert `json:"certificates"`
}

// RenewableNames lists what `certs renew` accepts besides "all": every leaf
// certificate and every kubeconfig. CAs and the SA key are not renewed: replacing a
// CA is a rotation of trust, not a renewal.
func RenewableNames() []string {
	var out []string
	for _, d := range catalog {
		if d.leaf != nil {
			out = append(out, d.name)
		}
	}
	return append(out, KubeconfigNames()...)
}

// Renew re-signs the named certificates ("all" or none for every one) from their
// existing CA, keeping subject, SANs and extended key usages, and rewrites the
// kubeconfigs' embedded client certificates. Everything is read, checked and signed
// first; then the replaced files are copied to the backup directory; then the new
// ones are written.
//
// Each renewed certificate gets a NEW private key, as `kubeadm certs renew` does
// (its FileRenewer calls NewCertAndKey): a renewal is the routine moment to rotate
// keys, and nothing pins leaf keys (clients trust the CA). The new key has the old
// key's algorithm and size.
func Renew(opts RenewOptions, names ...string) (*RenewResult, error) {
	fsys := opts.FS
	if fsys == nil {
		fsys = LocalFS{}
	}
	now := time.Now()
	if opts.Now != nil {
		now = opts.Now()
	}
	certDir, kcDir := opts.CertDir, opts.KubeconfigDir
	if certDir == "" {
		certDir = DefaultCertDir
	}
	if kcDir == "" {
		kcDir = DefaultKubeconfigDir
	}
	all := len(names) == 0 || (len(names) == 1 && names[0] == "all")
	if all {
		names = RenewableNames()
	}
	for _, n := range names {
		if !slices.Contains(RenewableNames(), n) {
			return nil, fmt.Errorf("cannot renew %q: not a renewable certificate (known: all, %v)", n, RenewableNames())
		}
	}
	backupDir := opts.BackupDir
	if backupDir == "" {
		backupDir = filepath.Join(filepath.Dir(filepath.Clean(certDir)), "tmp", "kubeforge-certs-backup-"+now.UTC().Format("20060102T150405Z"))
	}

	r := &renewer{fsys: fsys, certDir: certDir, now: now, validity: opts.Validity, cas: map[string]*CA{}, caErr: map[string]error{}}
	res := &RenewResult{DryRun: opts.DryRun}
	var backups, writes []pendingWrite
	for _, n := range names {
		var (
			item        RenewedCert
			back, write []pendingWrite
			err         error
		)
		if d, ok := lookupCert(n); ok {
			item, back, write, err = r.renewLeaf(d, all)
		} else {
			item, back, write, err = r.renewKubeconfig(filepath.Join(kcDir, n), n, all)
		}
		if err != nil {
			return nil, err
		}
		res.Certificates = append(res.Certificates, item)
		for _, b := range back {
			rel := relTo(certDir, kcDir, b.path)
			b.path = filepath.Join(backupDir, rel)
			backups = append(backups, b)
		}
		writes = append(writes, write...)
	}
	if len(writes) > 0 {
		res.BackupDir = backupDir
	}
	if opts.DryRun {
		return res, nil
	}
	for _, w := range append(backups, writes...) {
		if err := fsys.WriteFile(w.path, w.data, w.mode); err != nil {
			return res, fmt.Errorf("writing %s: %w", w.path, err)
		}
	}
	return res, nil
}

// relTo names a replaced file inside the backup directory.
func relTo(certDir, kcDir, p string) string {
	if r, err := filepath.Rel(certDir, p); err == nil && !startsWithDotDot(r) {
		return filepath.Join("pki", r)
	}
	if r, err := filepath.Rel(kcDir, p); err == nil && !startsWithDotDot(r) {
		return filepath.Join("kubeconfig", r)
	}
	return filepath.Join("other", filepath.Base(p))
}

func startsWithDotDot(p string) bool {
	return p == ".." || len(p) > 2 && p[:3] == ".."+string(filepath.Separator)
}

type renewer struct {
	fsys     FS
	certDir  string
	now      time.Time
	validity time.Duration
	cas      map[string]*CA
	caErr    map[string]error
}

// ca loads a CA once. A missing CA certificate is reported as an error value the
// caller may turn into a skip.
func (r *renewer) ca(name string) (*CA, error) {
	if ca, ok := r.cas[name]; ok {
		return ca, r.caErr[name]
	}
	certPath, keyPath, _ := CertPaths(r.certDir, name)
	ca, err := LoadCA(r.fsys, certPath, keyPath)
	r.cas[name], r.caErr[name] = ca, err
	return ca, err
}

// renewSpec derives the new certificate's spec from the old certificate.
func (r *renewer) renewSpec(path string, old *x509.Certificate) (LeafSpec, error) {
	alg, err := AlgorithmOf(old.PublicKey)
	if err != nil {
		return LeafSpec{}, fmt.Errorf("%s: %w", path, err)
	}
	for _, u := range old.ExtKeyUsage {
		if _, ok := extUsageName[u]; !ok {
			return LeafSpec{}, fmt.Errorf("%s: extended key usage %v is not one kubeforge issues; refusing to renew it with different usages", path, u)
		}
	}
	if len(old.ExtKeyUsage) == 0 {
		return LeafSpec{}, fmt.Errorf("%s: certificate has no extended key usage; refusing to guess one", path)
	}
	validity := r.validity
	if validity == 0 {
		validity = old.NotAfter.Sub(old.NotBefore)
		if validity > Backdate {
			validity -= Backdate
		}
		validity = validity.Round(time.Second)
	}
	return LeafSpec{
		Subject:      old.Subject,
		DNSNames:     old.DNSNames,
		IPAddresses:  old.IPAddresses,
		Usages:       old.ExtKeyUsage,
		KeyAlgorithm: alg,
		Validity:     validity,
		Now:          r.now,
	}, nil
}

func (r *renewer) renewLeaf(d certDef, all bool) (RenewedCert, []pendingWrite, []pendingWrite, error) {
	certPath, keyPath, _ := d.paths(r.certDir)
	item := RenewedCert{Name: d.name, Path: certPath}
	certPEM, certOK, err := readOptional(r.fsys, certPath)
	if err != nil {
		return item, nil, nil, err
	}
	keyPEM, keyOK, err := readOptional(r.fsys, keyPath)
	if err != nil {
		return item, nil, nil, err
	}
	if !certOK {
		if all {
			item.Skipped = "not present"
			return item, nil, nil, nil
		}
		return item, nil, nil, fmt.Errorf("cannot renew %s: %s does not exist", d.name, certPath)
	}
	old, err := ParseCertPEM(certPEM)
	if err != nil {
		return item, nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	item.OldNotAfter = old.NotAfter
	ca, err := r.ca(d.caName)
	if err != nil {
		return item, nil, nil, fmt.Errorf("cannot renew %s: %w", d.name, err)
	}
	caCertPath, caKeyPath, _ := CertPaths(r.certDir, d.caName)
	if !ca.CanSign() && d.caName == CertEtcdCA {
		// An etcd member host that is not a control-plane host: its member
		// certificates come from the control plane, which alone holds the key.
		return item, nil, nil, fmt.Errorf("cannot renew %s here: the etcd CA key %s is only on the control plane, this host is an etcd member without it. "+
			"Renew its member certificates from the control plane: run `kubeforge init phase upload-certs --config <file>` on a control-plane host, "+
			"then on this host the `kubeforge join <endpoint> --token <token> --discovery-token-ca-cert-hash <hash> --etcd` command with the etcd certificate key it printed "+
			"(`kubeforge token create --print-join-command` on the control plane prints a token and the hash); join replaces member certificates that expire before the uploaded ones", d.name, caKeyPath)
	}
	if !ca.CanSign() {
		item.Skipped = fmt.Sprintf("externally managed: CA key %s is absent", caKeyPath)
		return item, nil, nil, nil
	}
	if err := old.CheckSignatureFrom(ca.Cert); err != nil {
		return item, nil, nil, fmt.Errorf("%s: not signed by the CA in %s; renewing it from that CA would silently change who it trusts", certPath, caCertPath)
	}
	spec, err := r.renewSpec(certPath, old)
	if err != nil {
		return item, nil, nil, err
	}
	newCert, newKey, err := Issue(ca, spec)
	if err != nil {
		return item, nil, nil, fmt.Errorf("renewing %s: %w", d.name, err)
	}
	c, _ := ParseCertPEM(newCert)
	item.NewNotAfter = c.NotAfter
	backups := []pendingWrite{{certPath, certPEM, CertMode}}
	if keyOK {
		backups = append(backups, pendingWrite{keyPath, keyPEM, KeyMode})
	}
	return item, backups, []pendingWrite{{keyPath, newKey, KeyMode}, {certPath, newCert, CertMode}}, nil
}

func (r *renewer) renewKubeconfig(path, name string, all bool) (RenewedCert, []pendingWrite, []pendingWrite, error) {
	item := RenewedCert{Name: name, Path: path}
	data, ok, err := readOptional(r.fsys, path)
	if err != nil {
		return item, nil, nil, err
	}
	if !ok {
		if all {
			item.Skipped = "not present"
			return item, nil, nil, nil
		}
		return item, nil, nil, fmt.Errorf("cannot renew %s: %s does not exist", name, path)
	}
	k, err := loadKubeconfig(path, data)
	if err != nil {
		return item, nil, nil, err
	}
	if !k.embedsClientCert() {
		item.Skipped = "client certificate is not embedded (rotated by its owner)"
		return item, nil, nil, nil
	}
	old, err := k.clientCert(r.fsys, path)
	if err != nil {
		return item, nil, nil, err
	}
	item.OldNotAfter = old.NotAfter
	ca, err := r.ca(CertCA)
	if err != nil {
		return item, nil, nil, fmt.Errorf("cannot renew %s: %w", name, err)
	}
	caCertPath, caKeyPath, _ := CertPaths(r.certDir, CertCA)
	if !ca.CanSign() {
		item.Skipped = fmt.Sprintf("externally managed: CA key %s is absent", caKeyPath)
		return item, nil, nil, nil
	}
	if err := old.CheckSignatureFrom(ca.Cert); err != nil {
		return item, nil, nil, fmt.Errorf("%s: client certificate is not signed by the CA in %s", path, caCertPath)
	}
	spec, err := r.renewSpec(path, old)
	if err != nil {
		return item, nil, nil, err
	}
	newCert, newKey, err := Issue(ca, spec)
	if err != nil {
		return item, nil, nil, fmt.Errorf("renewing %s: %w", name, err)
	}
	c, _ := ParseCertPEM(newCert)
	item.NewNotAfter = c.NotAfter
	k.authInfo.ClientCertificateData = newCert
	k.authInfo.ClientKeyData = newKey
	// The new certificate is signed by ca.crt, so that is the CA the kubeconfig
	// must carry (kubeadm once kept a stale one here: kubernetes/kubeadm#2027).
	k.cluster.CertificateAuthorityData = ca.CertPEM
	out, err := clientcmd.Write(*k.cfg)
	if err != nil {
		return item, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return item, []pendingWrite{{path, data, KubeconfigMode}}, []pendingWrite{{path, out, KubeconfigMode}}, nil
}

// WriteText prints the renewal result for people.
func (r *RenewResult) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 10, 4, 3, ' ', 0)
	verb := "renewed"
	if r.DryRun {
		verb = "would renew"
	}
	for _, c := range r.Certificates {
		if c.Skipped != "" {
			fmt.Fprintf(tw, "%s\tskipped: %s\n", c.Name, c.Skipped)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s: expires %s (was %s)\n", c.Name, verb, expires(c.NewNotAfter), expires(c.OldNotAfter))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.BackupDir != "" {
		if r.DryRun {
			fmt.Fprintf(w, "The replaced files would be backed up to %s.\n", r.BackupDir)
		} else {
			fmt.Fprintf(w, "The replaced files are backed up in %s.\nRestart kube-apiserver, kube-controller-manager, kube-scheduler and etcd to load the new certificates.\n", r.BackupDir)
		}
	}
	return nil
}
