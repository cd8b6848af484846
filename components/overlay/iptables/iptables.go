// Package iptables installs the overlay's netfilter rules with the host's own
// iptables binary, whichever backend it is (legacy or nf_tables): kube-proxy and
// the CNI plugins use the same binary, so the rules end up in the same tables.
//
// Everything lives in two chains of kubeforge's own, jumped to from the built-in
// chains, so the rules can be checked, rewritten and removed without touching
// anyone else's:
//
//	filter KUBEFORGE-FORWARD  (first rule of FORWARD)
//	  -s <podCIDR> -j ACCEPT               pods may send anywhere
//	  -d <podCIDR> -j ACCEPT               and be reached
//	nat KUBEFORGE-POSTRTG     (appended to POSTROUTING)
//	  -s <podCIDR> -d <podCIDR> -j RETURN              pod to pod keeps its source
//	  -s <podCIDR> ! -d 224.0.0.0/4 -j MASQUERADE      pod to the outside world
//	  ! -s <podCIDR> -d <nodeSubnet> -j RETURN         host to local pods
//	  ! -s <podCIDR> -d <podCIDR> -j MASQUERADE        host to remote pods
//
// The FORWARD jump goes first because a host firewall or Docker may have set the
// FORWARD policy to DROP. Masquerading is done here and not by the CNI bridge
// plugin's ipMasq: the plugin exempts only the node's own subnet, so it would also
// masquerade pod-to-pod traffic to other nodes and hide the sender's pod address
// (which network policies and logs rely on). This is flannel's --ip-masq.
package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/kubeforge/kubeforge/bootstrap/host"
)

// Chain names.
const (
	FilterChain = "KUBEFORGE-FORWARD"
	NATChain    = "KUBEFORGE-POSTRTG"
)

const comment = "kubeforge overlay"

// Runner runs one command and reports its output and exit code; err is for a
// command that could not run at all.
type Runner func(ctx context.Context, argv []string) (stdout, stderr []byte, code int, err error)

// Exec runs commands on this machine, each prefixed with prefix (tests use
// `ip netns exec <ns>`).
func Exec(prefix ...string) Runner {
	return func(ctx context.Context, argv []string) ([]byte, []byte, int, error) {
		full := append(append([]string{}, prefix...), argv...)
		cmd := exec.CommandContext(ctx, full[0], full[1:]...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.Bytes(), errb.Bytes(), ee.ExitCode(), nil
		}
		if err != nil {
			return nil, nil, -1, err
		}
		return out.Bytes(), errb.Bytes(), 0, nil
	}
}

// OnHost runs commands through h.
func OnHost(h host.Host) Runner {
	return func(ctx context.Context, argv []string) ([]byte, []byte, int, error) {
		r, err := h.Run(ctx, host.Cmd{Argv: argv})
		if err != nil {
			return nil, nil, -1, err
		}
		return r.Stdout, r.Stderr, r.ExitCode, nil
	}
}

// Rules are the inputs of the overlay's rules.
type Rules struct {
	PodCIDR    netip.Prefix
	NodeSubnet netip.Prefix
}

// Manager applies the rules with one iptables binary.
type Manager struct {
	run Runner
	bin string
}

// New returns a manager; bin "" means "iptables" from PATH.
func New(run Runner, bin string) *Manager {
	if bin == "" {
		bin = "iptables"
	}
	return &Manager{run: run, bin: bin}
}

type chainSpec struct {
	table, chain, parent string
	insert               bool // first in parent rather than appended
	rules                [][]string
}

func (r Rules) specs() []chainSpec {
	pod, node := r.PodCIDR.String(), r.NodeSubnet.String()
	c := func(why string) []string { return []string{"-m", "comment", "--comment", comment + ": " + why} }
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	return []chainSpec{
		{table: "filter", chain: FilterChain, parent: "FORWARD", insert: true, rules: [][]string{
			cat([]string{"-s", pod}, c("from pods"), []string{"-j", "ACCEPT"}),
			cat([]string{"-d", pod}, c("to pods"), []string{"-j", "ACCEPT"}),
		}},
		{table: "nat", chain: NATChain, parent: "POSTROUTING", rules: [][]string{
			cat([]string{"-s", pod, "-d", pod}, c("pod to pod keeps its address"), []string{"-j", "RETURN"}),
			cat([]string{"-s", pod, "!", "-d", "224.0.0.0/4"}, c("pod to outside"), []string{"-j", "MASQUERADE"}),
			cat([]string{"!", "-s", pod, "-d", node}, c("host to local pods"), []string{"-j", "RETURN"}),
			cat([]string{"!", "-s", pod, "-d", pod}, c("host to remote pods"), []string{"-j", "MASQUERADE"}),
		}},
	}
}

func jump(chain string) []string {
	return []string{"-m", "comment", "--comment", comment, "-j", chain}
}

// ipt runs iptables -w -t table args...; it returns the exit code, and an error
// only when the command could not run.
func (m *Manager) ipt(ctx context.Context, table string, args ...string) (string, int, error) {
	argv := append([]string{m.bin, "-w", "-t", table}, args...)
	out, errb, code, err := m.run(ctx, argv)
	if err != nil {
		return "", -1, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	if code != 0 && code != 1 {
		return string(out), code, fmt.Errorf("%s exited %d: %s", strings.Join(argv, " "), code, strings.TrimSpace(string(errb)))
	}
	if code == 1 && len(errb) > 0 && !benign(string(errb)) {
		return string(out), code, fmt.Errorf("%s exited 1: %s", strings.Join(argv, " "), strings.TrimSpace(string(errb)))
	}
	return string(out), code, nil
}

// benign are iptables' messages for "no such rule/chain", which exit 1 like a
// failed check does.
func benign(stderr string) bool {
	s := strings.ToLower(stderr)
	for _, m := range []string{"does a matching rule exist", "no chain/target/match by that name", "bad rule", "chain '", "doesn't exist", "does not exist"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

func (m *Manager) must(ctx context.Context, table string, args ...string) error {
	_, code, err := m.ipt(ctx, table, args...)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("%s -w -t %s %s failed (exit %d)", m.bin, table, strings.Join(args, " "), code)
	}
	return nil
}

// chain reports whether table has chain and how many rules it holds. It reads
// the whole table: `iptables -S <chain>` on a missing chain fails with a message
// that differs between backends (nf_tables calls it "incompatible").
func (m *Manager) chain(ctx context.Context, table, chain string) (bool, int, error) {
	out, code, err := m.ipt(ctx, table, "-S")
	if err != nil {
		return false, 0, err
	}
	if code != 0 {
		return false, 0, fmt.Errorf("%s -w -t %s -S failed (exit %d)", m.bin, table, code)
	}
	exists, rules := false, 0
	for _, line := range strings.Split(out, "\n") {
		switch {
		case line == "-N "+chain:
			exists = true
		case strings.HasPrefix(line, "-A "+chain+" "):
			rules++
		}
	}
	return exists, rules, nil
}

// Ensure installs the chains, their rules and the jumps, changing only what is
// missing or different. It returns one line per change.
func (m *Manager) Ensure(ctx context.Context, r Rules) ([]string, error) {
	if !r.PodCIDR.IsValid() || !r.NodeSubnet.IsValid() {
		return nil, errors.New("iptables: pod CIDR and node subnet are required")
	}
	var changes []string
	for _, s := range r.specs() {
		exists, have, err := m.chain(ctx, s.table, s.chain)
		if err != nil {
			return changes, err
		}
		if !exists {
			if err := m.must(ctx, s.table, "-N", s.chain); err != nil {
				return changes, err
			}
			changes = append(changes, fmt.Sprintf("created chain %s/%s", s.table, s.chain))
		}
		ok := have == len(s.rules)
		for i := 0; ok && i < len(s.rules); i++ {
			_, code, err := m.ipt(ctx, s.table, append([]string{"-C", s.chain}, s.rules[i]...)...)
			if err != nil {
				return changes, err
			}
			ok = code == 0
		}
		if !ok {
			// Rewriting the short chain as a whole keeps the rule order right;
			// the window without rules lasts a few exec calls.
			if err := m.must(ctx, s.table, "-F", s.chain); err != nil {
				return changes, err
			}
			for _, rule := range s.rules {
				if err := m.must(ctx, s.table, append([]string{"-A", s.chain}, rule...)...); err != nil {
					return changes, err
				}
			}
			changes = append(changes, fmt.Sprintf("wrote %d rules to %s/%s", len(s.rules), s.table, s.chain))
		}
		_, code, err := m.ipt(ctx, s.table, append([]string{"-C", s.parent}, jump(s.chain)...)...)
		if err != nil {
			return changes, err
		}
		if code != 0 {
			args := append([]string{"-A", s.parent}, jump(s.chain)...)
			if s.insert {
				args = append([]string{"-I", s.parent, "1"}, jump(s.chain)...)
			}
			if err := m.must(ctx, s.table, args...); err != nil {
				return changes, err
			}
			changes = append(changes, fmt.Sprintf("added jump %s/%s -> %s", s.table, s.parent, s.chain))
		}
	}
	return changes, nil
}

// Remove deletes the jumps and both chains. What is already gone is skipped.
func (m *Manager) Remove(ctx context.Context) ([]string, error) {
	var changes []string
	for _, s := range (Rules{}).specs() {
		// Without the chain there can be no jump to it (iptables refuses both),
		// and checking for a jump to a missing chain is an error, not a "no".
		exists, _, err := m.chain(ctx, s.table, s.chain)
		if err != nil {
			return changes, err
		}
		if !exists {
			continue
		}
		for i := 0; i < 16; i++ { // a jump added twice by hand is removed too
			_, code, err := m.ipt(ctx, s.table, append([]string{"-C", s.parent}, jump(s.chain)...)...)
			if err != nil {
				return changes, err
			}
			if code != 0 {
				break
			}
			if err := m.must(ctx, s.table, append([]string{"-D", s.parent}, jump(s.chain)...)...); err != nil {
				return changes, err
			}
			changes = append(changes, fmt.Sprintf("removed jump %s/%s -> %s", s.table, s.parent, s.chain))
		}
		if err := m.must(ctx, s.table, "-F", s.chain); err != nil {
			return changes, err
		}
		if err := m.must(ctx, s.table, "-X", s.chain); err != nil {
			return changes, err
		}
		changes = append(changes, fmt.Sprintf("removed chain %s/%s", s.table, s.chain))
	}
	return changes, nil
}

// Leftovers lists kubeforge rules and chains still present (for reset checks).
func (m *Manager) Leftovers(ctx context.Context) ([]string, error) {
	var out []string
	for _, table := range []string{"filter", "nat"} {
		s, _, err := m.ipt(ctx, table, "-S")
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(s, "\n") {
			if strings.Contains(line, "KUBEFORGE-FORWARD") || strings.Contains(line, "KUBEFORGE-POSTRTG") {
				out = append(out, table+": "+line)
			}
		}
	}
	return out, nil
}
