package config

import (
	"fmt"
	"path"
	"strings"
)

// SystemDirs are directories of the operating system. kubeforge writes below
// some of them but never takes one over as its own: a directory the operator
// names for kubeforge's files (--cert-dir, --kubeconfig-dir, spec.etcd.dataDir)
// is one that `kubeforge reset` may later remove, so it must not be one of
// these or a parent of one.
var SystemDirs = []string{
	"/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/lost+found",
	"/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp",
	"/usr", "/usr/bin", "/usr/include", "/usr/lib", "/usr/lib64", "/usr/libexec", "/usr/local",
	"/usr/local/bin", "/usr/local/lib", "/usr/local/sbin", "/usr/local/share", "/usr/sbin", "/usr/share", "/usr/src",
	"/var", "/var/cache", "/var/lib", "/var/local", "/var/lock", "/var/log", "/var/mail", "/var/opt",
	"/var/run", "/var/spool", "/var/tmp",
	"/etc/default", "/etc/pki", "/etc/ssh", "/etc/ssl", "/etc/sysconfig", "/etc/systemd", "/etc/systemd/system",
	"/var/lib/systemd", "/run/systemd",
	"/opt/cni", "/opt/cni/bin", "/opt/kubeforge",
}

// CheckOwnDir refuses dir as a directory kubeforge keeps its own files in (and
// may remove on reset) when it is the root, a system directory or a parent of
// one. what names the flag or field for the message.
func CheckOwnDir(what, dir string) error {
	if !path.IsAbs(dir) {
		return fmt.Errorf("%s %q: must be an absolute path", what, dir)
	}
	d := path.Clean(dir)
	if d == "/" {
		return fmt.Errorf("%s %q: must not be the root directory", what, dir)
	}
	for _, s := range SystemDirs {
		switch {
		case d == s:
			return fmt.Errorf("%s %q: %s is a system directory; kubeforge needs a directory of its own there (reset removes it), e.g. %s", what, dir, d, suggest(what))
		case strings.HasPrefix(s, d+"/"):
			return fmt.Errorf("%s %q: %s holds the system directory %s; kubeforge needs a directory of its own there (reset removes it), e.g. %s", what, dir, d, s, suggest(what))
		}
	}
	return nil
}

func suggest(what string) string {
	switch {
	case strings.Contains(what, "cert"):
		return "/etc/kubernetes/pki"
	case strings.Contains(what, "kubeconfig"):
		return "/etc/kubernetes"
	case strings.Contains(strings.ToLower(what), "datadir"), strings.Contains(what, "data-dir"):
		return DefaultEtcdDataDir
	}
	return "a new directory below /var/lib or /etc"
}
