// Package nettest gives the overlay's tests network namespaces of their own, so
// netlink and iptables changes never touch the machine's network.
package nettest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NS is a named network namespace created for one test.
type NS struct {
	Name   string
	Handle netns.NsHandle
	NL     *netlink.Handle
}

// Require skips tests that cannot create namespaces.
func Require(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("needs iproute2's ip")
	}
}

// New creates a namespace (removed at cleanup) with lo up.
func New(tb testing.TB) *NS {
	tb.Helper()
	Require(tb)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "kfovl-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	tb.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nl.Close)
	ns := &NS{Name: name, Handle: h, NL: nl}
	ns.Run(tb, "ip", "link", "set", "lo", "up")
	return ns
}

// Run runs argv inside the namespace and fails the test on error.
func (n *NS) Run(tb testing.TB, argv ...string) string {
	tb.Helper()
	out, err := n.Try(argv...)
	if err != nil {
		tb.Fatalf("%s: %s: %v: %s", n.Name, strings.Join(argv, " "), err, out)
	}
	return out
}

// Try runs argv inside the namespace.
func (n *NS) Try(argv ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name}, argv...)...).CombinedOutput()
	return string(out), err
}

// Prefix is the argv prefix that runs a command inside the namespace.
func (n *NS) Prefix() []string { return []string{"ip", "netns", "exec", n.Name} }

// Link connects a and b with a veth pair (ifA in a, ifB in b), addresses them and
// brings them up.
func Link(tb testing.TB, a *NS, ifA, addrA string, b *NS, ifB, addrB string) {
	tb.Helper()
	a.Run(tb, "ip", "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b.Name)
	a.Run(tb, "ip", "addr", "add", addrA, "dev", ifA)
	a.Run(tb, "ip", "link", "set", ifA, "up")
	b.Run(tb, "ip", "addr", "add", addrB, "dev", ifB)
	b.Run(tb, "ip", "link", "set", ifB, "up")
}
