//go:build linux && (amd64 || arm64 || riscv64 || ppc64le || loong64)

package media

import (
	"net"
	"testing"
	"time"
)

// TestBatchReaderArrivalTime: datagrams read in one batch keep the times the kernel received them,
// so a read that comes late does not move their arrival.
func TestBatchReaderArrivalTime(t *testing.T) {
	conn, err := ListenRTP(loopback(), PortRange{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := newBatchReader(conn, 8)
	peer, err := net.DialUDP("udp4", nil, conn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	const gap = 60 * time.Millisecond
	// Linux turns receive timestamps on system-wide with deferred work when the first socket asks: until
	// then datagrams are stamped when read. Nothing signals it, so probe for it (at most 100 times) with
	// datagrams that wait to be read.
	for try := 0; ; try++ {
		if _, err := peer.Write([]byte{9}); err != nil {
			t.Fatal(err)
		}
		// Not a wait for the datagram (loopback has queued it already) but the probe itself: it sits
		// 10 ms unread, so a stamp taken on arrival is 5 ms or more before the read.
		time.Sleep(10 * time.Millisecond)
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := br.read(); err != nil || n != 1 {
			t.Fatalf("warm-up read %d datagrams, %v", n, err)
		}
		if _, _, at := br.packet(0); br.now.Sub(at) >= 5*time.Millisecond {
			break
		}
		if try == 100 {
			t.Fatal("the kernel never stamped a datagram on arrival")
		}
	}
	for i := range 2 {
		if _, err := peer.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(gap) // not a wait for anything: the point of the test is that the read comes late
	}
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := br.read()
	if err != nil || n != 2 {
		t.Fatalf("read %d datagrams, %v", n, err)
	}
	b0, from, at0 := br.packet(0)
	b1, _, at1 := br.packet(1)
	if b0[0] != 0 || b1[0] != 1 || from != peer.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("datagrams %v %v from %v", b0, b1, from)
	}
	if d := at1.Sub(at0); d < gap/2 || d > 3*gap {
		t.Errorf("arrivals %v apart, want about %v", d, gap)
	}
	if late := br.now.Sub(at1); late < gap/2 {
		t.Errorf("the second datagram is stamped %v before the read, want about %v", late, gap)
	}
	if at0.After(br.now) || br.now.Sub(at0) > time.Second {
		t.Errorf("arrival %v, read %v", at0, br.now)
	}
}

func TestRxTimestampGarbage(t *testing.T) {
	for _, oob := range [][]byte{nil, make([]byte, 15), make([]byte, 64), {255, 255, 255, 255, 255, 255, 255, 255, 1, 0, 0, 0, 35, 0, 0, 0}} {
		if _, ok := rxTimestamp(oob); ok {
			t.Errorf("timestamp found in %v", oob)
		}
	}
}

// TestBatchReaderAllocs: reading a batch and taking its datagrams apart allocates nothing.
func TestBatchReaderAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	conn, err := ListenRTP(loopback(), PortRange{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := newBatchReader(conn, 8)
	peer, err := net.DialUDP("udp4", nil, conn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	pkt := rtpBytes(0, 1, 160, 7, false, make([]byte, FrameSize))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := peer.Write(pkt); err != nil {
			t.Fatal(err)
		}
		if n, err := br.read(); err != nil || n != 1 {
			t.Fatalf("read %d, %v", n, err)
		}
		if b, _, _ := br.packet(0); len(b) != len(pkt) {
			t.Fatalf("read %d bytes", len(b))
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per read", allocs)
	}
}
