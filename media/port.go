package media

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
)

// Default RTP port range used when a [PortRange] is the zero value.
const (
	DefaultPortMin = 10000
	DefaultPortMax = 20000
)

// ErrNoFreePort is returned by [ListenRTP] when every even port of the range is in use.
var ErrNoFreePort = errors.New("media: no free rtp port in range")

// ErrBadPortRange is returned by [ListenRTP] when the range is invalid or holds no even port.
var ErrBadPortRange = errors.New("media: bad rtp port range")

// PortRange is an inclusive UDP port range for RTP. The zero value means
// [DefaultPortMin]-[DefaultPortMax]. Only the even ports of the range are used: RFC 3550 §11 says RTP
// SHOULD use an even port, and the odd port above it is left for RTCP.
type PortRange struct{ Min, Max int }

// resolve returns the effective range: the default for the zero value, an error when it is invalid.
func (r PortRange) resolve() (PortRange, error) {
	if r == (PortRange{}) {
		return PortRange{DefaultPortMin, DefaultPortMax}, nil
	}
	if r.Min < 1 || r.Max > 65535 || r.Min > r.Max {
		return r, fmt.Errorf("%w: %d-%d", ErrBadPortRange, r.Min, r.Max)
	}
	if r.Min == r.Max && r.Min%2 == 1 {
		return r, fmt.Errorf("%w: %d-%d holds no even port", ErrBadPortRange, r.Min, r.Max)
	}
	return r, nil
}

// evenPorts returns the first even port of r and how many even ports r holds.
func (r PortRange) evenPorts() (first, count int) {
	first = r.Min + r.Min%2
	last := r.Max - r.Max%2
	return first, (last-first)/2 + 1
}

// ListenRTP binds one UDP socket on ip for RTP. It starts at a random even port of r (so that
// concurrent calls and restarted processes rarely collide), walks the even ports of the range upwards with
// wrap-around, and skips ports that are in use (EADDRINUSE). When every even port is taken it returns an
// error wrapping [ErrNoFreePort]; any other bind error is returned at once.
//
// If ip is the zero Addr the socket binds every local address. An IPv4-mapped IPv6 address binds the
// IPv4 address. The caller owns the returned connection and closes it.
func ListenRTP(ip netip.Addr, r PortRange) (*net.UDPConn, error) {
	rr, err := r.resolve()
	if err != nil {
		return nil, err
	}
	_, count := rr.evenPorts()
	return listenRTP(ip, rr, rand.IntN(count))
}

// listenRTP is ListenRTP with the start given as an index into the even ports of r (a resolved range),
// so tests can pin it.
func listenRTP(ip netip.Addr, r PortRange, start int) (*net.UDPConn, error) {
	ip = ip.Unmap()
	network := "udp"
	switch {
	case ip.Is4():
		network = "udp4"
	case ip.Is6():
		network = "udp6"
	}
	first, count := r.evenPorts()
	for i := range count {
		port := first + 2*((start+i)%count)
		conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("media: listen rtp on %v: %w", netip.AddrPortFrom(ip, uint16(port)), err)
		}
	}
	return nil, fmt.Errorf("%w: %d-%d on %v", ErrNoFreePort, r.Min, r.Max, ip)
}
