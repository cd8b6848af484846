package iptables

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/components/overlay/internal/nettest"
)

func TestEnsureAndRemoveInNetns(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("no iptables binary")
	}
	ns := nettest.New(t)
	m := New(Exec(ns.Prefix()...), "")
	ctx := context.Background()
	r := Rules{PodCIDR: netip.MustParsePrefix("10.244.0.0/16"), NodeSubnet: netip.MustParsePrefix("10.244.3.0/24")}

	changes, err := m.Ensure(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 6 {
		t.Fatalf("first Ensure: %q", changes)
	}
	filter := ns.Run(t, "iptables", "-S")
	nat := ns.Run(t, "iptables", "-t", "nat", "-S")
	for _, want := range []string{
		"-A FORWARD -m comment --comment \"kubeforge overlay\" -j KUBEFORGE-FORWARD",
		"-A KUBEFORGE-FORWARD -s 10.244.0.0/16 -m comment --comment \"kubeforge overlay: from pods\" -j ACCEPT",
		"-A KUBEFORGE-FORWARD -d 10.244.0.0/16 -m comment --comment \"kubeforge overlay: to pods\" -j ACCEPT",
	} {
		if !strings.Contains(filter, want) {
			t.Errorf("filter table lacks %q:\n%s", want, filter)
		}
	}
	for _, want := range []string{
		"-A POSTROUTING -m comment --comment \"kubeforge overlay\" -j KUBEFORGE-POSTRTG",
		"-A KUBEFORGE-POSTRTG -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment \"kubeforge overlay: pod to pod keeps its address\" -j RETURN",
		"-A KUBEFORGE-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"kubeforge overlay: pod to outside\" -j MASQUERADE",
		"-A KUBEFORGE-POSTRTG ! -s 10.244.0.0/16 -d 10.244.3.0/24 -m comment --comment \"kubeforge overlay: host to local pods\" -j RETURN",
		"-A KUBEFORGE-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment \"kubeforge overlay: host to remote pods\" -j MASQUERADE",
	} {
		if !strings.Contains(nat, want) {
			t.Errorf("nat table lacks %q:\n%s", want, nat)
		}
	}
	// The FORWARD jump is first even when other rules were there before.
	ns.Run(t, "iptables", "-I", "FORWARD", "1", "-j", "DROP")
	ns.Run(t, "iptables", "-D", "FORWARD", "-m", "comment", "--comment", "kubeforge overlay", "-j", "KUBEFORGE-FORWARD")
	if changes, err := m.Ensure(ctx, r); err != nil || len(changes) != 1 {
		t.Fatalf("Ensure after the jump was deleted: %q %v", changes, err)
	}
	if first := strings.Split(ns.Run(t, "iptables", "-S", "FORWARD"), "\n")[1]; !strings.Contains(first, "-j KUBEFORGE-FORWARD") {
		t.Errorf("first FORWARD rule is %q", first)
	}

	if changes, err := m.Ensure(ctx, r); err != nil || len(changes) != 0 {
		t.Fatalf("Ensure on a converged host: %q %v", changes, err)
	}
	// A rule someone deleted or a node subnet that changed: the chain is rewritten.
	ns.Run(t, "iptables", "-t", "nat", "-D", "KUBEFORGE-POSTRTG", "1")
	r2 := r
	r2.NodeSubnet = netip.MustParsePrefix("10.244.9.0/24")
	if changes, err := m.Ensure(ctx, r2); err != nil || len(changes) != 1 || !strings.Contains(changes[0], "nat/KUBEFORGE-POSTRTG") {
		t.Fatalf("Ensure after tampering: %q %v", changes, err)
	}
	if nat := ns.Run(t, "iptables", "-t", "nat", "-S", "KUBEFORGE-POSTRTG"); !strings.Contains(nat, "10.244.9.0/24") || strings.Contains(nat, "10.244.3.0/24") || strings.Count(nat, "-A ") != 4 {
		t.Fatalf("rewritten nat chain:\n%s", nat)
	}

	changes, err = m.Remove(ctx)
	if err != nil || len(changes) != 4 {
		t.Fatalf("Remove: %q %v", changes, err)
	}
	if left, err := m.Leftovers(ctx); err != nil || len(left) != 0 {
		t.Fatalf("leftovers: %q %v", left, err)
	}
	if changes, err := m.Remove(ctx); err != nil || len(changes) != 0 {
		t.Fatalf("second Remove: %q %v", changes, err)
	}
	// The rule that was not ours is untouched.
	if f := ns.Run(t, "iptables", "-S", "FORWARD"); !strings.Contains(f, "-A FORWARD -j DROP") {
		t.Errorf("foreign rule removed:\n%s", f)
	}
}

func TestCommandErrorsAreReported(t *testing.T) {
	run := func(ctx context.Context, argv []string) ([]byte, []byte, int, error) {
		return nil, []byte("iptables v1.8.9: can't initialize iptables table `nat': Table does not exist (do you need to insmod?)"), 3, nil
	}
	_, err := New(run, "").Ensure(context.Background(), Rules{PodCIDR: netip.MustParsePrefix("10.244.0.0/16"), NodeSubnet: netip.MustParsePrefix("10.244.3.0/24")})
	if err == nil || !strings.Contains(err.Error(), "exited 3") || !strings.Contains(err.Error(), "Table does not exist") {
		t.Fatalf("got %v", err)
	}
}
