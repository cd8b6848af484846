package initphases

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/clusterinfo"
)

// CertificateKeyExpiry is the timer (and its oneshot service) that deletes the
// certificate key from the host when its upload expires: the cluster deletes
// the encrypted upload after clusterinfo.CertsTTL, and the key, which would
// decrypt any copy of it, must not outlive it on disk.
const CertificateKeyExpiry = "kubeforge-certificate-key-expiry"

// certificateKeyExpiryUnits are the service and timer for a key at keyPath
// whose upload expires in ttl. The timer counts from its (re)start, so after a
// reboot it fires ttl after boot: later than the upload's end, never earlier.
func certificateKeyExpiryUnits(keyPath string, expires time.Time, ttl time.Duration) (service, timer []byte) {
	desc := fmt.Sprintf("Delete kubeforge's certificate key when its upload (Secret kube-system/%s) expires at %s",
		clusterinfo.CertsSecretName, expires.UTC().Format(time.RFC3339))
	q := keyPath
	if strings.ContainsAny(q, " \t\"\\") {
		q = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(q) + `"`
	}
	service = []byte("# " + desc + "; written by kubeforge.\n" +
		"[Unit]\nDescription=" + desc + "\n\n" +
		"[Service]\nType=oneshot\nExecStart=/bin/rm -f " + q + "\n")
	secs := int64(ttl.Round(time.Second) / time.Second)
	timer = []byte("# " + desc + "; written by kubeforge.\n" +
		"[Unit]\nDescription=" + desc + "\n\n" +
		fmt.Sprintf("[Timer]\nOnActiveSec=%ds\nAccuracySec=1s\nUnit=%s.service\n\n", secs, CertificateKeyExpiry) +
		"[Install]\nWantedBy=timers.target\n")
	return service, timer
}

// armCertificateKeyExpiry writes, enables and (re)starts the expiry timer for
// a key just written with a new upload.
func armCertificateKeyExpiry(ctx context.Context, h host.Host, keyPath string, now time.Time) error {
	svc, tmr := certificateKeyExpiryUnits(keyPath, now.Add(clusterinfo.CertsTTL), clusterinfo.CertsTTL)
	u := h.Units()
	if _, err := u.WriteUnit(ctx, CertificateKeyExpiry+".service", svc); err != nil {
		return fmt.Errorf("%s: %w", h.Name(), err)
	}
	if _, err := u.WriteUnit(ctx, CertificateKeyExpiry+".timer", tmr); err != nil {
		return fmt.Errorf("%s: %w", h.Name(), err)
	}
	if err := u.Enable(ctx, CertificateKeyExpiry+".timer"); err != nil {
		return fmt.Errorf("%s: enabling %s.timer: %w", h.Name(), CertificateKeyExpiry, err)
	}
	if err := u.Restart(ctx, CertificateKeyExpiry+".timer"); err != nil {
		return fmt.Errorf("%s: starting %s.timer: %w", h.Name(), CertificateKeyExpiry, err)
	}
	return nil
}
