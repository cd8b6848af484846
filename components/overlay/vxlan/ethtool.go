package vxlan

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The legacy ethtool commands for TX checksumming. The kernel maps them onto the
// whole NETIF_F_CSUM_MASK feature set (tx-checksum-ip-generic and friends), which
// is what `ethtool -K dev tx off` changes too, and they exist on every kernel
// kubeforge supports (CentOS 7's 3.10 included).
const (
	siocETHTOOL    = 0x8946
	ethtoolGTXCSUM = 0x00000016
	ethtoolSTXCSUM = 0x00000017
)

type ethtoolValue struct {
	cmd  uint32
	data uint32
}

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte // the rest of struct ifreq's union
}

// TxChecksum reports whether TX checksum offload is on for the device.
func (d *Device) TxChecksum() (bool, error) {
	v := ethtoolValue{cmd: ethtoolGTXCSUM}
	if err := ethtoolIoctl(d.ns, d.link.Name, &v); err != nil {
		return false, err
	}
	return v.data != 0, nil
}

// SetTxChecksum turns TX checksum offload on or off.
func (d *Device) SetTxChecksum(on bool) error {
	v := ethtoolValue{cmd: ethtoolSTXCSUM}
	if on {
		v.data = 1
	}
	return ethtoolIoctl(d.ns, d.link.Name, &v)
}

func ethtoolIoctl(ns netns.NsHandle, dev string, v *ethtoolValue) error {
	var fd int
	err := InNetns(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("ethtool %s: socket: %w", dev, err)
	}
	defer unix.Close(fd)
	var ifr ifreqData
	copy(ifr.name[:unix.IFNAMSIZ-1], dev)
	ifr.data = unsafe.Pointer(v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(v)
	if errno != 0 {
		return fmt.Errorf("ethtool %s (cmd %#x): %w", dev, v.cmd, errno)
	}
	return nil
}

// InNetns runs fn on an OS thread that is in ns; with a closed ns it just runs
// fn. File descriptors fn opens (sockets, /proc/sys/net files) stay bound to ns.
func InNetns(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns: %w", err)
	}
	defer func() {
		// A thread that cannot go back stays locked, so the runtime retires it
		// with this goroutine instead of reusing it in the wrong namespace.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}

// EnsureIPv4Forwarding turns net.ipv4.ip_forward on in ns; it reports whether it
// was off. Pod traffic crosses the node from cni0 to the VXLAN device and back,
// which the kernel only does with forwarding on.
func EnsureIPv4Forwarding(ns netns.NsHandle) (bool, error) {
	const p = "/proc/sys/net/ipv4/ip_forward"
	changed := false
	err := InNetns(ns, func() error {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		buf := make([]byte, 8)
		n, err := f.Read(buf)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(buf[:n])) == "1" {
			return nil
		}
		if _, err := f.WriteAt([]byte("1\n"), 0); err != nil {
			return err
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("%s: %w", p, err)
	}
	return changed, nil
}
