// Package owndirs records which directories kubeforge created, so that
// `kubeforge reset` removes a directory whole only when kubeforge made it, and
// otherwise only the files kubeforge knows it wrote there.
//
// Wrap returns a Host that, the first time something is written below one of
// the given directories (or the directory itself is created) and the directory
// does not exist yet, creates it and puts a marker file into it. A directory
// that already existed (the operator's, another package's) is never marked.
package owndirs

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// Marker is the file in a directory kubeforge created.
const Marker = ".kubeforge-created"

const markerText = "This directory was created by kubeforge; `kubeforge reset` removes it with everything in it.\n"

// Host marks the directories it manages as it creates them.
type Host struct {
	host.Host
	dirs []string

	mu   sync.Mutex
	seen map[string]bool // directories known to exist (marked or not)
}

// Wrap returns h marking dirs (absolute paths; empty ones are ignored).
func Wrap(h host.Host, dirs ...string) *Host {
	w := &Host{Host: h, seen: map[string]bool{}}
	for _, d := range dirs {
		if d != "" && path.IsAbs(d) {
			w.dirs = append(w.dirs, path.Clean(d))
		}
	}
	// Outer directories first: /etc/kubernetes before /etc/kubernetes/pki.
	sort.Slice(w.dirs, func(i, j int) bool { return len(w.dirs[i]) < len(w.dirs[j]) })
	return w
}

// Unwrap is the wrapped Host.
func (w *Host) Unwrap() host.Host { return w.Host }

// ensure creates and marks every managed directory that p is in (or is, when
// self) and that does not exist yet.
func (w *Host) ensure(ctx context.Context, p string, self bool) error {
	p = path.Clean(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range w.dirs {
		if w.seen[d] || !(strings.HasPrefix(p, d+"/") || (self && p == d)) {
			continue
		}
		_, err := w.Host.Stat(ctx, d)
		switch {
		case err == nil:
			w.seen[d] = true
			continue
		case !host.IsNotExist(err):
			return err
		}
		if err := w.Host.MkdirAll(ctx, d, 0o755); err != nil {
			return err
		}
		if err := w.Host.WriteFile(ctx, path.Join(d, Marker), []byte(markerText), host.WriteOptions{Mode: 0o600}); err != nil {
			return fmt.Errorf("%s: marking %s as kubeforge's: %w", w.Name(), d, err)
		}
		w.seen[d] = true
	}
	return nil
}

// WriteFile implements host.Host.
func (w *Host) WriteFile(ctx context.Context, p string, data []byte, opts host.WriteOptions) error {
	if err := w.ensure(ctx, p, false); err != nil {
		return err
	}
	return w.Host.WriteFile(ctx, p, data, opts)
}

// MkdirAll implements host.Host.
func (w *Host) MkdirAll(ctx context.Context, p string, mode fs.FileMode) error {
	if err := w.ensure(ctx, p, true); err != nil {
		return err
	}
	return w.Host.MkdirAll(ctx, p, mode)
}

// Created reports whether dir carries kubeforge's marker.
func Created(ctx context.Context, h host.Host, dir string) (bool, error) {
	_, err := h.Stat(ctx, path.Join(dir, Marker))
	switch {
	case err == nil:
		return true, nil
	case host.IsNotExist(err):
		return false, nil
	}
	return false, err
}

// Unwrap returns the innermost Host below any wrappers that have an Unwrap
// method (for code that needs the concrete local host).
func Unwrap(h host.Host) host.Host {
	for {
		u, ok := h.(interface{ Unwrap() host.Host })
		if !ok {
			return h
		}
		h = u.Unwrap()
	}
}
