package cleanup

import (
	"context"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/owndirs"
	"github.com/kubeforge/kubeforge/components/containerd/fakehost"
)

// TestRemoveFilesOnlyWhatKubeforgeWrote: a directory kubeforge created (it
// carries the marker) goes whole; one it did not create loses only the files
// kubeforge writes, and stays while others' files are in it; etcd's data dir
// loses etcd's data only.
func TestRemoveFilesOnlyWhatKubeforgeWrote(t *testing.T) {
	h := fakehost.New("node02")
	h.SetFile("/proc/self/mountinfo", "", 0o444)
	// Created by kubeforge.
	h.SetFile("/etc/kubernetes/"+owndirs.Marker, "x", 0o600)
	h.SetFile("/etc/kubernetes/admin.conf", "a", 0o600)
	h.SetFile("/etc/kubernetes/something-new.conf", "n", 0o600)
	// The operator's: a cert dir with kubeforge's files and the operator's own.
	h.SetFile("/srv/tls/ca.crt", "ca", 0o644)
	h.SetFile("/srv/tls/ca.key", "key", 0o600)
	h.SetFile("/srv/tls/etcd/server.crt", "s", 0o644)
	h.SetFile("/srv/tls/kubeforge-certificate-key", "k", 0o600)
	h.SetFile("/srv/tls/operator.pem", "mine", 0o644)
	h.Commands["find /srv/tls/etcd -mindepth 1 -maxdepth 1"] = host.Result{}
	h.Commands["find /srv/tls -mindepth 1 -maxdepth 1"] = host.Result{Stdout: []byte("/srv/tls/operator.pem\n")}
	// etcd's data dir, no member config left: etcd's data goes, the rest stays.
	h.SetFile("/data/etcd/member/snap/db", "data", 0o600)
	h.SetFile("/data/etcd/README", "mine", 0o644)
	h.Commands["find /data/etcd -mindepth 1 -maxdepth 1"] = host.Result{Stdout: []byte("/data/etcd/README\n")}
	cfg := config.Default()
	cfg.Spec.Etcd.DataDir = "/data/etcd"

	var logs []string
	e := &Env{Host: h, Cluster: cfg, NodeName: "node02", CertDir: "/srv/tls", KubeconfigDir: "/etc/kubernetes",
		Logf: func(f string, a ...any) { logs = append(logs, f) }}
	e.defaults()
	done, err := removeFiles(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"/etc/kubernetes/admin.conf", "/etc/kubernetes/something-new.conf", "/srv/tls/ca.crt", "/srv/tls/ca.key",
		"/srv/tls/etcd/server.crt", "/srv/tls/kubeforge-certificate-key", "/data/etcd/member/snap/db"} {
		if _, ok := h.Files[gone]; ok {
			t.Errorf("%s left", gone)
		}
	}
	if h.Dirs["/etc/kubernetes"] {
		t.Error("the directory kubeforge created is still there")
	}
	for _, kept := range []string{"/srv/tls/operator.pem", "/data/etcd/README"} {
		if _, ok := h.Files[kept]; !ok {
			t.Errorf("%s (not kubeforge's) removed", kept)
		}
	}
	if !h.Dirs["/srv/tls"] || !h.Dirs["/data/etcd"] {
		t.Error("a directory with others' files was removed")
	}
	t.Logf("done: %s", strings.Join(done, "; "))
}

// TestCheckDirs: system directories, given or reached through a symlink or
// named by the etcd member's config file, refuse the reset and name the flag
// or field; kubeforge's own directories pass.
func TestCheckDirs(t *testing.T) {
	ctx := context.Background()
	h := fakehost.New("node02")
	h.Commands["readlink -m -- /etc/kubernetes/pki"] = host.Result{Stdout: []byte("/etc/kubernetes/pki\n")}
	if err := CheckDirs(ctx, h, config.Default(), "/etc/kubernetes/pki", "/etc/kubernetes"); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
	for _, tc := range []struct {
		what         string
		cert, kc     string
		cfg          func(*config.Cluster)
		setup        func(*fakehost.Host)
		want1, want2 string
	}{
		{what: "cert dir /etc", cert: "/etc", kc: "/etc/kubernetes", want1: "--cert-dir", want2: "/etc is a system directory"},
		{what: "kubeconfig dir /var", cert: "/x/pki", kc: "/var", want1: "--kubeconfig-dir", want2: "/var is a system directory"},
		{what: "data dir /var/lib", cert: "/x/pki", kc: "/x", cfg: func(c *config.Cluster) { c.Spec.Etcd.DataDir = "/var/lib" }, want1: "spec.etcd.dataDir", want2: "/var/lib"},
		{what: "member config's data dir", cert: "/x/pki", kc: "/x", setup: func(h *fakehost.Host) { h.SetFile("/etc/etcd/etcd.conf.yml", "data-dir: /root\n", 0o600) },
			want1: "data-dir in /etc/etcd/etcd.conf.yml", want2: "/root is a system directory"},
		{what: "symlink to /etc", cert: "/srv/link", kc: "/x", setup: func(h *fakehost.Host) {
			h.Commands["readlink -m -- /srv/link"] = host.Result{Stdout: []byte("/etc\n")}
		}, want1: "--cert-dir /srv/link resolves to /etc", want2: "system directory"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			h := fakehost.New("node02")
			if tc.setup != nil {
				tc.setup(h)
			}
			cfg := config.Default()
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			err := CheckDirs(ctx, h, cfg, tc.cert, tc.kc)
			if err == nil || !strings.Contains(err.Error(), tc.want1) || !strings.Contains(err.Error(), tc.want2) || !strings.Contains(err.Error(), "nothing") {
				t.Errorf("%s: %v, want an error with %q and %q", tc.what, err, tc.want1, tc.want2)
			}
			if len(h.Changes()) != 0 {
				t.Errorf("%s: the check changed the host: %v", tc.what, h.Changes())
			}
		})
	}
}
