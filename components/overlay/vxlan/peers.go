package vxlan

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func ipOf(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

func (d *Device) neigh(p Peer) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    d.link.Index,
		Family:       unix.AF_INET,
		State:        netlink.NUD_PERMANENT,
		Type:         unix.RTN_UNICAST,
		IP:           ipOf(p.VTEP()),
		HardwareAddr: p.MAC,
	}
}

func (d *Device) fdb(p Peer) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    d.link.Index,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_PERMANENT,
		Flags:        netlink.NTF_SELF,
		IP:           ipOf(p.PublicIP),
		HardwareAddr: p.MAC,
	}
}

func (d *Device) route(p Peer) *netlink.Route {
	return &netlink.Route{
		LinkIndex: d.link.Index,
		Scope:     netlink.SCOPE_UNIVERSE,
		Dst:       &net.IPNet{IP: ipOf(p.Subnet.Addr()), Mask: net.CIDRMask(p.Subnet.Bits(), 32)},
		Gw:        ipOf(p.VTEP()),
		Flags:     int(netlink.FLAG_ONLINK),
	}
}

// Add programs the three entries of p. Replacing is idempotent, so an update of
// a peer (new MAC or host address) is an Add too; the caller removes what the old
// version had that the new one does not (RemoveStale).
func (d *Device) Add(p Peer) error {
	if !p.Subnet.Addr().Is4() || !p.PublicIP.Is4() || len(p.MAC) != 6 {
		return fmt.Errorf("peer %s: needs an IPv4 subnet, an IPv4 host address and a MAC", p)
	}
	if err := d.h.NeighSet(d.neigh(p)); err != nil {
		return fmt.Errorf("%s: neigh %s lladdr %s: %w", d.link.Name, p.VTEP(), p.MAC, err)
	}
	if err := d.h.NeighSet(d.fdb(p)); err != nil {
		return fmt.Errorf("%s: fdb %s dst %s: %w", d.link.Name, p.MAC, p.PublicIP, err)
	}
	if err := d.h.RouteReplace(d.route(p)); err != nil {
		return fmt.Errorf("%s: route %s via %s onlink: %w", d.link.Name, p.Subnet, p.VTEP(), err)
	}
	return nil
}

// Remove deletes p's entries; entries already gone are fine.
func (d *Device) Remove(p Peer) error {
	var errs []error
	if err := d.h.RouteDel(d.route(p)); err != nil && !gone(err) {
		errs = append(errs, fmt.Errorf("%s: deleting route %s: %w", d.link.Name, p.Subnet, err))
	}
	if err := d.h.NeighDel(d.neigh(p)); err != nil && !gone(err) {
		errs = append(errs, fmt.Errorf("%s: deleting neigh %s: %w", d.link.Name, p.VTEP(), err))
	}
	// Another peer may have taken over the MAC (a node re-registered under a new
	// name keeps its derived MAC only if the name is the same, so this is rare);
	// the FDB entry is keyed by MAC, so only delete it if it still points at p.
	if err := d.h.NeighDel(d.fdb(p)); err != nil && !gone(err) {
		errs = append(errs, fmt.Errorf("%s: deleting fdb %s: %w", d.link.Name, p.MAC, err))
	}
	return errors.Join(errs...)
}

func gone(err error) bool {
	return errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.EADDRNOTAVAIL)
}

// State is what the kernel holds on the device.
type State struct {
	// Routes maps destination subnet to gateway.
	Routes map[netip.Prefix]netip.Addr
	// Neighs maps a permanent neighbour address to its MAC.
	Neighs map[netip.Addr]string
	// FDB maps a permanent FDB MAC to its destination.
	FDB map[string]netip.Addr
}

// Read returns the device's routes, permanent neighbour and FDB entries.
func (d *Device) Read() (State, error) {
	st := State{Routes: map[netip.Prefix]netip.Addr{}, Neighs: map[netip.Addr]string{}, FDB: map[string]netip.Addr{}}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return d.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: d.link.Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return st, fmt.Errorf("%s: listing routes: %w", d.link.Name, err)
	}
	for _, r := range routes {
		dst, ok := prefixOf(r.Dst)
		if !ok || r.Gw == nil {
			continue
		}
		gw, _ := netip.AddrFromSlice(r.Gw)
		st.Routes[dst] = gw.Unmap()
	}
	neighs, err := retryDump(func() ([]netlink.Neigh, error) { return d.h.NeighList(d.link.Index, unix.AF_INET) })
	if err != nil {
		return st, fmt.Errorf("%s: listing neighbours: %w", d.link.Name, err)
	}
	for _, n := range neighs {
		if n.State&netlink.NUD_PERMANENT == 0 || n.HardwareAddr == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if ok {
			st.Neighs[ip.Unmap()] = n.HardwareAddr.String()
		}
	}
	fdbs, err := retryDump(func() ([]netlink.Neigh, error) { return d.h.NeighList(d.link.Index, unix.AF_BRIDGE) })
	if err != nil {
		return st, fmt.Errorf("%s: listing fdb: %w", d.link.Name, err)
	}
	for _, n := range fdbs {
		if n.LinkIndex != d.link.Index || n.State&netlink.NUD_PERMANENT == 0 || n.HardwareAddr == nil || n.IP == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if ok {
			st.FDB[n.HardwareAddr.String()] = ip.Unmap()
		}
	}
	return st, nil
}

// Programmed returns the peers whose three entries are all present, by subnet.
func (d *Device) Programmed() ([]Peer, error) {
	st, err := d.Read()
	if err != nil {
		return nil, err
	}
	var out []Peer
	for dst, gw := range st.Routes {
		mac, ok := st.Neighs[gw]
		if !ok || gw != dst.Addr() {
			continue
		}
		dstIP, ok := st.FDB[mac]
		if !ok {
			continue
		}
		hw, _ := net.ParseMAC(mac)
		out = append(out, Peer{Subnet: dst, PublicIP: dstIP, MAC: hw})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Subnet.Addr().Less(out[j].Subnet.Addr()) })
	return out, nil
}

// SyncResult counts what Sync changed.
type SyncResult struct {
	Added, Updated, Removed int
	// Unchanged peers were already fully programmed.
	Unchanged int
}

// Sync makes the device hold exactly peers: it removes every route, permanent
// neighbour and FDB entry on the device that belongs to no peer, and programs
// the peers that are missing or differ. Used at start and after any event that
// may have made the agent miss changes (watch compaction, etcd reconnect).
func (d *Device) Sync(peers []Peer) (SyncResult, error) {
	var res SyncResult
	st, err := d.Read()
	if err != nil {
		return res, err
	}
	want := map[netip.Prefix]Peer{}
	wantNeigh := map[netip.Addr]string{}
	wantFDB := map[string]netip.Addr{}
	for _, p := range peers {
		want[p.Subnet] = p
		wantNeigh[p.VTEP()] = p.MAC.String()
		wantFDB[p.MAC.String()] = p.PublicIP
	}
	var errs []error
	// Stale first, routes before the entries they resolve through.
	for dst, gw := range st.Routes {
		if p, ok := want[dst]; ok && gw == p.VTEP() {
			continue
		}
		r := &netlink.Route{LinkIndex: d.link.Index, Dst: &net.IPNet{IP: ipOf(dst.Addr()), Mask: net.CIDRMask(dst.Bits(), 32)}, Gw: ipOf(gw)}
		if err := d.h.RouteDel(r); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("%s: deleting stale route %s via %s: %w", d.link.Name, dst, gw, err))
			continue
		}
		d.logf("%s: removed stale route %s via %s", d.link.Name, dst, gw)
		if _, ok := want[dst]; !ok {
			res.Removed++
		}
	}
	for ip, mac := range st.Neighs {
		if wantNeigh[ip] == mac {
			continue
		}
		hw, _ := net.ParseMAC(mac)
		n := &netlink.Neigh{LinkIndex: d.link.Index, Family: unix.AF_INET, IP: ipOf(ip), HardwareAddr: hw}
		if err := d.h.NeighDel(n); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("%s: deleting stale neigh %s: %w", d.link.Name, ip, err))
			continue
		}
		d.logf("%s: removed stale neigh %s lladdr %s", d.link.Name, ip, mac)
	}
	for mac, dst := range st.FDB {
		if w, ok := wantFDB[mac]; ok && w == dst {
			continue
		}
		hw, _ := net.ParseMAC(mac)
		n := &netlink.Neigh{LinkIndex: d.link.Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, IP: ipOf(dst), HardwareAddr: hw}
		if err := d.h.NeighDel(n); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("%s: deleting stale fdb %s dst %s: %w", d.link.Name, mac, dst, err))
			continue
		}
		d.logf("%s: removed stale fdb %s dst %s", d.link.Name, mac, dst)
	}
	for _, p := range peers {
		complete := st.Routes[p.Subnet] == p.VTEP() && st.Neighs[p.VTEP()] == p.MAC.String() && st.FDB[p.MAC.String()] == p.PublicIP
		if complete {
			res.Unchanged++
			continue
		}
		_, had := st.Routes[p.Subnet]
		if err := d.Add(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if had {
			res.Updated++
			d.logf("%s: updated peer %s", d.link.Name, p)
		} else {
			res.Added++
			d.logf("%s: added peer %s", d.link.Name, p)
		}
	}
	return res, errors.Join(errs...)
}
