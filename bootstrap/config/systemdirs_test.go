package config

import (
	"strings"
	"testing"
)

func TestCheckOwnDir(t *testing.T) {
	for _, d := range []string{"/etc/kubernetes", "/etc/kubernetes/pki", "/var/lib/etcd", "/data/etcd", "/root/kf/pki", "/srv/kube/pki"} {
		if err := CheckOwnDir("--cert-dir", d); err != nil {
			t.Errorf("%s refused: %v", d, err)
		}
	}
	for d, want := range map[string]string{
		"/":              "root directory",
		"/etc":           "/etc is a system directory",
		"/etc/":          "/etc is a system directory",
		"/var/../etc":    "/etc is a system directory",
		"/var":           "/var is a system directory",
		"/var/lib":       "/var/lib is a system directory",
		"/usr/local":     "/usr/local is a system directory",
		"/root":          "/root is a system directory",
		"/home":          "/home is a system directory",
		"/boot":          "/boot is a system directory",
		"/etc/systemd":   "/etc/systemd is a system directory",
		"/usr/local/bin": "/usr/local/bin is a system directory",
		"relative/dir":   "absolute path",
	} {
		err := CheckOwnDir("--kubeconfig-dir", d)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--kubeconfig-dir") {
			t.Errorf("%s: %v, want an error naming --kubeconfig-dir saying %q", d, err, want)
		}
	}
}
