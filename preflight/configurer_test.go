package preflight

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func fixture(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// distroHost is a fake host of the given os-release fixture.
func distroHost(t testing.TB, distro string) *fakeHost {
	f := newFakeHost("node01")
	f.put("/etc/os-release", fixture(t, "os-release/"+distro))
	return f
}

func TestDetectPerDistro(t *testing.T) {
	cases := []struct {
		fixture       string
		id, version   string
		family        string
		major         int
		tested        bool
		chronyConf    string
		chronyService string
		driftFile     string
		install       []string
		installEnv    []string
		conntrackPkg  string
		ipPkg         string
		mac           string
		selinuxExtra  int
	}{
		{"centos-7", "centos", "7", FamilyEnterpriseLinux, 7, true, "/etc/chrony.conf", "chronyd.service", "/var/lib/chrony/drift",
			[]string{"yum", "install", "-y", "chrony"}, nil, "conntrack-tools", "iproute", "selinux", 0},
		{"rocky-8", "rocky", "8.9", FamilyEnterpriseLinux, 8, true, "/etc/chrony.conf", "chronyd.service", "/var/lib/chrony/drift",
			[]string{"dnf", "install", "-y", "chrony"}, nil, "conntrack-tools", "iproute", "selinux", 0},
		{"alma-9", "almalinux", "9.4", FamilyEnterpriseLinux, 9, true, "/etc/chrony.conf", "chronyd.service", "/var/lib/chrony/drift",
			[]string{"dnf", "install", "-y", "chrony"}, nil, "conntrack-tools", "iproute", "selinux", 1},
		{"rhel-9", "rhel", "9.4", FamilyEnterpriseLinux, 9, true, "/etc/chrony.conf", "chronyd.service", "/var/lib/chrony/drift",
			[]string{"dnf", "install", "-y", "chrony"}, nil, "conntrack-tools", "iproute", "selinux", 1},
		{"debian-12", "debian", "12", FamilyDebian, 12, true, "/etc/chrony/chrony.conf", "chrony.service", "/var/lib/chrony/chrony.drift",
			[]string{"apt-get", "install", "-y", "--no-install-recommends", "chrony"}, []string{"DEBIAN_FRONTEND=noninteractive"}, "conntrack", "iproute2", "apparmor", 0},
		{"ubuntu-22.04", "ubuntu", "22.04", FamilyDebian, 22, true, "/etc/chrony/chrony.conf", "chrony.service", "/var/lib/chrony/chrony.drift",
			[]string{"apt-get", "install", "-y", "--no-install-recommends", "chrony"}, []string{"DEBIAN_FRONTEND=noninteractive"}, "conntrack", "iproute2", "apparmor", 0},
		{"fedora-40", "fedora", "40", FamilyEnterpriseLinux, 40, false, "/etc/chrony.conf", "chronyd.service", "/var/lib/chrony/drift",
			[]string{"dnf", "install", "-y", "chrony"}, nil, "conntrack-tools", "iproute", "selinux", 1},
	}
	for _, tc := range cases {
		t.Run(tc.fixture, func(t *testing.T) {
			c, err := Detect(context.Background(), distroHost(t, tc.fixture))
			if err != nil {
				t.Fatalf("Detect: %v", err)
			}
			o := c.OS()
			if o.ID != tc.id || o.VersionID != tc.version || o.Major() != tc.major || c.Family() != tc.family {
				t.Errorf("detected %s %s (major %d), family %s; want %s %s (%d), %s", o.ID, o.VersionID, o.Major(), c.Family(), tc.id, tc.version, tc.major, tc.family)
			}
			if ok, note := c.Tested(); ok != tc.tested || ok != (note == "") {
				t.Errorf("Tested() = %v, %q; want %v", ok, note, tc.tested)
			}
			if c.ChronyConf() != tc.chronyConf || c.ChronyService() != tc.chronyService || c.ChronyDriftFile() != tc.driftFile {
				t.Errorf("chrony %s %s %s", c.ChronyConf(), c.ChronyService(), c.ChronyDriftFile())
			}
			cmd := c.InstallCmd(c.Package("chronyd"))
			if !reflect.DeepEqual(cmd.Argv, tc.install) || !reflect.DeepEqual(cmd.Env, tc.installEnv) {
				t.Errorf("install = %v env %v; want %v env %v", cmd.Argv, cmd.Env, tc.install, tc.installEnv)
			}
			if c.Package("conntrack") != tc.conntrackPkg || c.Package("ip") != tc.ipPkg || c.Package("iptables") != "iptables" {
				t.Errorf("packages: conntrack=%s ip=%s", c.Package("conntrack"), c.Package("ip"))
			}
			if c.MAC() != tc.mac || len(c.SELinuxDisableCmds()) != tc.selinuxExtra {
				t.Errorf("MAC %s, selinux disable cmds %v", c.MAC(), c.SELinuxDisableCmds())
			}
		})
	}
}

func TestDetectRejectsUnknownFamilies(t *testing.T) {
	_, err := Detect(context.Background(), distroHost(t, "opensuse-15"))
	if err == nil || !strings.Contains(err.Error(), "openSUSE Leap 15.5") {
		t.Fatalf("openSUSE: %v, want an error naming it", err)
	}
	f := newFakeHost("node01") // no os-release at all
	if _, err := Detect(context.Background(), f); err == nil || !strings.Contains(err.Error(), "node01") || !strings.Contains(err.Error(), "/etc/os-release") {
		t.Fatalf("missing os-release: %v", err)
	}
	f.put("/etc/os-release", "NAME=x\nthis is not os-release\n")
	if _, err := Detect(context.Background(), f); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("broken os-release: %v", err)
	}
	// /usr/lib/os-release is the documented fallback.
	f = newFakeHost("node01")
	f.put("/usr/lib/os-release", fixture(t, "os-release/rocky-8"))
	if c, err := Detect(context.Background(), f); err != nil || c.OS().ID != "rocky" {
		t.Fatalf("fallback: %v %v", c, err)
	}
}

func TestParseOSReleaseQuoting(t *testing.T) {
	o, err := ParseOSRelease([]byte("ID='weird'\nPRETTY_NAME=\"A \\\"quoted\\\" \\$name\"\n# comment\n\nID_LIKE=\"Rhel  fedora\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != "weird" || o.PrettyName != `A "quoted" $name` || !reflect.DeepEqual(o.IDLike, []string{"rhel", "fedora"}) {
		t.Fatalf("%+v", o)
	}
	if _, err := ParseOSRelease([]byte("NAME=x\n")); err == nil {
		t.Fatal("no ID accepted")
	}
}

// The firewall each family manages, decided from the host's units and binaries.
func TestFirewallPerDistro(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		distro string
		setup  func(f *fakeHost)
		want   string
	}{
		{"centos-7", func(f *fakeHost) { f.unit(firewalldUnit, "active", "enabled") }, "firewalld"},
		{"rhel-9", func(f *fakeHost) {}, ""},
		{"ubuntu-22.04", func(f *fakeHost) { f.bin("ufw") }, "ufw"},
		{"ubuntu-22.04", func(f *fakeHost) {}, ""},
		{"debian-12", func(f *fakeHost) { f.bin("ufw"); f.unit(firewalldUnit, "inactive", "disabled") }, "firewalld"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s, want %q", tc.distro, tc.want), func(t *testing.T) {
			f := distroHost(t, tc.distro)
			tc.setup(f)
			c, err := Detect(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			fw, err := c.Firewall(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if fw != nil {
				got = fw.Name()
			}
			if got != tc.want {
				t.Errorf("%s: firewall %q, want %q", tc.distro, got, tc.want)
			}
		})
	}
}

func TestUfwStatusParsing(t *testing.T) {
	out := fixture(t, "cmd/ufw-status-active.txt")
	var w ufw
	missing, err := w.missingFrom(out, []PortRange{
		{6443, 6443, "tcp"}, {2379, 2379, "tcp"}, {2380, 2380, "tcp"}, {10250, 10250, "tcp"},
		{8472, 8472, "udp"}, {10257, 10257, "tcp"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// 8472/udp is only allowed from 10.0.0.0/8, which is not "from anywhere".
	if got := portsString(missing); got != "8472/udp 10257/tcp" {
		t.Fatalf("missing %q", got)
	}
}

func portsString(ps []PortRange) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}
