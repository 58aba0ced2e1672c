package media

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

// loopback is 127.0.0.1, where every socket of these tests lives.
func loopback() netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, 1}) }

// freeEvenRange finds n consecutive even ports on 127.0.0.1 that are all free right now, and returns
// the inclusive range holding them.
func freeEvenRange(t *testing.T, n int) PortRange {
	t.Helper()
	for base := 41000; base < 60000; base += 2 * n {
		free := true
		for i := range n {
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback(), uint16(base+2*i))))
			if err != nil {
				free = false
				break
			}
			c.Close()
		}
		if free {
			return PortRange{Min: base, Max: base + 2*(n-1)}
		}
	}
	t.Fatal("no free port range")
	return PortRange{}
}

func occupy(t *testing.T, port int) {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback(), uint16(port))))
	if err != nil {
		t.Fatalf("occupy %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
}

func port(c *net.UDPConn) int { return int(c.LocalAddr().(*net.UDPAddr).Port) }

func TestListenRTPDefaultRange(t *testing.T) {
	c, err := ListenRTP(loopback(), PortRange{})
	if err != nil {
		t.Fatalf("ListenRTP: %v", err)
	}
	defer c.Close()
	if p := port(c); p < DefaultPortMin || p > DefaultPortMax || p%2 != 0 {
		t.Errorf("port %d is not an even port of %d-%d", p, DefaultPortMin, DefaultPortMax)
	}
}

func TestListenRTPWalk(t *testing.T) {
	tests := []struct {
		name     string
		start    int   // index of the first even port tried
		occupied []int // indices of even ports already bound
		want     int   // index of the port expected, -1 for ErrNoFreePort
	}{
		{name: "start port free", start: 1, want: 1},
		{name: "skips a port in use", start: 0, occupied: []int{0}, want: 1},
		{name: "wraps around past the top", start: 2, occupied: []int{2}, want: 0},
		{name: "wraps to the last free port", start: 1, occupied: []int{0, 1}, want: 2},
		{name: "range exhausted", start: 1, occupied: []int{0, 1, 2}, want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := freeEvenRange(t, 3)
			for _, i := range tt.occupied {
				occupy(t, r.Min+2*i)
			}
			c, err := listenRTP(loopback(), r, tt.start)
			if tt.want < 0 {
				if !errors.Is(err, ErrNoFreePort) {
					t.Fatalf("listenRTP error = %v, want ErrNoFreePort", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("listenRTP: %v", err)
			}
			defer c.Close()
			if got, want := port(c), r.Min+2*tt.want; got != want {
				t.Errorf("bound port %d, want %d", got, want)
			}
		})
	}
}

func TestListenRTPOddBounds(t *testing.T) {
	r := freeEvenRange(t, 2)
	c, err := ListenRTP(loopback(), PortRange{Min: r.Min - 1, Max: r.Min + 1})
	if err != nil {
		t.Fatalf("ListenRTP: %v", err)
	}
	defer c.Close()
	if got := port(c); got != r.Min {
		t.Errorf("bound port %d, want the only even port %d", got, r.Min)
	}
}

func TestListenRTPBadRange(t *testing.T) {
	tests := []struct {
		name string
		r    PortRange
	}{
		{"min above max", PortRange{Min: 20000, Max: 10000}},
		{"max above 65535", PortRange{Min: 10000, Max: 70000}},
		{"min 0 with max set", PortRange{Min: 0, Max: 100}},
		{"single odd port", PortRange{Min: 10001, Max: 10001}},
		{"negative", PortRange{Min: -4, Max: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ListenRTP(loopback(), tt.r)
			if err == nil {
				c.Close()
			}
			if !errors.Is(err, ErrBadPortRange) {
				t.Errorf("ListenRTP(%+v) error = %v, want ErrBadPortRange", tt.r, err)
			}
		})
	}
}

func TestListenRTPUnavailableAddress(t *testing.T) {
	// 192.0.2.1 (TEST-NET-1) is not a local address: the bind fails with something other than
	// EADDRINUSE, which must come back at once rather than walk the range.
	_, err := ListenRTP(netip.MustParseAddr("192.0.2.1"), PortRange{Min: 40000, Max: 40010})
	if err == nil || errors.Is(err, ErrNoFreePort) {
		t.Errorf("ListenRTP on a foreign address error = %v, want the bind error", err)
	}
}
