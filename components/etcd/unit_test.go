package etcd

import (
	"strings"
	"testing"
)

func TestUnitLoadsOnSystemd219(t *testing.T) {
	if err := LintUnit(Unit()); err != nil {
		t.Fatalf("etcd.service uses directives CentOS 7 does not know:\n%v", err)
	}
}

func TestUnitSettings(t *testing.T) {
	u := string(Unit())
	for _, want := range []string{
		"\nType=notify\n",
		"\nRestart=always\n",
		"\nRestartSec=5s\n",
		"\nOOMScoreAdjust=-999\n",
		"\nLimitNOFILE=65536\n",
		"\nNice=-10\n",
		"\nExecStart=/usr/local/bin/etcd --config-file=/etc/etcd/etcd.conf.yml\n",
		"\n[Install]\nWantedBy=multi-user.target\n",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	// Everything about the member is in the root-only config file; the unit (world
	// readable, shown by systemctl cat) carries no paths to keys or other settings.
	if strings.Contains(u, ".key") || strings.Contains(u, "--cert") {
		t.Errorf("unit mentions key material:\n%s", u)
	}
	// StartLimitInterval= belongs in [Service] on 219.
	unitSec, serviceSec, _ := strings.Cut(u, "[Service]")
	if strings.Contains(unitSec, "StartLimit") || !strings.Contains(serviceSec, "\nStartLimitInterval=0\n") {
		t.Errorf("start limit not in [Service]:\n%s", u)
	}
}

func TestLintUnitFindsPost219Directives(t *testing.T) {
	bad := `[Unit]
Description=x
StartLimitIntervalSec=0
StartLimitBurst=3

[Service]
Type=exec
StateDirectory=etcd
TasksMax=infinity
ExecCondition=/bin/true
ExecStart=+/usr/local/bin/etcd
StandardOutput=append:/var/log/etcd.log
StartLimitInterval=10s
StartLimitBurst=3
MemoryLimit=1G
`
	err := LintUnit([]byte(bad))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"line 3: [Unit] StartLimitIntervalSec= needs systemd 229",
		"use StartLimitInterval= in [Service]",
		"line 4: [Unit] StartLimitBurst= needs systemd 229",
		"line 7: [Service] Type=exec needs systemd 240",
		"line 8: [Service] StateDirectory= needs systemd 235",
		"line 9: [Service] TasksMax= needs systemd 228",
		"line 10: [Service] ExecCondition= needs systemd 243",
		`line 11: [Service] ExecStart= with a "+" prefix needs systemd 231`,
		"line 12: [Service] StandardOutput=append:/var/log/etcd.log needs systemd 240",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("lint output lacks %q:\n%s", want, msg)
		}
	}
	// What 219 does understand is not flagged.
	for _, ok := range []string{"line 13:", "line 14:", "line 15:"} {
		if strings.Contains(msg, ok) {
			t.Errorf("flagged a 219 directive (%s):\n%s", ok, msg)
		}
	}
}
