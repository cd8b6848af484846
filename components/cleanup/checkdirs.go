package cleanup

import (
	"context"
	"fmt"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/components/etcd"
)

// CheckDirs is reset's check before it changes anything: every directory it
// would remove that the operator named — --cert-dir, --kubeconfig-dir,
// spec.etcd.dataDir and the data-dir in the etcd member's config file on the
// host — must not be a system directory or a parent of one, as given and with
// symlinks resolved on the host. The error names the flag or field.
func CheckDirs(ctx context.Context, h host.Host, cfg *config.Cluster, certDir, kubeconfigDir string) error {
	type named struct{ what, dir string }
	dirs := []named{{"--cert-dir", certDir}, {"--kubeconfig-dir", kubeconfigDir}}
	if cfg != nil && cfg.Spec.Etcd.DataDir != "" {
		dirs = append(dirs, named{"spec.etcd.dataDir", cfg.Spec.Etcd.DataDir})
	}
	if d, err := etcd.MemberDataDir(ctx, h); err != nil {
		return err
	} else if d != "" {
		dirs = append(dirs, named{"data-dir in " + etcd.ConfigPath, d})
	}
	for _, d := range dirs {
		if err := config.CheckOwnDir(d.what, d.dir); err != nil {
			return fmt.Errorf("reset refused, nothing removed: %w", err)
		}
		real := resolve(ctx, h, d.dir)
		if real == "" || real == d.dir {
			continue
		}
		if err := config.CheckOwnDir(d.what, real); err != nil {
			return fmt.Errorf("reset refused, nothing removed: %s %s resolves to %s: %w", d.what, d.dir, real, err)
		}
	}
	return nil
}

// resolve is dir with symlinks resolved on h ("" when that cannot be told).
func resolve(ctx context.Context, h host.Host, dir string) string {
	r, err := h.Run(ctx, host.Cmd{Argv: []string{"readlink", "-m", "--", dir}, ReadOnly: true})
	if err != nil || !r.OK() {
		return ""
	}
	return strings.TrimSpace(string(r.Stdout))
}
