// Package vxlan programs the kernel side of the overlay through netlink: the VXLAN
// device, and for every remote node a neighbour entry, an FDB entry and a route.
//
// The scheme is flannel's "vxlan" backend without L2/L3 miss handling: every
// entry is known up front from etcd, so the kernel never has to ask.
//
//   - The device (kubeforge.<VNI>) has learning off, the node's underlay address
//     as local VTEP and the node subnet's network address as a /32 (10.244.3.0/32
//     for 10.244.3.0/24, as flannel.1 gets it). The /32 adds no connected route,
//     so the device never claims the whole pod network; cni0 holds .1/24 and the
//     route to the local pods.
//   - A remote subnet 10.244.7.0/24 gets: neigh 10.244.7.0 lladdr <remote VTEP MAC>
//     (permanent), fdb <remote VTEP MAC> dst <remote host address> (permanent), and
//     route 10.244.7.0/24 via 10.244.7.0 dev kubeforge.1 onlink. The route resolves
//     its gateway through the neighbour entry to the MAC, the FDB entry turns the
//     MAC into the outer destination.
//
// Entries are added neighbour, FDB, route (so the route is never usable before
// its gateway resolves) and removed in the opposite order.
package vxlan

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Overhead is what VXLAN over IPv4 adds to every packet: outer IPv4 (20), UDP (8),
// VXLAN (8) and inner Ethernet (14) headers.
const Overhead = 50

// DeviceName is the VXLAN device for vni: kubeforge.<vni>, or kf.<vni> when that
// would exceed the kernel's 15-character interface names (VNI above 99999).
func DeviceName(vni int) string {
	n := "kubeforge." + strconv.Itoa(vni)
	if len(n) > 15 {
		n = "kf." + strconv.Itoa(vni)
	}
	return n
}

// DeviceMAC is the VTEP MAC of node's device: derived from the node name and VNI
// rather than random, so a recreated device (reboot, agent restart after a
// crash) comes back with the MAC its peers already have in their FDB and
// neighbour tables, and nothing has to be reprogrammed anywhere.
func DeviceMAC(node string, vni int) net.HardwareAddr {
	sum := sha256.Sum256([]byte("kubeforge-vtep\x00" + node + "\x00" + strconv.Itoa(vni)))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = (mac[0] | 0x02) &^ 0x01 // locally administered, unicast
	return mac
}

// Config describes the device.
type Config struct {
	Name string
	VNI  int
	Port int
	// MTU of the device; 0 means the underlay interface's MTU minus Overhead.
	MTU int
	// LocalIP is the node's underlay address (the local VTEP).
	LocalIP netip.Addr
	// Underlay names the interface VXLAN packets leave through; "" means the one
	// holding LocalIP.
	Underlay string
	MAC      net.HardwareAddr
	// Address is the node subnet's network address as a /32.
	Address netip.Prefix
}

// Peer is one remote node as the device needs it.
type Peer struct {
	Node     string
	Subnet   netip.Prefix
	PublicIP netip.Addr
	MAC      net.HardwareAddr
}

// VTEP is the address the route to the peer's subnet goes via: the subnet's
// network address, which is what the peer's device carries.
func (p Peer) VTEP() netip.Addr { return p.Subnet.Addr() }

func (p Peer) String() string {
	return fmt.Sprintf("%s (%s via %s, vtep %s)", p.Subnet, p.Node, p.PublicIP, p.MAC)
}

// Device is an ensured VXLAN device.
type Device struct {
	h        *netlink.Handle
	ns       netns.NsHandle
	link     *netlink.Vxlan
	underlay netlink.Link
	logf     func(string, ...any)
}

// Options are what Ensure needs besides the config.
type Options struct {
	// Handle is the netlink handle to use; nil means a handle on NS.
	Handle *netlink.Handle
	// NS is the network namespace to act in; a closed handle (netns.None()) means
	// the caller's. Tests pass a namespace they created.
	NS netns.NsHandle
	// Logf receives one line per change; nil discards them.
	Logf func(string, ...any)
}

func (o *Options) fill() error {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.NS == 0 {
		o.NS = netns.None()
	}
	if o.Handle == nil {
		var err error
		if o.NS.IsOpen() {
			o.Handle, err = netlink.NewHandleAt(o.NS)
		} else {
			o.Handle, err = netlink.NewHandle()
		}
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
	}
	return nil
}

// FindUnderlay returns the interface that holds ip.
func FindUnderlay(h *netlink.Handle, ip netip.Addr) (netlink.Link, error) {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
			l, err := h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("interface %d holding %s: %w", a.LinkIndex, ip, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("no interface of this host has the address %s (the node's public address, where peers send VXLAN packets)", ip)
}

// Ensure creates the device or brings an existing one to cfg, logging every
// change. A device whose VNI, port, local address or underlay differ is deleted
// and recreated: the kernel cannot change those in place. One function
// because each attribute's compare-then-set reads the link Ensure holds.
func Ensure(cfg Config, opts Options) (*Device, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	h, logf := opts.Handle, opts.Logf
	if !cfg.LocalIP.Is4() {
		return nil, fmt.Errorf("vxlan %s: local address %s is not IPv4", cfg.Name, cfg.LocalIP)
	}
	if !cfg.Address.IsValid() || cfg.Address.Bits() != 32 {
		return nil, fmt.Errorf("vxlan %s: address %s must be a /32", cfg.Name, cfg.Address)
	}
	var under netlink.Link
	var err error
	if cfg.Underlay != "" {
		if under, err = h.LinkByName(cfg.Underlay); err != nil {
			return nil, fmt.Errorf("underlay interface %s: %w", cfg.Underlay, err)
		}
	} else if under, err = FindUnderlay(h, cfg.LocalIP); err != nil {
		return nil, err
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = under.Attrs().MTU - Overhead
	}
	if mtu > under.Attrs().MTU-Overhead {
		logf("warning: vxlan %s MTU %d is larger than %s's MTU %d minus %d; large packets will be fragmented or dropped",
			cfg.Name, mtu, under.Attrs().Name, under.Attrs().MTU, Overhead)
	}
	want := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: cfg.Name, MTU: mtu, HardwareAddr: cfg.MAC},
		VxlanId:      cfg.VNI,
		VtepDevIndex: under.Attrs().Index,
		SrcAddr:      net.IP(cfg.LocalIP.AsSlice()),
		Port:         cfg.Port,
		Learning:     false,
	}
	link, err := h.LinkByName(cfg.Name)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		link = nil
	case err != nil:
		return nil, fmt.Errorf("vxlan %s: %w", cfg.Name, err)
	}
	if link != nil {
		if why := incompatible(link, want); why != "" {
			logf("deleting %s to recreate it: %s", cfg.Name, why)
			if err := h.LinkDel(link); err != nil {
				return nil, fmt.Errorf("deleting %s: %w", cfg.Name, err)
			}
			link = nil
		}
	}
	if link == nil {
		if err := h.LinkAdd(want); err != nil {
			return nil, fmt.Errorf("creating vxlan %s (vni %d, port %d, local %s on %s): %w", cfg.Name, cfg.VNI, cfg.Port, cfg.LocalIP, under.Attrs().Name, err)
		}
		logf("created %s: vni %d, udp port %d, local %s on %s, mtu %d, mac %s, learning off", cfg.Name, cfg.VNI, cfg.Port, cfg.LocalIP, under.Attrs().Name, mtu, cfg.MAC)
		if link, err = h.LinkByName(cfg.Name); err != nil {
			return nil, fmt.Errorf("vxlan %s after creating it: %w", cfg.Name, err)
		}
	}
	if link.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return nil, fmt.Errorf("%s: setting MTU %d: %w", cfg.Name, mtu, err)
		}
		logf("%s: mtu %d -> %d", cfg.Name, link.Attrs().MTU, mtu)
	}
	if cfg.MAC != nil && link.Attrs().HardwareAddr.String() != cfg.MAC.String() {
		if err := setMAC(h, link, cfg.MAC); err != nil {
			return nil, fmt.Errorf("%s: setting MAC %s: %w", cfg.Name, cfg.MAC, err)
		}
		logf("%s: mac %s -> %s", cfg.Name, link.Attrs().HardwareAddr, cfg.MAC)
	}
	if err := ensureAddress(h, link, cfg.Address, logf); err != nil {
		return nil, err
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("%s: set up: %w", cfg.Name, err)
		}
		logf("%s: up", cfg.Name)
	}
	l, err := h.LinkByName(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("vxlan %s: %w", cfg.Name, err)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return nil, fmt.Errorf("%s is a %s device, not vxlan", cfg.Name, l.Type())
	}
	return &Device{h: h, ns: opts.NS, link: vx, underlay: under, logf: logf}, nil
}

// incompatible says why an existing link cannot be kept as want ("" if it can).
func incompatible(link netlink.Link, want *netlink.Vxlan) string {
	vx, ok := link.(*netlink.Vxlan)
	if !ok {
		return fmt.Sprintf("it is a %s device, not vxlan", link.Type())
	}
	switch {
	case vx.VxlanId != want.VxlanId:
		return fmt.Sprintf("vni %d, want %d", vx.VxlanId, want.VxlanId)
	case vx.Port != want.Port:
		return fmt.Sprintf("udp port %d, want %d", vx.Port, want.Port)
	case !vx.SrcAddr.Equal(want.SrcAddr):
		return fmt.Sprintf("local address %s, want %s", vx.SrcAddr, want.SrcAddr)
	case vx.VtepDevIndex != want.VtepDevIndex:
		return fmt.Sprintf("underlay interface index %d, want %d", vx.VtepDevIndex, want.VtepDevIndex)
	case vx.Learning:
		return "learning is on"
	}
	return ""
}

func setMAC(h *netlink.Handle, link netlink.Link, mac net.HardwareAddr) error {
	err := h.LinkSetHardwareAddr(link, mac)
	if !errors.Is(err, syscall.EBUSY) {
		return err
	}
	// Some kernels refuse a MAC change on a running device.
	if err := h.LinkSetDown(link); err != nil {
		return err
	}
	if err := h.LinkSetHardwareAddr(link, mac); err != nil {
		return err
	}
	return h.LinkSetUp(link)
}

func ensureAddress(h *netlink.Handle, link netlink.Link, want netip.Prefix, logf func(string, ...any)) error {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("%s: listing addresses: %w", link.Attrs().Name, err)
	}
	have := false
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		if ok && p == want {
			have = true
			continue
		}
		// A previous subnet of this node (the lease expired and another was
		// acquired): its address would answer for someone else's range.
		if err := h.AddrDel(link, &a); err != nil {
			return fmt.Errorf("%s: removing old address %s: %w", link.Attrs().Name, a.IPNet, err)
		}
		logf("%s: removed address %s", link.Attrs().Name, a.IPNet)
	}
	if !have {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(want.Addr().AsSlice()), Mask: net.CIDRMask(32, 32)}}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("%s: adding address %s: %w", link.Attrs().Name, want, err)
		}
		logf("%s: added address %s", link.Attrs().Name, want)
	}
	return nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// Name is the device's name.
func (d *Device) Name() string { return d.link.Name }

// MTU is the device's MTU.
func (d *Device) MTU() int { return d.link.MTU }

// MAC is the device's VTEP MAC.
func (d *Device) MAC() net.HardwareAddr { return d.link.HardwareAddr }

// Index is the device's interface index.
func (d *Device) Index() int { return d.link.Index }

// Underlay is the interface VXLAN packets leave through.
func (d *Device) Underlay() netlink.Link { return d.underlay }

// NS is the namespace the device lives in (closed: the caller's).
func (d *Device) NS() netns.NsHandle { return d.ns }

// Delete removes the device called name; the kernel drops its routes, neighbour
// and FDB entries with it. A missing device is not an error (false).
func Delete(h *netlink.Handle, name string) (bool, error) {
	link, err := h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	if err := h.LinkDel(link); err != nil {
		return false, fmt.Errorf("deleting %s: %w", name, err)
	}
	return true, nil
}

// retryDump repeats a netlink dump the kernel interrupted (the table changed
// while it was being read), which netlink reports as ErrDumpInterrupted together
// with partial results.
func retryDump[T any](f func() ([]T, error)) ([]T, error) {
	var out []T
	var err error
	for i := 0; i < 10; i++ {
		out, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return out, err
}
