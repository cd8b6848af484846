package snapshot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"github.com/kubeforge/kubeforge/components/etcd"
)

// Entry is one of kubeforge's snapshots in a directory.
type Entry struct {
	Path    string
	Sidecar Sidecar
}

// List returns kubeforge's snapshots in dir, newest first: files named as Save
// names them, regular, with a sidecar of kind SidecarKind that names the file.
// Everything else in dir is ignored. A missing dir holds no snapshots.
func List(dir string) ([]Entry, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range ents {
		m := nameRE.FindStringSubmatch(de.Name())
		if m == nil || !de.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, de.Name())
		sc, err := ReadSidecar(p)
		if err != nil || sc.File != de.Name() || sc.Cluster != m[1] {
			continue
		}
		out = append(out, Entry{Path: p, Sidecar: *sc})
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Sidecar, out[j].Sidecar
		if !a.Time.Equal(b.Time) {
			return a.Time.After(b.Time)
		}
		return a.Revision > b.Revision
	})
	return out, nil
}

// Prune removes all but the newest keep snapshots in dir (and their sidecars),
// and returns the removed paths. Only what List returns is ever removed.
func Prune(dir string, keep int) ([]string, error) {
	if keep < 1 {
		return nil, fmt.Errorf("--keep %d: keep at least 1 snapshot", keep)
	}
	ents, err := List(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for i := keep; i < len(ents); i++ {
		p := ents[i].Path
		// The database first: a sidecar without its file is not a snapshot, a
		// file without its sidecar would no longer be ours to remove.
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		if err := os.Remove(p + SidecarSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		removed = append(removed, p)
	}
	if len(removed) > 0 {
		if err := syncDir(dir); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// WriteTable prints the entries as a table.
func WriteTable(w io.Writer, ents []Entry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tTIME\tREVISION\tSIZE\tMEMBERS\tKUBERNETES\tETCD")
	for _, e := range ents {
		s := e.Sidecar
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", e.Path, s.Time.UTC().Format("2006-01-02T15:04:05Z"),
			s.Revision, etcd.HumanBytes(s.Size), len(s.Members), s.KubernetesVersion, s.EtcdVersion)
	}
	return tw.Flush()
}
