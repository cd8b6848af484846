package etcd

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/config"
	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// DataDirContent is what etcd keeps in its data dir: everything is below
// <data-dir>/member.
var DataDirContent = []string{"member"}

// RemoveDataDir deletes a member's data: what etcd keeps in dir, and dir itself
// when nothing else is left in it. A data dir that is a system directory is
// refused before anything is removed (spec.etcd.dataDir is validated, but the
// member's config file on the host may be older than that check). It reports
// what it removed.
func RemoveDataDir(ctx context.Context, h host.Host, dir string) ([]string, error) {
	if err := config.CheckOwnDir("etcd data dir", dir); err != nil {
		return nil, fmt.Errorf("%s: %w; nothing removed", h.Name(), err)
	}
	dir = path.Clean(dir)
	fi, err := h.Stat(ctx, dir)
	if host.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: etcd data dir %s is not a directory; left alone", h.Name(), dir)
	}
	var done []string
	for _, c := range DataDirContent {
		p := path.Join(dir, c)
		if _, err := h.Stat(ctx, p); host.IsNotExist(err) {
			continue
		}
		if err := h.Remove(ctx, p); err != nil {
			return done, err
		}
		done = append(done, "removed "+p)
	}
	c := host.Cmd{Argv: []string{"find", dir, "-mindepth", "1", "-maxdepth", "1"}, ReadOnly: true}
	r, err := h.Run(ctx, c)
	if err != nil {
		return done, err
	}
	if err := r.Err(h.Name(), c); err != nil {
		return done, err
	}
	if left := strings.Fields(string(r.Stdout)); len(left) > 0 {
		return append(done, fmt.Sprintf("kept %s: it holds %d entries that are not etcd's (%s)", dir, len(left), left[0])), nil
	}
	if err := h.Remove(ctx, dir); err != nil {
		return done, err
	}
	return append(done, "removed "+dir), nil
}

// MemberDataDir is the data-dir of the member's config file on h ("" when
// there is no member config or it names none).
func MemberDataDir(ctx context.Context, h host.Host) (string, error) {
	cur, err := h.ReadFile(ctx, ConfigPath)
	if host.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	vals, err := configValues(cur)
	if err != nil {
		return "", nil // not ours to judge here; the etcd phase reports it
	}
	d, _ := vals["data-dir"].(string)
	return d, nil
}
