package vxlan

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/kubeforge/kubeforge/components/overlay/internal/nettest"
)

func TestDeviceName(t *testing.T) {
	for vni, want := range map[int]string{1: "kubeforge.1", 99999: "kubeforge.99999", 100000: "kf.100000", 16777215: "kf.16777215"} {
		if got := DeviceName(vni); got != want || len(got) > 15 {
			t.Errorf("DeviceName(%d) = %q, want %q", vni, got, want)
		}
	}
}

func TestDeviceMAC(t *testing.T) {
	a, b := DeviceMAC("node01", 1), DeviceMAC("node01", 1)
	if a.String() != b.String() {
		t.Fatalf("MAC not stable: %s %s", a, b)
	}
	if a[0]&0x02 == 0 || a[0]&0x01 != 0 {
		t.Errorf("%s is not a locally administered unicast MAC", a)
	}
	if DeviceMAC("node02", 1).String() == a.String() || DeviceMAC("node01", 2).String() == a.String() {
		t.Errorf("different node or VNI gives the same MAC %s", a)
	}
}

func TestKernelAffected(t *testing.T) {
	cases := []struct {
		release  string
		affected bool
	}{
		{"4.18.0-553.el8_10.x86_64", true},
		{"4.18.0-80.el8.x86_64", true},
		{"3.10.0-1160.119.1.el7.x86_64", true},
		{"5.14.0-427.13.1.el9_4.x86_64", false},
		{"6.1.0-18-amd64", false},
		{"5.10.0-28-amd64", false},
		{"5.4.0-150-generic", true}, // Ubuntu keeps .0: judged conservatively
		{"5.4.41", false},
		{"5.4.40", true},
		{"4.19.123-1", false},
		{"4.19.0-21-amd64", true},
		{"4.14.181", false},
		{"5.6.13", false},
		{"5.5.19", true},
		{"5.7.0", false},
		{"6.18.44-fc-v595", false},
		{"garbage", true},
	}
	for _, c := range cases {
		t.Run(c.release, func(t *testing.T) {
			got, why := KernelAffected(c.release)
			if got != c.affected || why == "" {
				t.Errorf("KernelAffected(%q) = %v (%s), want %v", c.release, got, why, c.affected)
			}
		})
	}
}

func TestDecideTxChecksum(t *testing.T) {
	const rhel8, debian12 = "4.18.0-553.el8_10.x86_64", "6.1.0-18-amd64"
	cases := []struct {
		mode, release string
		disable, warn bool
	}{
		{TxOffloadDisabled, debian12, true, false},
		{TxOffloadDisabled, rhel8, true, false},
		{"", debian12, true, false},
		{TxOffloadAuto, rhel8, true, false},
		{TxOffloadAuto, debian12, false, false},
		{TxOffloadEnabled, debian12, false, false},
		{TxOffloadEnabled, rhel8, false, true},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%q on %s", c.mode, c.release), func(t *testing.T) {
			disable, why, warn, err := DecideTxChecksum(c.mode, c.release)
			if err != nil || disable != c.disable || warn != c.warn || why == "" {
				t.Errorf("DecideTxChecksum(%q, %q) = %v %q %v %v; want disable=%v warn=%v", c.mode, c.release, disable, why, warn, err, c.disable, c.warn)
			}
		})
	}
	if _, _, _, err := DecideTxChecksum("off", debian12); err == nil || !strings.Contains(err.Error(), `"off"`) {
		t.Errorf("unknown mode: %v", err)
	}
}

// node is one simulated host: a namespace with an underlay veth.
type node struct {
	ns   *nettest.NS
	ip   netip.Addr
	sub  netip.Prefix
	name string
	logs []string
}

func (n *node) cfg() Config {
	return Config{Name: "kubeforge.1", VNI: 1, Port: 8472, LocalIP: n.ip, MAC: DeviceMAC(n.name, 1), Address: netip.PrefixFrom(n.sub.Addr(), 32)}
}

func (n *node) opts() Options {
	return Options{Handle: n.ns.NL, NS: n.ns.Handle, Logf: func(f string, a ...any) { n.logs = append(n.logs, fmt.Sprintf(f, a...)) }}
}

func (n *node) peer() Peer {
	return Peer{Node: n.name, Subnet: n.sub, PublicIP: n.ip, MAC: DeviceMAC(n.name, 1)}
}

func twoNodes(t *testing.T) (*node, *node) {
	a := &node{ns: nettest.New(t), ip: netip.MustParseAddr("192.0.2.1"), sub: netip.MustParsePrefix("10.244.1.0/24"), name: "node-a"}
	b := &node{ns: nettest.New(t), ip: netip.MustParseAddr("192.0.2.2"), sub: netip.MustParsePrefix("10.244.2.0/24"), name: "node-b"}
	nettest.Link(t, a.ns, "eth0", "192.0.2.1/24", b.ns, "eth0", "192.0.2.2/24")
	return a, b
}

func TestEnsureDevice(t *testing.T) {
	a, _ := twoNodes(t)
	d, err := Ensure(a.cfg(), a.opts())
	if err != nil {
		t.Fatal(err)
	}
	l, err := a.ns.NL.LinkByName("kubeforge.1")
	if err != nil {
		t.Fatal(err)
	}
	vx := l.(*netlink.Vxlan)
	eth0, _ := a.ns.NL.LinkByName("eth0")
	if vx.VxlanId != 1 || vx.Port != 8472 || !vx.SrcAddr.Equal(net.ParseIP("192.0.2.1")) || vx.Learning ||
		vx.VtepDevIndex != eth0.Attrs().Index || vx.MTU != 1450 || vx.HardwareAddr.String() != DeviceMAC("node-a", 1).String() || vx.Flags&net.FlagUp == 0 {
		t.Fatalf("device: vni %d port %d local %s learning %v vtepdev %d mtu %d mac %s flags %v",
			vx.VxlanId, vx.Port, vx.SrcAddr, vx.Learning, vx.VtepDevIndex, vx.MTU, vx.HardwareAddr, vx.Flags)
	}
	if d.MTU() != 1450 || d.Name() != "kubeforge.1" {
		t.Errorf("Device reports mtu %d name %s", d.MTU(), d.Name())
	}
	addrs, _ := a.ns.NL.AddrList(l, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.244.1.0/32" {
		t.Fatalf("addresses %v, want only 10.244.1.0/32", addrs)
	}
	// The /32 adds no route for the pod network.
	routes, _ := a.ns.NL.RouteList(l, netlink.FAMILY_V4)
	if len(routes) != 0 {
		t.Fatalf("routes on a fresh device: %v", routes)
	}
	if out := a.ns.Run(t, "ip", "-d", "link", "show", "kubeforge.1"); !strings.Contains(out, "nolearning") || !strings.Contains(out, "dstport 8472") {
		t.Errorf("ip -d link: %s", out)
	}

	// Idempotent: a second Ensure changes nothing.
	a.logs = nil
	if _, err := Ensure(a.cfg(), a.opts()); err != nil || len(a.logs) != 0 {
		t.Fatalf("second Ensure: %v, changes %q", err, a.logs)
	}
	idx := vx.Index

	// MTU override and a moved subnet are applied in place.
	cfg := a.cfg()
	cfg.MTU = 1400
	cfg.Address = netip.MustParsePrefix("10.244.9.0/32")
	if _, err := Ensure(cfg, a.opts()); err != nil {
		t.Fatal(err)
	}
	l, _ = a.ns.NL.LinkByName("kubeforge.1")
	addrs, _ = a.ns.NL.AddrList(l, netlink.FAMILY_V4)
	if l.Attrs().MTU != 1400 || l.Attrs().Index != idx || len(addrs) != 1 || addrs[0].IPNet.String() != "10.244.9.0/32" {
		t.Fatalf("after mtu/address change: mtu %d index %d (was %d) addrs %v", l.Attrs().MTU, l.Attrs().Index, idx, addrs)
	}

	// A different VNI or port cannot be changed in place: recreated, and said so.
	a.logs = nil
	cfg.Port = 4789
	if _, err := Ensure(cfg, a.opts()); err != nil {
		t.Fatal(err)
	}
	l, _ = a.ns.NL.LinkByName("kubeforge.1")
	if l.(*netlink.Vxlan).Port != 4789 || !strings.Contains(strings.Join(a.logs, "\n"), "udp port 8472, want 4789") {
		t.Fatalf("port change: port %d, logs %q", l.(*netlink.Vxlan).Port, a.logs)
	}

	// No interface holds the public address: a clear error.
	bad := a.cfg()
	bad.LocalIP = netip.MustParseAddr("192.0.2.99")
	if _, err := Ensure(bad, a.opts()); err == nil || !strings.Contains(err.Error(), "no interface of this host has the address 192.0.2.99") {
		t.Fatalf("unknown local address: %v", err)
	}

	if ok, err := Delete(a.ns.NL, "kubeforge.1"); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if ok, err := Delete(a.ns.NL, "kubeforge.1"); ok || err != nil {
		t.Fatalf("second delete: %v %v", ok, err)
	}
}

func fakePeers(n int) []Peer {
	out := make([]Peer, n)
	for i := range out {
		out[i] = Peer{
			Node:     fmt.Sprintf("sim%03d", i),
			Subnet:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(128 + i/256), byte(i % 256), 0}), 24),
			PublicIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i%200)}),
			MAC:      DeviceMAC(fmt.Sprintf("sim%03d", i), 1),
		}
	}
	return out
}

func TestSyncProgramsAndCleans(t *testing.T) {
	a, _ := twoNodes(t)
	d, err := Ensure(a.cfg(), a.opts())
	if err != nil {
		t.Fatal(err)
	}
	peers := fakePeers(5)
	res, err := d.Sync(peers)
	if err != nil || res.Added != 5 {
		t.Fatalf("first sync: %+v %v", res, err)
	}
	// What the kernel holds, read independently with iproute2.
	routes := a.ns.Run(t, "ip", "route", "show", "dev", "kubeforge.1")
	neighs := a.ns.Run(t, "ip", "neigh", "show", "dev", "kubeforge.1")
	fdb := a.ns.Run(t, "bridge", "fdb", "show", "dev", "kubeforge.1")
	for _, p := range peers {
		if !strings.Contains(routes, fmt.Sprintf("%s via %s onlink", p.Subnet, p.VTEP())) {
			t.Errorf("no route for %s in:\n%s", p.Subnet, routes)
		}
		if !strings.Contains(neighs, fmt.Sprintf("%s lladdr %s PERMANENT", p.VTEP(), p.MAC)) {
			t.Errorf("no neigh for %s in:\n%s", p.VTEP(), neighs)
		}
		if !strings.Contains(fdb, fmt.Sprintf("%s dst %s self permanent", p.MAC, p.PublicIP)) {
			t.Errorf("no fdb for %s in:\n%s", p.MAC, fdb)
		}
	}
	got, err := d.Programmed()
	if err != nil || len(got) != 5 {
		t.Fatalf("programmed: %v %v", got, err)
	}

	// Unchanged on a second sync.
	if res, err := d.Sync(peers); err != nil || res.Unchanged != 5 || res.Added+res.Removed+res.Updated != 0 {
		t.Fatalf("second sync: %+v %v", res, err)
	}

	// A stale route and neighbour someone left behind, a peer gone, a peer whose
	// host moved: exactly those are fixed.
	a.ns.Run(t, "ip", "neigh", "add", "10.200.0.0", "lladdr", "0e:11:22:33:44:55", "dev", "kubeforge.1", "nud", "permanent")
	a.ns.Run(t, "ip", "route", "add", "10.200.0.0/24", "via", "10.200.0.0", "dev", "kubeforge.1", "onlink")
	moved := peers[1]
	moved.PublicIP = netip.MustParseAddr("192.0.2.250")
	next := []Peer{peers[0], moved, peers[2], peers[3]}
	res, err = d.Sync(next)
	if err != nil || res.Removed != 2 || res.Updated != 1 || res.Unchanged != 3 {
		t.Fatalf("cleanup sync: %+v %v", res, err)
	}
	st, _ := d.Read()
	if len(st.Routes) != 4 || len(st.Neighs) != 4 || len(st.FDB) != 4 {
		t.Fatalf("after cleanup: %d routes %d neighs %d fdb; want 4 each: %+v", len(st.Routes), len(st.Neighs), len(st.FDB), st)
	}
	if st.FDB[moved.MAC.String()] != moved.PublicIP {
		t.Errorf("moved peer's fdb points at %s", st.FDB[moved.MAC.String()])
	}

	// Remove takes all three entries; removing again is fine.
	if err := d.Remove(moved); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(moved); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	st, _ = d.Read()
	if _, ok := st.Routes[moved.Subnet]; ok || st.Neighs[moved.VTEP()] != "" || st.FDB[moved.MAC.String()].IsValid() {
		t.Fatalf("entries of the removed peer left: %+v", st)
	}
	if res, err := d.Sync(nil); err != nil || res.Removed != 3 {
		t.Fatalf("sync to nothing: %+v %v", res, err)
	}
	if out := a.ns.Run(t, "ip", "route", "show", "dev", "kubeforge.1"); strings.TrimSpace(out) != "" {
		t.Fatalf("routes left: %s", out)
	}
}

// Two namespaces, one VXLAN device each, programmed with each other: a TCP
// transfer between addresses of the two node subnets crosses the overlay.
func TestTrafficAcrossOverlay(t *testing.T) {
	a, b := twoNodes(t)
	da, err := Ensure(a.cfg(), a.opts())
	if err != nil {
		t.Fatal(err)
	}
	db, err := Ensure(b.cfg(), b.opts())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := da.Sync([]Peer{b.peer()}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Sync([]Peer{a.peer()}); err != nil {
		t.Fatal(err)
	}
	// "Pods": the first address of each subnet on lo.
	a.ns.Run(t, "ip", "addr", "add", "10.244.1.1/32", "dev", "lo")
	b.ns.Run(t, "ip", "addr", "add", "10.244.2.1/32", "dev", "lo")

	var ln net.Listener
	if err := InNetns(b.ns.Handle, func() (err error) { ln, err = net.Listen("tcp4", "10.244.2.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	payload := make([]byte, 4<<20)
	_, _ = rand.Read(payload)
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		data, _ := io.ReadAll(c)
		got <- data
	}()
	var conn net.Conn
	err = InNetns(a.ns.Handle, func() (err error) {
		dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("10.244.1.1")}, Timeout: 10 * time.Second}
		conn, err = dl.Dial("tcp4", ln.Addr().String())
		return
	})
	if err != nil {
		t.Fatalf("dial across the overlay: %v", err)
	}
	if _, err := conn.Write(payload); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if data := <-got; !bytes.Equal(data, payload) {
		t.Fatalf("received %d bytes, want the %d sent", len(data), len(payload))
	}
	// It really went through VXLAN: the device counted the packets.
	l, _ := a.ns.NL.LinkByName("kubeforge.1")
	if st := l.Attrs().Statistics; st == nil || st.TxBytes < uint64(len(payload)) {
		t.Fatalf("kubeforge.1 tx statistics %+v, want at least %d bytes", st, len(payload))
	}
}

func TestTxChecksumOffload(t *testing.T) {
	a, _ := twoNodes(t)
	d, err := Ensure(a.cfg(), a.opts())
	if err != nil {
		t.Fatal(err)
	}
	on, err := d.TxChecksum()
	if err != nil || !on {
		t.Fatalf("fresh vxlan device tx checksum = %v, %v; want on", on, err)
	}
	if err := d.SetTxChecksum(false); err != nil {
		t.Fatal(err)
	}
	if on, err := d.TxChecksum(); err != nil || on {
		t.Fatalf("after turning it off: %v, %v", on, err)
	}
	if _, err := exec.LookPath("ethtool"); err == nil {
		out := a.ns.Run(t, "ethtool", "-k", "kubeforge.1")
		if !strings.Contains(out, "tx-checksumming: off") || !strings.Contains(out, "tx-checksum-ip-generic: off") {
			t.Fatalf("ethtool -k after SetTxChecksum(false):\n%s", out)
		}
	}
	if err := d.SetTxChecksum(true); err != nil {
		t.Fatal(err)
	}
	if on, _ := d.TxChecksum(); !on {
		t.Fatal("could not turn it back on")
	}
}

func TestEnsureIPv4Forwarding(t *testing.T) {
	a := nettest.New(t)
	a.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=0")
	changed, err := EnsureIPv4Forwarding(a.Handle)
	if err != nil || !changed {
		t.Fatalf("first: %v %v", changed, err)
	}
	if out := strings.TrimSpace(a.Run(t, "cat", "/proc/sys/net/ipv4/ip_forward")); out != "1" {
		t.Fatalf("ip_forward in the namespace = %s", out)
	}
	if changed, err := EnsureIPv4Forwarding(a.Handle); err != nil || changed {
		t.Fatalf("second: %v %v", changed, err)
	}
}

// BenchmarkSync500 programs 500 peers (1500 kernel entries) on a fresh device.
func BenchmarkSync500(b *testing.B) {
	ns := nettest.New(b)
	peerNS := nettest.New(b)
	nettest.Link(b, ns, "eth0", "192.0.2.1/24", peerNS, "eth0", "192.0.2.2/24")
	d, err := Ensure(Config{Name: "kubeforge.1", VNI: 1, Port: 8472, LocalIP: netip.MustParseAddr("192.0.2.1"), MAC: DeviceMAC("bench", 1), Address: netip.MustParsePrefix("10.127.0.0/32")},
		Options{Handle: ns.NL, NS: ns.Handle})
	if err != nil {
		b.Fatal(err)
	}
	peers := fakePeers(500)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res, err := d.Sync(peers); err != nil || res.Added != 500 {
			b.Fatalf("%+v %v", res, err)
		}
		b.StopTimer()
		if _, err := d.Sync(nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
