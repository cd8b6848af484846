package preflight

import (
	"context"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// chronyDirective is one configuration line: keyword and arguments.
type chronyDirective struct {
	Key  string
	Args []string
}

// parseChrony reads chrony.conf syntax: comments start with ! ; # or %, keywords
// are case-insensitive.
func parseChrony(content string) []chronyDirective {
	var out []chronyDirective
	for _, l := range strings.Split(content, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.ContainsAny(t[:1], "!;#%") {
			continue
		}
		f := strings.Fields(t)
		out = append(out, chronyDirective{Key: strings.ToLower(f[0]), Args: f[1:]})
	}
	return out
}

// chronyConfig reads the main file plus what its confdir/sourcedir directives
// pull in (Debian's default config uses both), so a server configured in a
// drop-in counts.
func chronyConfig(ctx context.Context, h host.Host, main string) (directives []chronyDirective, exists bool, err error) {
	content, exists, err := readOptional(ctx, h, main)
	if err != nil || !exists {
		return nil, exists, err
	}
	directives = parseChrony(content)
	var extra []chronyDirective
	for _, d := range directives {
		suffix := ""
		switch d.Key {
		case "confdir":
			suffix = ".conf"
		case "sourcedir":
			suffix = ".sources"
		default:
			continue
		}
		for _, dir := range d.Args {
			names, err := listDir(ctx, h, dir)
			if err != nil {
				return nil, true, err
			}
			for _, n := range names {
				if !strings.HasSuffix(n, suffix) {
					continue
				}
				c, _, err := readOptional(ctx, h, path.Join(dir, n))
				if err != nil {
					return nil, true, err
				}
				extra = append(extra, parseChrony(c)...)
			}
		}
	}
	return append(directives, extra...), true, nil
}

// hasSource reports whether a server/pool/peer directive names one of names.
func hasSource(ds []chronyDirective, names ...string) bool {
	for _, d := range ds {
		if (d.Key == "server" || d.Key == "pool" || d.Key == "peer") && len(d.Args) > 0 {
			for _, n := range names {
				if n != "" && strings.EqualFold(d.Args[0], n) {
					return true
				}
			}
		}
	}
	return false
}

// allows reports whether allow directives let addr query this server. chrony's
// forms are "allow" / "allow all" (everything), an address, a CIDR, or a
// shortened subnet such as "192.168.1" (= /24).
func allows(ds []chronyDirective, addr netip.Addr) bool {
	for _, d := range ds {
		if d.Key != "allow" {
			continue
		}
		if len(d.Args) == 0 || d.Args[0] == "all" {
			return true
		}
		if p, ok := parseChronySubnet(d.Args[0]); ok && p.Contains(addr) {
			return true
		}
	}
	return false
}

func parseChronySubnet(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	parts := strings.Split(s, ".")
	if len(parts) >= 1 && len(parts) < 4 {
		b := [4]byte{}
		for i, p := range parts {
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || n > 255 {
				return netip.Prefix{}, false
			}
			b[i] = byte(n)
		}
		return netip.PrefixFrom(netip.AddrFrom4(b), 8*len(parts)), true
	}
	return netip.Prefix{}, false
}

// chronySource is one row of `chronyc -n -c sources`.
type chronySource struct {
	Mode, State, Address string
	Reach                int // the reachability register (last 8 polls, bit set = answered)
}

// parseChronySources reads the CSV form: mode,state,address,stratum,poll,reach,...
func parseChronySources(out string) []chronySource {
	var srcs []chronySource
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(l), ",")
		if len(f) < 6 {
			continue
		}
		reach, err := strconv.ParseInt(f[5], 8, 32)
		if err != nil {
			continue
		}
		srcs = append(srcs, chronySource{Mode: f[0], State: f[1], Address: f[2], Reach: int(reach)})
	}
	return srcs
}

// chronyTracking is the part of `chronyc -n -c tracking` used.
type chronyTracking struct {
	RefID, RefName string
	Stratum        int
	Leap           string // "Normal", "Not synchronised", "Insert second", ...
}

// parseChronyTracking reads the CSV form: refid,refname,stratum,...,leap status
// (the last field).
func parseChronyTracking(out string) (chronyTracking, error) {
	f := strings.Split(strings.TrimSpace(out), ",")
	if len(f) < 4 {
		return chronyTracking{}, fmt.Errorf("unexpected `chronyc -c tracking` output %q", strings.TrimSpace(out))
	}
	st, _ := strconv.Atoi(f[2])
	return chronyTracking{RefID: f[0], RefName: f[1], Stratum: st, Leap: f[len(f)-1]}, nil
}

// localRefID is chrony's reference ID when it serves its own clock ("local").
const localRefID = "7F7F0101"
