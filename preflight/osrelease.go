package preflight

import (
	"fmt"
	"strconv"
	"strings"
)

// OSRelease is the part of os-release(5) kubeforge uses.
type OSRelease struct {
	ID         string   // "centos", "rhel", "rocky", "almalinux", "debian", "ubuntu"
	IDLike     []string // ID_LIKE, e.g. ["rhel", "centos", "fedora"]
	VersionID  string   // "7", "8.9", "9.4", "12", "22.04"
	PrettyName string
}

// Major is the major version ("22" for "22.04"); 0 when VERSION_ID is missing or
// not numeric (Debian testing has none).
func (o OSRelease) Major() int {
	s, _, _ := strings.Cut(o.VersionID, ".")
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}

// String is the name for messages.
func (o OSRelease) String() string {
	if o.PrettyName != "" {
		return o.PrettyName
	}
	return strings.TrimSpace(o.ID + " " + o.VersionID)
}

// is reports whether the distribution is id or derives from it.
func (o OSRelease) is(ids ...string) bool {
	for _, id := range ids {
		if o.ID == id {
			return true
		}
		for _, l := range o.IDLike {
			if l == id {
				return true
			}
		}
	}
	return false
}

// ParseOSRelease parses os-release(5) content: KEY=value lines, values optionally
// in double or single quotes with backslash escapes inside double quotes.
func ParseOSRelease(data []byte) (OSRelease, error) {
	vals := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return OSRelease{}, fmt.Errorf("line %d: %q is not KEY=value", i+1, line)
		}
		vals[k] = unquoteOSRelease(v)
	}
	o := OSRelease{
		ID:         strings.ToLower(vals["ID"]),
		IDLike:     strings.Fields(strings.ToLower(vals["ID_LIKE"])),
		VersionID:  vals["VERSION_ID"],
		PrettyName: vals["PRETTY_NAME"],
	}
	if o.ID == "" {
		return o, fmt.Errorf("no ID field")
	}
	return o, nil
}

func unquoteOSRelease(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return v[1 : len(v)-1]
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			if v[i] == '\\' && i+1 < len(v) {
				i++
			}
			b.WriteByte(v[i])
		}
		return b.String()
	}
	return v
}
