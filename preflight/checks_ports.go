package preflight

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// PortsCheck: the TCP ports the host's components will listen on must be free,
// or the component fails at start with "address already in use" long after
// preflight. Not fixable: what holds the port is the operator's business (or an
// earlier installation: `kubeforge reset`).
type PortsCheck struct{ env *Env }

func (PortsCheck) Name() string { return "Ports" }

// listeners maps listening TCP ports to a description of their owner ("" when
// unknown). `ss` names the process; /proc/net/tcp{,6} is the fallback where ss is
// missing.
func listeners(ctx context.Context, h host.Host) (map[int]string, error) {
	out := map[int]string{}
	if res, err := runRO(ctx, h, "ss", "-ltnpH"); err == nil {
		for _, l := range strings.Split(res, "\n") {
			f := strings.Fields(l)
			if len(f) < 4 {
				continue
			}
			local := f[3]
			i := strings.LastIndexByte(local, ':')
			port, err := strconv.Atoi(local[i+1:])
			if i < 0 || err != nil {
				continue
			}
			owner := ""
			if len(f) >= 6 {
				owner = ssProcess(f[5])
			}
			if out[port] == "" {
				out[port] = owner
			}
		}
		return out, nil
	}
	for _, p := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, _, err := readOptional(ctx, h, p)
		if err != nil {
			return nil, err
		}
		for i, l := range strings.Split(data, "\n") {
			f := strings.Fields(l)
			if i == 0 || len(f) < 4 || f[3] != "0A" { // 0A is TCP_LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			if port, err := strconv.ParseInt(hexPort, 16, 32); ok && err == nil {
				out[int(port)] = out[int(port)]
			}
		}
	}
	return out, nil
}

// ssProcess turns users:(("sshd",pid=12,fd=3)) into `sshd (pid 12)`.
func ssProcess(s string) string {
	s = strings.TrimPrefix(s, "users:((")
	name, rest, ok := strings.Cut(s, ",")
	if !ok {
		return ""
	}
	name = strings.Trim(name, `"`)
	if pid, _, ok := strings.Cut(strings.TrimPrefix(rest, "pid="), ","); ok {
		return fmt.Sprintf("%s (pid %s)", name, pid)
	}
	return name
}

func (c PortsCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	busy, err := listeners(ctx, h)
	if err != nil {
		return nil, []error{err}
	}
	for _, rp := range NeededPorts(c.env.Cluster, c.env.Node) {
		if !rp.Listen || rp.Port.Proto != "tcp" {
			continue
		}
		for p := rp.Port.From; p <= rp.Port.To; p++ {
			owner, used := busy[p]
			if !used {
				continue
			}
			by := ""
			if owner != "" {
				by = " by " + owner
			}
			errs = append(errs, errorf("port %d/tcp (%s) is in use%s: stop what holds it, or run `kubeforge reset` if it is a previous installation", p, rp.Who, by))
		}
	}
	return nil, errs
}
