package certs

import (
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
)

// CertExpiration is one certificate's (or kubeconfig client certificate's) state.
type CertExpiration struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// Missing is set when the file does not exist (e.g. etcd certificates on a
	// control-plane host that is not an etcd member); the other fields are empty.
	Missing           bool          `json:"missing,omitempty"`
	Subject           string        `json:"subject,omitempty"`
	NotAfter          time.Time     `json:"notAfter,omitzero"`
	Residual          time.Duration `json:"-"`
	ResidualSeconds   int64         `json:"residualSeconds"`
	CA                string        `json:"certificateAuthority,omitempty"`
	ExternallyManaged bool          `json:"externallyManaged"`
}

// CAExpiration is one CA's state.
type CAExpiration struct {
	Name              string        `json:"name"`
	Path              string        `json:"path"`
	Missing           bool          `json:"missing,omitempty"`
	NotAfter          time.Time     `json:"notAfter,omitzero"`
	Residual          time.Duration `json:"-"`
	ResidualSeconds   int64         `json:"residualSeconds"`
	ExternallyManaged bool          `json:"externallyManaged"`
}

// ExpirationReport lists every certificate and CA of a node.
type ExpirationReport struct {
	Now          time.Time        `json:"now"`
	Certificates []CertExpiration `json:"certificates"`
	CAs          []CAExpiration   `json:"certificateAuthorities"`
}

// CheckExpiration reads every certificate, kubeconfig and CA under certDir and
// kubeconfigDir and reports when each expires. A CA is externally managed when
// its key is absent, and so is everything it signed (kubeadm's definition): those
// cannot be renewed here. An unreadable or corrupt file is an error naming it.
func CheckExpiration(fsys FS, certDir, kubeconfigDir string, now time.Time) (*ExpirationReport, error) {
	if fsys == nil {
		fsys = LocalFS{}
	}
	r := &ExpirationReport{Now: now}
	external := map[string]bool{}
	for _, ca := range caNames() {
		certPath, keyPath, _ := CertPaths(certDir, ca)
		e := CAExpiration{Name: ca, Path: certPath}
		data, ok, err := readOptional(fsys, certPath)
		if err != nil {
			return nil, err
		}
		if !ok {
			e.Missing = true
		} else {
			c, err := ParseCertPEM(data)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", certPath, err)
			}
			_, keyOK, err := readOptional(fsys, keyPath)
			if err != nil {
				return nil, err
			}
			e.NotAfter, e.Residual, e.ExternallyManaged = c.NotAfter, c.NotAfter.Sub(now), !keyOK
			e.ResidualSeconds = int64(e.Residual / time.Second)
		}
		external[ca] = e.ExternallyManaged
		r.CAs = append(r.CAs, e)
	}

	for _, kd := range kubeconfigCatalog {
		p := filepath.Join(kubeconfigDir, kd.name)
		e := CertExpiration{Name: kd.name, Path: p, CA: CertCA, ExternallyManaged: external[CertCA]}
		data, ok, err := readOptional(fsys, p)
		if err != nil {
			return nil, err
		}
		if !ok {
			e.Missing = true
		} else {
			k, err := loadKubeconfig(p, data)
			if err != nil {
				return nil, err
			}
			c, err := k.clientCert(fsys, p)
			if err != nil {
				return nil, err
			}
			e.Subject, e.NotAfter, e.Residual = subjectString(c.Subject), c.NotAfter, c.NotAfter.Sub(now)
			e.ResidualSeconds = int64(e.Residual / time.Second)
		}
		r.Certificates = append(r.Certificates, e)
	}

	for _, d := range catalog {
		if d.isCA() || d.name == CertServiceAccount {
			continue
		}
		certPath, _, _ := d.paths(certDir)
		e := CertExpiration{Name: d.name, Path: certPath, CA: d.caName, ExternallyManaged: external[d.caName]}
		data, ok, err := readOptional(fsys, certPath)
		if err != nil {
			return nil, err
		}
		if !ok {
			e.Missing = true
		} else {
			c, err := ParseCertPEM(data)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", certPath, err)
			}
			e.Subject, e.NotAfter, e.Residual = subjectString(c.Subject), c.NotAfter, c.NotAfter.Sub(now)
			e.ResidualSeconds = int64(e.Residual / time.Second)
		}
		r.Certificates = append(r.Certificates, e)
	}
	return r, nil
}

// WriteText prints the report as kubeadm's check-expiration table.
func (r *ExpirationReport) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 10, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tEXPIRES\tRESIDUAL TIME\tCERTIFICATE AUTHORITY\tEXTERNALLY MANAGED")
	for _, c := range r.Certificates {
		if c.Missing {
			fmt.Fprintf(tw, "!MISSING! %s\t\t\t\t\n", c.Name)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, expires(c.NotAfter), residual(c.Residual), c.CA, yesNo(c.ExternallyManaged))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CERTIFICATE AUTHORITY\tEXPIRES\tRESIDUAL TIME\tEXTERNALLY MANAGED")
	for _, c := range r.CAs {
		if c.Missing {
			fmt.Fprintf(tw, "!MISSING! %s\t\t\t\n", c.Name)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, expires(c.NotAfter), residual(c.Residual), yesNo(c.ExternallyManaged))
	}
	return tw.Flush()
}

func expires(t time.Time) string { return t.UTC().Format("Jan 02, 2006 15:04 MST") }

func residual(d time.Duration) string {
	if d <= 0 {
		return "<expired>"
	}
	return duration.ShortHumanDuration(d)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
