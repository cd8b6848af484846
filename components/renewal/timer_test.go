package renewal

import (
	"context"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
	"github.com/kubeforge/kubeforge/components/etcd"
)

func TestTimerUnits(t *testing.T) {
	a := config.CertAutoRenew{Schedule: "1m", RenewBefore: "10m"}
	svc := Service(a)
	if err := etcd.LintUnit(svc); err != nil {
		t.Errorf("service: %v", err)
	}
	if !strings.Contains(string(svc), "ExecStart=/usr/local/bin/kubeforge certs renew all --expiring-within 10m\n") {
		t.Errorf("service runs:\n%s", svc)
	}
	timer, err := Timer(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := etcd.LintUnit(timer); err != nil {
		t.Errorf("timer: %v", err)
	}
	if !strings.Contains(string(timer), "OnUnitActiveSec=60s\n") {
		t.Errorf("timer:\n%s", timer)
	}
	if daily, _ := Timer(config.CertAutoRenew{Schedule: "daily", RenewBefore: "720h"}); !strings.Contains(string(daily), "OnCalendar=daily\nPersistent=true\n") {
		t.Errorf("daily timer:\n%s", daily)
	}
	if _, err := Timer(config.CertAutoRenew{Schedule: "sometimes"}); err == nil || !strings.Contains(err.Error(), "spec.certificates.autoRenew.schedule") {
		t.Errorf("bad schedule: %v", err)
	}
}

func TestInstallAndRemoveTimer(t *testing.T) {
	ctx := context.Background()
	h := fakehost.New("master01")
	a := config.CertAutoRenew{Schedule: "daily", RenewBefore: "720h"}
	if changed, err := InstallTimer(ctx, h, a, t.Logf); err != nil || !changed {
		t.Fatalf("install: changed %v, %v", changed, err)
	}
	if u := h.UnitFiles[TimerName]; u == nil || !u.Enabled || !u.Active {
		t.Errorf("timer not enabled and started: %+v", u)
	}
	if u := h.UnitFiles[ServiceName]; u == nil || u.Active || u.Enabled {
		t.Errorf("the service is started by the timer only: %+v", u)
	}
	h.SetFile(UnitDir+"/"+TimerName, string(h.UnitFiles[TimerName].Content), 0o644)
	h.SetFile(UnitDir+"/"+ServiceName, string(h.UnitFiles[ServiceName].Content), 0o644)
	if ok, _ := TimerPresent(ctx, h); !ok {
		t.Fatal("TimerPresent: false with the units there")
	}
	if changed, err := RemoveTimer(ctx, h, t.Logf); err != nil || !changed {
		t.Fatalf("remove: %v %v", changed, err)
	}
	if _, ok := h.UnitFiles[TimerName]; ok {
		t.Error("timer still there")
	}
}
