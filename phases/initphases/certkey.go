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

// EtcdCertificateKeyExpiry does the same for the etcd member hand-over's key
// (Secret kube-system/kubeforge-etcd-members, same lifetime).
const EtcdCertificateKeyExpiry = "kubeforge-etcd-certificate-key-expiry"

// certificateKeyExpiryUnits are the service and timer for a key at keyPath
// whose upload expires in ttl. The timer counts from its (re)start, so after a
// reboot it fires ttl after boot: later than the upload's end, never earlier.
func certificateKeyExpiryUnits(keyPath string, expires time.Time, ttl time.Duration) (service, timer []byte) {
	return keyExpiryUnits(CertificateKeyExpiry, clusterinfo.CertsSecretName, keyPath, expires, ttl)
}

// keyExpiryUnits are the service and timer name.service/.timer that delete
// keyPath when the upload in Secret kube-system/secret expires.
func keyExpiryUnits(name, secret, keyPath string, expires time.Time, ttl time.Duration) (service, timer []byte) {
	desc := fmt.Sprintf("Delete kubeforge's certificate key when its upload (Secret kube-system/%s) expires at %s",
		secret, expires.UTC().Format(time.RFC3339))
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
		fmt.Sprintf("[Timer]\nOnActiveSec=%ds\nAccuracySec=1s\nUnit=%s.service\n\n", secs, name) +
		"[Install]\nWantedBy=timers.target\n")
	return service, timer
}

// armCertificateKeyExpiry writes, enables and (re)starts the expiry timer for
// a key just written with a new upload.
func armCertificateKeyExpiry(ctx context.Context, h host.Host, keyPath string, now time.Time) error {
	return armKeyExpiry(ctx, h, CertificateKeyExpiry, clusterinfo.CertsSecretName, keyPath, now)
}

// armEtcdCertificateKeyExpiry is armCertificateKeyExpiry for the etcd member
// hand-over's key.
func armEtcdCertificateKeyExpiry(ctx context.Context, h host.Host, keyPath string, now time.Time) error {
	return armKeyExpiry(ctx, h, EtcdCertificateKeyExpiry, clusterinfo.EtcdMembersSecretName, keyPath, now)
}

func armKeyExpiry(ctx context.Context, h host.Host, name, secret, keyPath string, now time.Time) error {
	svc, tmr := keyExpiryUnits(name, secret, keyPath, now.Add(clusterinfo.CertsTTL), clusterinfo.CertsTTL)
	u := h.Units()
	if _, err := u.WriteUnit(ctx, name+".service", svc); err != nil {
		return fmt.Errorf("%s: %w", h.Name(), err)
	}
	if _, err := u.WriteUnit(ctx, name+".timer", tmr); err != nil {
		return fmt.Errorf("%s: %w", h.Name(), err)
	}
	if err := u.Enable(ctx, name+".timer"); err != nil {
		return fmt.Errorf("%s: enabling %s.timer: %w", h.Name(), name, err)
	}
	if err := u.Restart(ctx, name+".timer"); err != nil {
		return fmt.Errorf("%s: starting %s.timer: %w", h.Name(), name, err)
	}
	return nil
}
