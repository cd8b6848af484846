// Package hostutil holds the checks and conversions that the local, SSH and dry-run
// hosts must agree on, so a path or owner refused by one is refused by all of them
// with the same words.
package hostutil

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
)

// CheckPath refuses paths that no phase has a reason to touch: relative paths (whose
// meaning depends on a remote shell's working directory), paths with "..", and "/".
func CheckPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is not absolute", p)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("path %q contains a NUL byte", p)
	case path.Clean(p) == "/":
		return fmt.Errorf("refusing to act on the root directory")
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("path %q contains \"..\"", p)
		}
	}
	return nil
}

// accountRe is deliberately narrower than what useradd allows: names reach a remote
// chown through a shell argument, and anything odd is more likely a config typo
// than a real account.
var accountRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$`)

// OwnerSpec turns owner and group into chown's OWNER[:GROUP] / :GROUP form; "" when
// both are empty (leave ownership to the writing user).
func OwnerSpec(owner, group string) (string, error) {
	for _, v := range []struct{ field, val string }{{"owner", owner}, {"group", group}} {
		if v.val != "" && (len(v.val) > 64 || !accountRe.MatchString(v.val)) {
			return "", fmt.Errorf("invalid %s %q", v.field, v.val)
		}
	}
	switch {
	case owner == "" && group == "":
		return "", nil
	case group == "":
		return owner, nil
	default:
		return owner + ":" + group, nil
	}
}

// Unix mode bits as stat(2) and chmod(1) know them.
const (
	sIFMT   = 0o170000
	sIFSOCK = 0o140000
	sIFLNK  = 0o120000
	sIFREG  = 0o100000
	sIFBLK  = 0o060000
	sIFDIR  = 0o040000
	sIFCHR  = 0o020000
	sIFIFO  = 0o010000
	sISUID  = 0o4000
	sISGID  = 0o2000
	sISVTX  = 0o1000
)

// FileModeFromUnix converts a raw st_mode (as `stat -c %f` prints it, in hex) into
// Go's fs.FileMode, so remote and local Stat results compare equal.
func FileModeFromUnix(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & sIFMT {
	case sIFDIR:
		mode |= fs.ModeDir
	case sIFLNK:
		mode |= fs.ModeSymlink
	case sIFSOCK:
		mode |= fs.ModeSocket
	case sIFIFO:
		mode |= fs.ModeNamedPipe
	case sIFBLK:
		mode |= fs.ModeDevice
	case sIFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	}
	if m&sISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&sISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&sISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// ChmodBits converts the permission part of an fs.FileMode (including setuid, setgid
// and sticky, which Go keeps outside Perm) to the octal number chmod(2) takes. The
// Unix spelling of those bits (0o2750) is honoured too, since that is how people
// write modes and Go would otherwise drop the bit silently.
func ChmodBits(mode fs.FileMode) uint32 {
	m := uint32(mode) & 0o7777
	if mode&fs.ModeSetuid != 0 {
		m |= sISUID
	}
	if mode&fs.ModeSetgid != 0 {
		m |= sISGID
	}
	if mode&fs.ModeSticky != 0 {
		m |= sISVTX
	}
	return m
}

// FileMode applies the WriteOptions default: 0 means 0644.
func FileMode(mode fs.FileMode) fs.FileMode {
	if mode == 0 {
		return 0o644
	}
	return mode
}

var unitRe = regexp.MustCompile(`^[A-Za-z0-9:_.@\\-]+\.(service|socket|target|timer|mount|automount|path|slice|scope|swap|device)$`)
var dropInRe = regexp.MustCompile(`^[A-Za-z0-9:_.@\\-]+\.conf$`)

// CheckUnitName accepts "name.service" and, when dropIn is true, also a drop-in
// "name.service.d/file.conf". Everything else is refused before it can turn into a
// path outside the unit directory.
func CheckUnitName(name string, dropIn bool) error {
	if unit, file, ok := strings.Cut(name, ".d/"); ok {
		if !dropIn {
			return fmt.Errorf("unit %q: a drop-in path is not a unit name", name)
		}
		if !unitRe.MatchString(unit) || !dropInRe.MatchString(file) {
			return fmt.Errorf("unit drop-in %q: want NAME.TYPE.d/FILE.conf", name)
		}
		return nil
	}
	if !unitRe.MatchString(name) {
		return fmt.Errorf("unit name %q: want NAME.TYPE (e.g. etcd.service)", name)
	}
	return nil
}

// SplitLines splits command output into lines without the trailing empty one.
func SplitLines(b []byte) []string {
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
