package preflight

import (
	"context"
	"fmt"
	"net"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// HostnameCheck: the hostname becomes the node name the kubelet registers and the
// name in its serving certificate, so it must be the configured one, now and
// after a reboot (/etc/hostname).
type HostnameCheck struct{ env *Env }

func (HostnameCheck) Name() string { return "Hostname" }

func hostnames(ctx context.Context, h host.Host) (kernel, static string, hasStatic bool, err error) {
	k, err := h.ReadFile(ctx, "/proc/sys/kernel/hostname")
	if err != nil {
		return "", "", false, err
	}
	s, hasStatic, err := readOptional(ctx, h, "/etc/hostname")
	if err != nil {
		return "", "", false, err
	}
	static = ""
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			static = t
			break
		}
	}
	return strings.TrimSpace(string(k)), static, hasStatic, nil
}

func (c HostnameCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	want := c.env.Node.Name
	if msgs := validation.IsDNS1123Label(want); len(msgs) > 0 {
		return nil, []error{errorf("configured name %q is not a DNS-1123 label (%s): rename the host in the config", want, strings.Join(msgs, "; "))}
	}
	kernel, static, hasStatic, err := hostnames(ctx, h)
	if err != nil {
		return nil, []error{err}
	}
	if kernel != want {
		errs = append(errs, errorf("hostname is %q but the config names this host %q: set it (hostnamectl set-hostname %s)", kernel, want, want))
	}
	if hasStatic && static != want {
		errs = append(errs, errorf("/etc/hostname holds %q: the hostname would change to it at the next boot; set it to %s", static, want))
	}
	return nil, errs
}

func (c HostnameCheck) FixDescription() string {
	return "hostnamectl set-hostname " + c.env.Node.Name
}

func (c HostnameCheck) Fix(ctx context.Context, h host.Host) error {
	want := c.env.Node.Name
	if msgs := validation.IsDNS1123Label(want); len(msgs) > 0 {
		return errorf("configured name %q is not a DNS-1123 label", want)
	}
	p, err := lookPath(ctx, h, "hostnamectl")
	if err != nil {
		return err
	}
	if p != "" {
		_, err := host.MustRun(ctx, h, p, "set-hostname", want)
		return err
	}
	// No hostnamectl (minimal images without systemd-hostnamed's client): the
	// static name and the kernel's, which is all hostnamectl changes here.
	if err := h.WriteFile(ctx, "/etc/hostname", []byte(want+"\n"), host.WriteOptions{Mode: 0o644}); err != nil {
		return err
	}
	_, err = host.MustRun(ctx, h, "hostname", want)
	return err
}

// Marker lines of the block the HostsFile fix owns in /etc/hosts.
const (
	hostsFile  = "/etc/hosts"
	hostsBegin = "# BEGIN kubeforge managed hosts"
	hostsEnd   = "# END kubeforge managed hosts"
)

// HostsFileCheck: every cluster host must resolve to its configured address
// through /etc/hosts, so etcd peers, kubelets and certificates agree without DNS.
// What is checked is the file's content (the way glibc's "files" source reads
// it), not a live lookup: a name an unmanaged line maps elsewhere is an error the
// fix will not paper over, because it does not edit lines it does not own.
type HostsFileCheck struct{ env *Env }

func (HostsFileCheck) Name() string { return "HostsFile" }

type hostsLayout struct {
	before, block, after []string // lines; block excludes the markers
	hasBlock             bool
}

func splitHosts(content string) (hostsLayout, error) {
	var l hostsLayout
	lines := strings.Split(strings.TrimSuffix(content, "\n"), "\n")
	if content == "" {
		lines = nil
	}
	state := 0 // 0 before, 1 in block, 2 after
	for i, line := range lines {
		t := strings.TrimSpace(line)
		switch {
		case t == hostsBegin:
			if state != 0 {
				return l, errorf("%s line %d: a second %q marker", hostsFile, i+1, hostsBegin)
			}
			state, l.hasBlock = 1, true
		case t == hostsEnd:
			if state != 1 {
				return l, errorf("%s line %d: %q without a %q line before it", hostsFile, i+1, hostsEnd, hostsBegin)
			}
			state = 2
		case state == 0:
			l.before = append(l.before, line)
		case state == 1:
			l.block = append(l.block, line)
		default:
			l.after = append(l.after, line)
		}
	}
	if state == 1 {
		return l, errorf("%s has %q but no %q line: repair the block by hand", hostsFile, hostsBegin, hostsEnd)
	}
	return l, nil
}

// desiredBlock is the managed block's content, in config order.
func (c HostsFileCheck) desiredBlock() []string {
	out := make([]string, 0, len(c.env.Cluster.Spec.Hosts))
	for _, h := range c.env.Cluster.Spec.Hosts {
		out = append(out, h.Address+"\t"+h.Name)
	}
	return out
}

// conflicts reads every line that names a cluster host: lines outside the
// managed block mapping it to another address (loopback ones for this host's
// own name, Debian's 127.0.1.1 habit, apart), and which names are mapped right.
func (c HostsFileCheck) conflicts(l hostsLayout) (conflicts []string, loopback []string, present map[string]bool) {
	want := map[string]string{}
	for _, h := range c.env.Cluster.Spec.Hosts {
		want[strings.ToLower(h.Name)] = h.Address
	}
	present = map[string]bool{}
	scan := func(lines []string, offset int, managed bool) {
		for i, line := range lines {
			if j := strings.IndexByte(line, '#'); j >= 0 {
				line = line[:j]
			}
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			addr := net.ParseIP(f[0])
			for _, name := range f[1:] {
				w, ok := want[strings.ToLower(name)]
				if !ok {
					continue
				}
				if addr != nil && addr.Equal(net.ParseIP(w)) {
					present[strings.ToLower(name)] = true
					continue
				}
				if managed {
					continue // the block is rewritten as a whole anyway
				}
				desc := fmt.Sprintf("line %d maps %s to %s (want %s)", offset+i+1, name, f[0], w)
				if addr != nil && addr.IsLoopback() && strings.EqualFold(name, c.env.Node.Name) {
					loopback = append(loopback, desc)
				} else {
					conflicts = append(conflicts, desc)
				}
			}
		}
	}
	scan(l.before, 0, false)
	if l.hasBlock {
		scan(l.block, len(l.before)+1, true)
		scan(l.after, len(l.before)+len(l.block)+2, false)
	}
	return conflicts, loopback, present
}

func (c HostsFileCheck) Check(ctx context.Context, h host.Host) (warns, errs []error) {
	content, _, err := readOptional(ctx, h, hostsFile)
	if err != nil {
		return nil, []error{err}
	}
	l, err := splitHosts(content)
	if err != nil {
		return nil, []error{err}
	}
	conflicts, loopback, present := c.conflicts(l)
	for _, cf := range conflicts {
		errs = append(errs, errorf("%s %s: remove or correct that line (kubeforge does not edit lines outside its block)", hostsFile, cf))
	}
	for _, lb := range loopback {
		warns = append(warns, errorf("%s %s: this host's own name should resolve to its cluster address", hostsFile, lb))
	}
	var missing []string
	for _, hh := range c.env.Cluster.Spec.Hosts {
		if !present[strings.ToLower(hh.Name)] {
			missing = append(missing, hh.Name+" -> "+hh.Address)
		}
	}
	if len(missing) > 0 {
		errs = append(errs, errorf("%s does not map %s: add them (the fix writes a managed block)", hostsFile, strings.Join(missing, ", ")))
	} else if l.hasBlock && strings.Join(l.block, "\n") != strings.Join(c.desiredBlock(), "\n") {
		warns = append(warns, errorf("the kubeforge block in %s is out of date with the config", hostsFile))
	}
	return warns, errs
}

func (HostsFileCheck) FixDescription() string {
	return "write the cluster's hosts into a managed block of " + hostsFile + " (other lines untouched)"
}

func (c HostsFileCheck) Fix(ctx context.Context, h host.Host) error {
	content, exists, err := readOptional(ctx, h, hostsFile)
	if err != nil {
		return err
	}
	l, err := splitHosts(content)
	if err != nil {
		return err
	}
	block := append(append([]string{hostsBegin}, c.desiredBlock()...), hostsEnd)
	var lines []string
	if l.hasBlock {
		lines = append(append(append(lines, l.before...), block...), l.after...)
	} else {
		lines = append(append(lines, l.before...), block...)
	}
	next := strings.Join(lines, "\n") + "\n"
	if next != content {
		mode := host.WriteOptions{Mode: 0o644}
		if exists {
			if fi, err := h.Stat(ctx, hostsFile); err == nil {
				mode.Mode = fi.Mode.Perm()
			}
		}
		if err := h.WriteFile(ctx, hostsFile, []byte(next), mode); err != nil {
			return err
		}
	}
	if conflicts, _, _ := c.conflicts(l); len(conflicts) > 0 {
		return errorf("wrote the managed block, but %s still %s: correct that by hand", hostsFile, strings.Join(conflicts, "; "))
	}
	return nil
}
