package preflight

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// runRO runs a query (marked read-only, so a dry run executes it for real) and
// returns its stdout; a non-zero exit is an error naming the host and command.
func runRO(ctx context.Context, h host.Host, argv ...string) (string, error) {
	c := host.Cmd{Argv: argv, ReadOnly: true}
	r, err := h.Run(ctx, c)
	if err != nil {
		return "", err
	}
	if err := r.Err(h.Name(), c); err != nil {
		return string(r.Stdout), err
	}
	return string(r.Stdout), nil
}

// binDirs is where lookPath searches: the PATH of a root login on every target
// distribution. Stat-ing these instead of running `command -v` works the same
// over SSH, locally and in a dry run, and needs no shell.
var binDirs = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// lookPath returns the path of an executable binary, "" when there is none.
func lookPath(ctx context.Context, h host.Host, name string) (string, error) {
	for _, d := range binDirs {
		p := path.Join(d, name)
		fi, err := h.Stat(ctx, p)
		if host.IsNotExist(err) {
			continue
		}
		if err != nil {
			return "", err
		}
		if !fi.IsDir() && fi.Mode.Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", nil
}

// readOptional reads a file; a missing one is empty and exists=false.
func readOptional(ctx context.Context, h host.Host, p string) (data string, exists bool, err error) {
	b, err := h.ReadFile(ctx, p)
	if host.IsNotExist(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return string(b), true, nil
}

// confValue returns VALUE of a KEY=VALUE line (shell-style config such as
// /etc/selinux/config), unquoted; the last assignment wins, as in a shell.
func confValue(content, key string) string {
	val := ""
	for _, l := range strings.Split(content, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if ok && strings.TrimSpace(k) == key {
			val = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return val
}

// backup copies p to p+suffix before a fix rewrites it, with the same mode.
func backup(ctx context.Context, h host.Host, p, suffix string, data []byte) (string, error) {
	fi, err := h.Stat(ctx, p)
	if err != nil {
		return "", err
	}
	// Two fixes within one second must not overwrite the first, pristine copy.
	dst := p + suffix
	for n := 2; ; n++ {
		if _, err := h.Stat(ctx, dst); host.IsNotExist(err) {
			break
		} else if err != nil {
			return "", err
		}
		dst = fmt.Sprintf("%s%s-%d", p, suffix, n)
	}
	if err := h.WriteFile(ctx, dst, data, host.WriteOptions{Mode: fi.Mode.Perm()}); err != nil {
		return "", fmt.Errorf("backing up %s: %w", p, err)
	}
	return dst, nil
}

// errorf is fmt.Errorf for messages built from parts.
func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }
