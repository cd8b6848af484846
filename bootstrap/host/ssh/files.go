package ssh

import (
	"context"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/bootstrap/host"
	"github.com/kubeforge/kubeforge/bootstrap/host/internal/hostutil"
)

// File operations are small POSIX sh scripts run with the path as a positional
// argument ($1), never spliced into the script text, so no path can inject shell.
// Only coreutils are used, which every target distro (CentOS 7 included) has, and no
// SFTP subsystem is needed (it is often disabled, and is not usable through sudo).

// exitMissing is what the scripts exit with when the path does not exist; it keeps
// "missing" apart from every other failure without parsing localised messages.
const exitMissing = 100

const readScript = `[ -e "$1" ] || exit 100; exec cat -- "$1"`

const statScript = `[ -e "$1" ] || exit 100; exec stat -L -c '%s %f %Y %u %g' -- "$1"`

// The temp file is made by mktemp (0600) in the target's directory, so the rename is
// atomic and content is never readable by others before chmod; it is synced before
// the rename so a crash cannot leave an empty file under the real name. On any
// failure the trap removes the temp file and the old file is untouched.
const writeScript = `set -e
d=$(dirname -- "$1")
[ -d "$d" ] || mkdir -p -m 0755 -- "$d"
t=$(mktemp "$d/.kubeforge.XXXXXXXX")
trap 'rm -f -- "$t"' EXIT
cat > "$t"
[ -z "$3" ] || chown -- "$3" "$t"
chmod -- "$2" "$t"
sync -- "$t" 2>/dev/null || sync
mv -f -- "$t" "$1"
trap - EXIT`

const mkdirScript = `set -e; mkdir -p -- "$1"; chmod -- "$2" "$1"`

func (h *Host) script(ctx context.Context, script string, stdin []byte, secret bool, args ...string) (host.Result, error) {
	argv := append([]string{"sh", "-c", script, "sh"}, args...)
	return h.Run(ctx, host.Cmd{Argv: argv, Stdin: stdin, Secret: secret})
}

// fail builds the error for a failed file operation from the script's stderr.
func (h *Host) fail(op, path string, r host.Result) error {
	msg := strings.TrimSpace(string(r.Stderr))
	if msg == "" {
		msg = "exit status " + strconv.Itoa(r.ExitCode)
	}
	return fmt.Errorf("%s: %s %s: %s", h.name, op, path, msg)
}

// ReadFile reads path with cat.
func (h *Host) ReadFile(ctx context.Context, path string) ([]byte, error) {
	if err := hostutil.CheckPath(path); err != nil {
		return nil, fmt.Errorf("%s: read: %w", h.name, err)
	}
	r, err := h.script(ctx, readScript, nil, false, path)
	if err != nil {
		return nil, err
	}
	switch r.ExitCode {
	case 0:
		return r.Stdout, nil
	case exitMissing:
		return nil, fmt.Errorf("%s: read %s: %w", h.name, path, fs.ErrNotExist)
	}
	return nil, h.fail("read", path, r)
}

// WriteFile streams data over the session's stdin into a temp file next to path and
// renames it into place.
func (h *Host) WriteFile(ctx context.Context, path string, data []byte, opts host.WriteOptions) error {
	if err := hostutil.CheckPath(path); err != nil {
		return fmt.Errorf("%s: write: %w", h.name, err)
	}
	owner, err := hostutil.OwnerSpec(opts.Owner, opts.Group)
	if err != nil {
		return fmt.Errorf("%s: write %s: %w", h.name, path, err)
	}
	mode := fmt.Sprintf("%04o", hostutil.ChmodBits(hostutil.FileMode(opts.Mode)))
	if data == nil {
		data = []byte{} // nil would mean "no stdin"; an empty file is meant
	}
	r, err := h.script(ctx, writeScript, data, opts.Secret, path, mode, owner)
	if err != nil {
		return err
	}
	if r.ExitCode != 0 {
		return h.fail("write", path, r)
	}
	return nil
}

// Stat runs stat(1), following symlinks as os.Stat does.
func (h *Host) Stat(ctx context.Context, path string) (host.FileInfo, error) {
	if err := hostutil.CheckPath(path); err != nil {
		return host.FileInfo{}, fmt.Errorf("%s: stat: %w", h.name, err)
	}
	r, err := h.script(ctx, statScript, nil, false, path)
	if err != nil {
		return host.FileInfo{}, err
	}
	switch r.ExitCode {
	case 0:
	case exitMissing:
		return host.FileInfo{}, fmt.Errorf("%s: stat %s: %w", h.name, path, fs.ErrNotExist)
	default:
		return host.FileInfo{}, h.fail("stat", path, r)
	}
	fi, err := parseStat(path, string(r.Stdout))
	if err != nil {
		return fi, fmt.Errorf("%s: stat %s: %w", h.name, path, err)
	}
	return fi, nil
}

// parseStat parses "size rawmode-hex mtime uid gid".
func parseStat(path, out string) (host.FileInfo, error) {
	f := strings.Fields(out)
	if len(f) != 5 {
		return host.FileInfo{}, fmt.Errorf("unexpected stat output %q", out)
	}
	size, err1 := strconv.ParseInt(f[0], 10, 64)
	raw, err2 := strconv.ParseUint(f[1], 16, 32)
	mtime, err3 := strconv.ParseInt(f[2], 10, 64)
	uid, err4 := strconv.Atoi(f[3])
	gid, err5 := strconv.Atoi(f[4])
	for _, err := range []error{err1, err2, err3, err4, err5} {
		if err != nil {
			return host.FileInfo{}, fmt.Errorf("unexpected stat output %q: %w", out, err)
		}
	}
	return host.FileInfo{
		Path:    path,
		Size:    size,
		Mode:    hostutil.FileModeFromUnix(uint32(raw)),
		ModTime: time.Unix(mtime, 0),
		UID:     uid,
		GID:     gid,
	}, nil
}

// Remove deletes path recursively with rm -rf (missing is fine).
func (h *Host) Remove(ctx context.Context, path string) error {
	if err := hostutil.CheckPath(path); err != nil {
		return fmt.Errorf("%s: remove: %w", h.name, err)
	}
	r, err := h.Run(ctx, host.Cmd{Argv: []string{"rm", "-rf", "--", path}})
	if err != nil {
		return err
	}
	if r.ExitCode != 0 {
		return h.fail("remove", path, r)
	}
	return nil
}

// MkdirAll creates path and its parents; the leaf gets exactly mode, as on the
// local host.
func (h *Host) MkdirAll(ctx context.Context, path string, mode fs.FileMode) error {
	if err := hostutil.CheckPath(path); err != nil {
		return fmt.Errorf("%s: mkdir: %w", h.name, err)
	}
	if mode == 0 {
		mode = 0o755
	}
	r, err := h.script(ctx, mkdirScript, nil, false, path, fmt.Sprintf("%04o", hostutil.ChmodBits(mode)))
	if err != nil {
		return err
	}
	if r.ExitCode != 0 {
		return h.fail("mkdir", path, r)
	}
	return nil
}
