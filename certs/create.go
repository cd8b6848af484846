package certs

import (
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"
)

// Default directories, kubeadm's.
const (
	DefaultCertDir       = "/etc/kubernetes/pki"
	DefaultKubeconfigDir = "/etc/kubernetes"
)

// PKI creates, checks and renews the certificate and kubeconfig files of one node.
type PKI struct {
	Spec          Spec
	CertDir       string
	KubeconfigDir string
	// FS is where files live; LocalFS when nil.
	FS FS
	// Out receives one line per file decision ("[certs] Using existing ...");
	// nothing when nil. Never receives key material.
	Out io.Writer
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// CreatePKIAssets creates (or checks and keeps) every certificate and key of the
// node spec.NodeName under dir: the three CAs, the service-account key pair and the
// leaf certificates, etcd-server/etcd-peer only when the node is an etcd host.
// Progress goes to stdout as in `kubeadm init phase certs all`.
func CreatePKIAssets(spec Spec, dir string) error {
	return (&PKI{Spec: spec, CertDir: dir, Out: os.Stdout}).CreateCerts()
}

// CreateCert creates (or checks and keeps) one named certificate, for
// `init phase certs <name>`. Its CA must already exist unless name is a CA.
func CreateCert(spec Spec, dir, name string) error {
	return (&PKI{Spec: spec, CertDir: dir, Out: os.Stdout}).CreateCerts(name)
}

// CreateKubeconfigs creates (or checks and keeps) every kubeconfig of a
// control-plane node in kcDir, signing the client certificates with the CA in
// certDir.
func CreateKubeconfigs(spec Spec, certDir, kcDir string) error {
	return (&PKI{Spec: spec, CertDir: certDir, KubeconfigDir: kcDir, Out: os.Stdout}).CreateKubeconfigs()
}

// CreateKubeconfig creates (or checks and keeps) one named kubeconfig
// (e.g. "admin.conf"), for `init phase kubeconfig <name>`.
func CreateKubeconfig(spec Spec, certDir, kcDir, name string) error {
	return (&PKI{Spec: spec, CertDir: certDir, KubeconfigDir: kcDir, Out: os.Stdout}).CreateKubeconfigs(name)
}

// CreateCerts creates the named certificates (all when none are named). Every
// existing file is checked and every new one signed in memory first; files are
// written only when all of that succeeded.
func (p *PKI) CreateCerts(names ...string) error {
	pl, err := p.newPlanner()
	if err != nil {
		return err
	}
	if err := pl.planCerts(names); err != nil {
		return err
	}
	return pl.apply()
}

// CreateKubeconfigs creates the named kubeconfigs (all when none are named), with
// the same check-everything-then-write discipline as CreateCerts.
func (p *PKI) CreateKubeconfigs(names ...string) error {
	pl, err := p.newPlanner()
	if err != nil {
		return err
	}
	if err := pl.planKubeconfigs(names); err != nil {
		return err
	}
	return pl.apply()
}

// CreateAll creates every certificate and then every kubeconfig in one plan, so
// either everything is written or nothing is.
func (p *PKI) CreateAll() error {
	pl, err := p.newPlanner()
	if err != nil {
		return err
	}
	if err := pl.planCerts(nil); err != nil {
		return err
	}
	if err := pl.planKubeconfigs(nil); err != nil {
		return err
	}
	return pl.apply()
}

func (p *PKI) fs() FS {
	if p.FS == nil {
		return LocalFS{}
	}
	return p.FS
}

func (p *PKI) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

func (p *PKI) certDir() string {
	if p.CertDir == "" {
		return DefaultCertDir
	}
	return p.CertDir
}

func (p *PKI) kubeconfigDir() string {
	if p.KubeconfigDir == "" {
		return DefaultKubeconfigDir
	}
	return p.KubeconfigDir
}

// planner holds one run's decisions: the CAs it loaded or created, the files it will
// write and the messages it will print.
type planner struct {
	p      *PKI
	fsys   FS
	s      Spec
	now    time.Time
	cas    map[string]*CA
	writes []pendingWrite
	msgs   []string
}

type pendingWrite struct {
	path string
	data []byte
	mode fs.FileMode
}

func (p *PKI) newPlanner() (*planner, error) {
	s, err := p.Spec.complete()
	if err != nil {
		return nil, err
	}
	return &planner{p: p, fsys: p.fs(), s: s, now: p.now(), cas: map[string]*CA{}}, nil
}

func (pl *planner) say(format string, a ...any) { pl.msgs = append(pl.msgs, fmt.Sprintf(format, a...)) }

func (pl *planner) write(path string, data []byte, mode fs.FileMode) {
	pl.writes = append(pl.writes, pendingWrite{path, data, mode})
}

// apply prints the decisions and writes the files.
func (pl *planner) apply() error {
	if pl.p.Out != nil {
		for _, m := range pl.msgs {
			fmt.Fprintln(pl.p.Out, m)
		}
	}
	for _, w := range pl.writes {
		if err := pl.fsys.WriteFile(w.path, w.data, w.mode); err != nil {
			return fmt.Errorf("writing %s: %w", w.path, err)
		}
	}
	return nil
}

func (pl *planner) planCerts(names []string) error {
	all := len(names) == 0
	if all {
		names = CertNames()
	}
	for _, n := range names {
		if _, ok := lookupCert(n); !ok {
			return unknownCert(n)
		}
	}
	for _, n := range names {
		d, _ := lookupCert(n)
		var err error
		switch {
		case d.name == CertServiceAccount:
			err = pl.ensureServiceAccount(d)
		case d.isCA():
			_, err = pl.ensureCA(d.name, true)
		default:
			h := Host{}
			if d.perEtcdHost {
				var member bool
				h, member = pl.s.etcdHost(pl.s.NodeName)
				if !member {
					if all {
						pl.say("[certs] Skipping %s: node %q is not an etcd host", d.name, pl.s.NodeName)
						continue
					}
					return fmt.Errorf("%s: node %q is not one of the etcd hosts %v", d.name, pl.s.NodeName, hostNames(pl.s.EtcdHosts))
				}
			}
			err = pl.ensureLeaf(d, h)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// ensureCA loads the named CA, or creates it when create is set and neither of its
// files exists.
func (pl *planner) ensureCA(name string, create bool) (*CA, error) {
	if ca, ok := pl.cas[name]; ok {
		return ca, nil
	}
	d, _ := lookupCert(name)
	certPath, keyPath, _ := d.paths(pl.p.certDir())
	certPEM, certOK, err := readOptional(pl.fsys, certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, keyOK, err := readOptional(pl.fsys, keyPath)
	if err != nil {
		return nil, err
	}
	switch {
	case !certOK && keyOK:
		return nil, fmt.Errorf("%s exists but %s does not: refusing to guess which CA this is; restore the certificate or remove the key", keyPath, certPath)
	case !certOK && !create:
		return nil, fmt.Errorf("%s: %w; create the %s CA first (init phase certs %s)", certPath, fs.ErrNotExist, name, name)
	case !certOK:
		ca, err := NewCA(caCommonName(name), pl.s.KeyAlgorithm, pl.s.CAValidity, pl.now)
		if err != nil {
			return nil, fmt.Errorf("creating %s: %w", name, err)
		}
		pl.say("[certs] Generating %q certificate and key", name)
		pl.write(keyPath, ca.KeyPEM, KeyMode)
		pl.write(certPath, ca.CertPEM, CertMode)
		pl.cas[name] = ca
		return ca, nil
	}
	if !keyOK {
		keyPEM = nil
	}
	ca, err := parseCAFiles(certPath, certPEM, keyPath, keyPEM)
	if err != nil {
		return nil, err
	}
	if pl.now.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("%s: CA certificate expired at %s", certPath, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if ca.CanSign() {
		pl.say("[certs] Using existing %s certificate authority", name)
	} else {
		pl.say("[certs] Using existing %s certificate authority without its key (%s): externally managed", name, keyPath)
	}
	pl.cas[name] = ca
	return ca, nil
}

func caCommonName(name string) string {
	if name == CertCA {
		return "kubernetes"
	}
	return name
}

// parseCAFiles is ParseCA with errors naming the file at fault.
func parseCAFiles(certPath string, certPEM []byte, keyPath string, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("%s: certificate %q is not a CA", certPath, cert.Subject.CommonName)
	}
	ca := &CA{Cert: cert, CertPEM: certPEM}
	if keyPEM != nil {
		key, err := ParseKeyPEM(keyPEM)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", keyPath, err)
		}
		if !publicKeysEqual(cert.PublicKey, key.Public()) {
			return nil, fmt.Errorf("%s: private key does not belong to the certificate in %s", keyPath, certPath)
		}
		ca.Key, ca.KeyPEM = key, keyPEM
	}
	return ca, nil
}

func (pl *planner) ensureLeaf(d certDef, h Host) error {
	ca, err := pl.ensureCA(d.caName, false)
	if err != nil {
		return fmt.Errorf("%s: %w", d.name, err)
	}
	want := pl.s.leafSpec(d, h)
	want.Now = pl.now
	certPath, keyPath, _ := d.paths(pl.p.certDir())
	certPEM, certOK, err := readOptional(pl.fsys, certPath)
	if err != nil {
		return err
	}
	keyPEM, keyOK, err := readOptional(pl.fsys, keyPath)
	if err != nil {
		return err
	}
	switch {
	case certOK && keyOK:
		caCertPath, _, _ := CertPaths(pl.p.certDir(), d.caName)
		if err := checkLeaf(certPath, certPEM, keyPath, keyPEM, ca, caCertPath, want, pl.now); err != nil {
			return err
		}
		pl.say("[certs] Using existing %s certificate and key on disk", d.name)
		return nil
	case certOK:
		return fmt.Errorf("%s exists but its key %s does not; restore the key or remove the certificate", certPath, keyPath)
	case keyOK:
		return fmt.Errorf("%s exists but its certificate %s does not; restore the certificate or remove the key", keyPath, certPath)
	}
	if !ca.CanSign() {
		_, caKey, _ := CertPaths(pl.p.certDir(), d.caName)
		return fmt.Errorf("cannot create %s: the CA key %s is missing (externally managed CA), so %s and %s must be provided", d.name, caKey, certPath, keyPath)
	}
	certPEM, keyPEM, err = Issue(ca, want)
	if err != nil {
		return fmt.Errorf("%s: %w", d.name, err)
	}
	pl.say("[certs] Generating %q certificate and key", d.name)
	if len(want.DNSNames)+len(want.IPAddresses) > 0 {
		pl.say("[certs] %s serving cert is signed for DNS names %v and IPs %v", d.name, want.DNSNames, want.IPAddresses)
	}
	pl.write(keyPath, keyPEM, KeyMode)
	pl.write(certPath, certPEM, CertMode)
	return nil
}

// checkLeaf verifies an existing certificate/key pair against the CA and the spec
// it should satisfy. The error names the file and says what is wrong.
func checkLeaf(certPath string, certPEM []byte, keyPath string, keyPEM []byte, ca *CA, caCertPath string, want LeafSpec, now time.Time) error {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", certPath, err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", keyPath, err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return fmt.Errorf("%s: private key does not belong to the certificate in %s", keyPath, certPath)
	}
	return checkCert(certPath, cert, ca, caCertPath, want, now)
}

// checkCert verifies an existing certificate: issuer, validity, usages, subject and
// SANs. Extra SANs are fine; missing ones are not.
func checkCert(path string, cert *x509.Certificate, ca *CA, caCertPath string, want LeafSpec, now time.Time) error {
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		return fmt.Errorf("%s: not signed by the CA in %s (issuer %q, CA %q); it belongs to another PKI", path, caCertPath, cert.Issuer.CommonName, ca.Cert.Subject.CommonName)
	}
	if now.After(cert.NotAfter) {
		return fmt.Errorf("%s: certificate expired at %s; renew it (kubeforge certs renew)", path, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("%s: certificate is not valid before %s (clock skew?)", path, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if err := ca.Verify(cert, now, want.Usages...); err != nil {
		return fmt.Errorf("%s: does not verify against %s for %s: %v", path, caCertPath, usageNames(want.Usages), err)
	}
	if cert.Subject.CommonName != want.Subject.CommonName {
		return fmt.Errorf("%s: common name is %q, expected %q", path, cert.Subject.CommonName, want.Subject.CommonName)
	}
	if !sameSet(cert.Subject.Organization, want.Subject.Organization) {
		return fmt.Errorf("%s: organization is %q, expected %q", path, cert.Subject.Organization, want.Subject.Organization)
	}
	var missing []string
	for _, n := range want.DNSNames {
		if !slices.Contains(cert.DNSNames, n) {
			missing = append(missing, n)
		}
	}
	for _, ip := range want.IPAddresses {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			missing = append(missing, ip.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: certificate lacks subject alternative names %s; remove it (and its key) to have it reissued, or renew with the new names", path, strings.Join(missing, ", "))
	}
	return nil
}

func usageNames(us []x509.ExtKeyUsage) string {
	var out []string
	for _, u := range us {
		out = append(out, extUsageName[u])
	}
	return strings.Join(out, "+")
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// ensureServiceAccount keeps or creates sa.key/sa.pub. The key is RSA like
// kubeadm's (sized after the spec's RSA algorithm, 2048 bits for ECDSA clusters):
// RSA service-account keys are what every token consumer supports.
func (pl *planner) ensureServiceAccount(d certDef) error {
	pubPath, keyPath, _ := d.paths(pl.p.certDir())
	keyPEM, keyOK, err := readOptional(pl.fsys, keyPath)
	if err != nil {
		return err
	}
	pubPEM, pubOK, err := readOptional(pl.fsys, pubPath)
	if err != nil {
		return err
	}
	if !keyOK {
		if pubOK {
			return fmt.Errorf("%s exists but the private key %s does not; tokens signed by the lost key cannot be verified against a new one — restore the key or remove %s", pubPath, keyPath, pubPath)
		}
		alg := pl.s.KeyAlgorithm
		if !alg.IsRSA() {
			alg = RSA2048
		}
		key, err := GenerateKey(alg)
		if err != nil {
			return err
		}
		keyPEM, err := MarshalKeyPEM(key)
		if err != nil {
			return err
		}
		pubPEM, err := MarshalPublicKeyPEM(key.Public())
		if err != nil {
			return err
		}
		pl.say("[certs] Generating \"sa\" key and public key")
		pl.write(keyPath, keyPEM, KeyMode)
		pl.write(pubPath, pubPEM, PublicKeyMode)
		return nil
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", keyPath, err)
	}
	if _, ok := key.(*rsa.PrivateKey); !ok {
		return fmt.Errorf("%s: service-account key is %T, expected RSA", keyPath, key)
	}
	wantPub, err := MarshalPublicKeyPEM(key.Public())
	if err != nil {
		return err
	}
	if !pubOK {
		// The public half is derivable; rewriting it loses nothing.
		pl.say("[certs] Using the existing \"sa\" key; writing the missing %s", pubPath)
		pl.write(pubPath, wantPub, PublicKeyMode)
		return nil
	}
	pub, err := parsePublicKeyPEM(pubPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", pubPath, err)
	}
	if !publicKeysEqual(pub, key.Public()) {
		return fmt.Errorf("%s: public key does not belong to the private key in %s", pubPath, keyPath)
	}
	pl.say("[certs] Using the existing \"sa\" key")
	return nil
}
