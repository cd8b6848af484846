package initphases

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
	"github.com/kubeforge/kubeforge/components/etcd"
)

// TestCertificateKeyExpiry: init arms a timer that deletes the key file when
// the upload's two hours are over; the units load on systemd 219, carry
// kubeforge's marker (so reset removes them) and no secret.
func TestCertificateKeyExpiry(t *testing.T) {
	now := time.Date(2026, 12, 3, 13, 0, 0, 0, time.UTC)
	svc, tmr := certificateKeyExpiryUnits("/etc/kubernetes/pki/kubeforge-certificate-key", now.Add(2*time.Hour), 2*time.Hour)
	for name, u := range map[string][]byte{"service": svc, "timer": tmr} {
		if err := etcd.LintUnit(u); err != nil {
			t.Errorf("%s: %v\n%s", name, err, u)
		}
		if !strings.Contains(string(u), "written by kubeforge") || !strings.Contains(string(u), "2026-12-03T15:00:00Z") {
			t.Errorf("%s lacks the marker or the expiry:\n%s", name, u)
		}
	}
	if !strings.Contains(string(svc), "ExecStart=/bin/rm -f /etc/kubernetes/pki/kubeforge-certificate-key\n") {
		t.Errorf("service:\n%s", svc)
	}
	if !strings.Contains(string(tmr), "OnActiveSec=7200s\n") || !strings.Contains(string(tmr), "WantedBy=timers.target") {
		t.Errorf("timer:\n%s", tmr)
	}
	svc, _ = certificateKeyExpiryUnits("/srv/my pki/kubeforge-certificate-key", now, time.Hour)
	if !strings.Contains(string(svc), `ExecStart=/bin/rm -f "/srv/my pki/kubeforge-certificate-key"`) {
		t.Errorf("a path with a space is not quoted:\n%s", svc)
	}

	h := fakehost.New("master01")
	if err := armCertificateKeyExpiry(context.Background(), h, "/etc/kubernetes/pki/kubeforge-certificate-key", now); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(h.Changes(), "\n")
	for _, want := range []string{"unit " + CertificateKeyExpiry + ".service", "unit " + CertificateKeyExpiry + ".timer", "enable " + CertificateKeyExpiry + ".timer"} {
		if !strings.Contains(got, want) {
			t.Errorf("changes lack %q:\n%s", want, got)
		}
	}
	if u := h.UnitFiles[CertificateKeyExpiry+".timer"]; u == nil || !u.Active {
		t.Errorf("timer not started: %+v", u)
	}
}
