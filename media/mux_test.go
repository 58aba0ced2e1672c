package media

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// newTestMux starts a Mux on 127.0.0.1 that the test closes.
func newTestMux(t testing.TB, lanes int) *Mux {
	t.Helper()
	m, err := NewMux(MuxConfig{IP: loopback(), Lanes: lanes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// frameOf is a frame whose every byte is v, so a receiver can tell whose stream a packet is from.
func frameOf(v byte) []byte { return bytes.Repeat([]byte{v}, FrameSize) }

// streamCheck is what one receiving end saw: packets whose payload was another stream's count as
// foreign.
type streamCheck struct {
	want    byte
	frames  atomic.Int64
	foreign atomic.Int64
}

func (c *streamCheck) onAudio(_ uint8, payload []byte, _ time.Time) {
	for _, b := range payload {
		if b != c.want {
			c.foreign.Add(1)
			return
		}
	}
	c.frames.Add(1)
}

// TestMuxStreamsStayApart runs many calls between two Muxes, so that every stream of a lane shares
// its source address with the others and the SSRC alone tells them apart, in both directions. Each
// stream carries frames of its own byte; no receiver may see another's.
func TestMuxStreamsStayApart(t *testing.T) {
	for _, tt := range []struct {
		name     string
		announce bool // the SSRCs are known before the first packet (a=ssrc); else they are latched
		stagger  time.Duration
	}{
		{name: "announced ssrc", announce: true},
		{name: "latched ssrc, streams starting one after the other", stagger: 30 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const calls = 40
			const frames = 25 // half a second of audio per stream
			a, b := newTestMux(t, 2), newTestMux(t, 2)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			var wg sync.WaitGroup
			checks := make([]*streamCheck, 2*calls)
			errs := make(chan error, 4*calls)
			for i := range calls {
				pa, err := a.Open()
				if err != nil {
					t.Fatal(err)
				}
				pb, err := b.Open()
				if err != nil {
					t.Fatal(err)
				}
				// Two streams per call: a→b carries byte 2i, b→a byte 2i+1.
				ssrcA, ssrcB := uint32(1000+2*i), uint32(1001+2*i)
				recvSSRC := func(s uint32) uint32 {
					if tt.announce {
						return s
					}
					return 0
				}
				checks[2*i] = &streamCheck{want: byte(2 * i)}
				checks[2*i+1] = &streamCheck{want: byte(2*i + 1)}
				sa := pa.NewSender(pb.Addr(), SenderConfig{SSRC: ssrcA})
				sb := pb.NewSender(pa.Addr(), SenderConfig{SSRC: ssrcB})
				rb := pb.NewReceiver(ReceiverConfig{Remote: pa.Addr(), SSRC: recvSSRC(ssrcA), OnAudio: checks[2*i].onAudio})
				ra := pa.NewReceiver(ReceiverConfig{Remote: pb.Addr(), SSRC: recvSSRC(ssrcB), OnAudio: checks[2*i+1].onAudio})

				callCtx, stop := context.WithCancel(ctx)
				var inner sync.WaitGroup
				for _, run := range []func(context.Context) error{ra.Run, rb.Run} {
					inner.Add(1)
					go func() {
						defer inner.Done()
						if err := run(callCtx); !errors.Is(err, context.Canceled) {
							errs <- err
						}
					}()
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer pa.Close()
					defer pb.Close()
					// The receivers are registered before the first packet leaves.
					waitRegistered(t, a, ra)
					waitRegistered(t, b, rb)
					var senders, played sync.WaitGroup
					for _, s := range []struct {
						s *Sender
						v byte
					}{{sa, byte(2 * i)}, {sb, byte(2*i + 1)}} {
						utt := make([][]byte, frames)
						for k := range utt {
							utt[k] = frameOf(s.v)
						}
						done := s.s.Play(utt)
						senders.Add(1)
						go func() {
							defer senders.Done()
							if err := s.s.Run(callCtx); !errors.Is(err, context.Canceled) {
								errs <- err
							}
						}()
						played.Add(1)
						go func() {
							defer played.Done()
							<-done
						}()
					}
					// Both utterances were written: end the call once both ends have received them
					// (or a second later, and the counts below fail).
					played.Wait()
					for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) &&
						(checks[2*i].frames.Load() < frames || checks[2*i+1].frames.Load() < frames); {
						time.Sleep(time.Millisecond)
					}
					stop()
					senders.Wait()
					inner.Wait()
				}()
				time.Sleep(tt.stagger)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("run: %v", err)
			}
			for i, c := range checks {
				if got := c.frames.Load(); got != frames || c.foreign.Load() != 0 {
					t.Errorf("stream %d: %d own frames (want %d), %d foreign", i, got, frames, c.foreign.Load())
				}
			}
			for _, m := range []*Mux{a, b} {
				st := m.Stats()
				if st.Unmatched != 0 || st.WriteErrors != 0 || st.Senders != 0 || st.Receivers != 0 {
					t.Errorf("mux stats after the calls: %+v", st)
				}
				if st.WriteCalls >= st.Packets {
					t.Errorf("no batching: %d packets in %d sendmmsg calls", st.Packets, st.WriteCalls)
				}
			}
		})
	}
}

// waitRegistered waits until r's Run has put it on its lane of m: a test helper that polls, since
// registration happens on the Run goroutine.
func waitRegistered(t *testing.T, m *Mux, r *Receiver) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		for _, l := range m.lanes {
			l.rmu.Lock()
			found := false
			for _, x := range l.byAddr[r.remote] {
				found = found || x == r
			}
			l.rmu.Unlock()
			if found {
				return
			}
		}
	}
	t.Errorf("receiver did not register")
}

// TestMuxSenderPacing sends from a Mux lane to a socket of its own and checks the stream as a
// far end sees it: the RTP header rules of Sender.Run, a packet per 20 ms, the utterance intact.
func TestMuxSenderPacing(t *testing.T) {
	m := newTestMux(t, 1)
	dst, err := ListenRTP(loopback(), PortRange{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	p, err := m.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s := p.NewSender(dst.LocalAddr().(*net.UDPAddr).AddrPort(), SenderConfig{PayloadType: 8, SSRC: 77})
	utt := make([][]byte, 10)
	for i := range utt {
		utt[i] = frameOf(byte(i + 1))
	}
	done := s.Play(utt)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()

	var pkts []rtp.Packet
	var at []time.Time
	buf := make([]byte, 1500)
	_ = dst.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(pkts) < len(utt) {
		n, err := dst.Read(buf)
		if err != nil {
			t.Fatalf("after %d packets: %v", len(pkts), err)
		}
		var pkt rtp.Packet
		if err := pkt.Unmarshal(append([]byte(nil), buf[:n]...)); err != nil {
			t.Fatal(err)
		}
		pkts, at = append(pkts, pkt), append(at, time.Now())
	}
	<-done
	cancel()
	if err := <-ran; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
	for i, pkt := range pkts {
		if pkt.SSRC != 77 || pkt.PayloadType != 8 || pkt.Marker != (i == 0) || !bytes.Equal(pkt.Payload, utt[i]) {
			t.Errorf("packet %d: ssrc %d pt %d marker %v payload[0] %d", i, pkt.SSRC, pkt.PayloadType, pkt.Marker, pkt.Payload[0])
		}
		if i > 0 {
			if pkt.SequenceNumber != pkts[i-1].SequenceNumber+1 || pkt.Timestamp != pkts[i-1].Timestamp+160 {
				t.Errorf("packet %d: seq %d ts %d after seq %d ts %d", i, pkt.SequenceNumber, pkt.Timestamp,
					pkts[i-1].SequenceNumber, pkts[i-1].Timestamp)
			}
		}
	}
	// Nine intervals of 20 ms on absolute deadlines: the span is 180 ms give or take the scheduler.
	if span := at[len(at)-1].Sub(at[0]); span < 150*time.Millisecond || span > 400*time.Millisecond {
		t.Errorf("10 packets spanned %v, want about 180ms", span)
	}
	if st := s.Stats(); st.Packets != 10 || st.FramesPlayed != 10 {
		t.Errorf("stats %+v", st)
	}
}

// TestMuxReceiverChecks covers what the read loop does with strangers and silence: datagrams from an
// address no Receiver expects are unmatched, garbage from the expected address is malformed, DTMF from
// it arrives, and a Receiver with nothing from its remote ends with ErrInactive.
func TestMuxReceiverChecks(t *testing.T) {
	m := newTestMux(t, 1)
	p, err := m.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()

	r := p.NewReceiver(ReceiverConfig{
		Remote:            peer.LocalAddr().(*net.UDPAddr).AddrPort(),
		DTMFPayloadTypes:  []uint8{101},
		InactivityTimeout: 400 * time.Millisecond,
	})
	ran := make(chan error, 1)
	go func() { ran <- r.Run(context.Background()) }()
	for m.Stats().Receivers == 0 {
		time.Sleep(time.Millisecond)
	}
	to := net.UDPAddrFromAddrPort(p.Addr())
	send := func(c *net.UDPConn, b []byte) {
		if _, err := c.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	send(stranger, rtpBytes(101, 1, 160, 5, true, eventPayload(1, false, 160)))
	send(peer, []byte("not rtp at all"))
	for i, end := range []bool{false, false, true, true, true} {
		send(peer, rtpBytes(101, uint16(10+i), 800, 6, i == 0, eventPayload(7, end, uint16(160*(i+1)))))
	}
	select {
	case d := <-r.Digits():
		if d.Digit != '7' || d.Source != SourceRFC4733 {
			t.Errorf("digit %+v", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no digit")
	}
	start := time.Now()
	select {
	case err := <-ran:
		if !errors.Is(err, ErrInactive) {
			t.Errorf("Run = %v, want ErrInactive", err)
		}
		if waited := time.Since(start); waited > 2*time.Second {
			t.Errorf("inactivity took %v", waited)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end on inactivity")
	}
	st := r.Stats()
	if st.Malformed != 1 || st.Digits != 1 || st.Packets != 5 {
		t.Errorf("receiver stats %+v", st)
	}
	if ms := m.Stats(); ms.Unmatched != 1 || ms.Receivers != 0 {
		t.Errorf("mux stats %+v", ms)
	}
}

// TestMuxClose: Runs on a closed Mux end with ErrMuxClosed, and Open fails.
func TestMuxClose(t *testing.T) {
	m, err := NewMux(MuxConfig{IP: loopback(), Lanes: 2})
	if err != nil {
		t.Fatal(err)
	}
	p, err := m.Open()
	if err != nil {
		t.Fatal(err)
	}
	remote := netip.MustParseAddrPort("127.0.0.1:9")
	s := p.NewSender(remote, SenderConfig{})
	r := p.NewReceiver(ReceiverConfig{Remote: remote})
	errs := make(chan error, 2)
	go func() { errs <- s.Run(context.Background()) }()
	go func() { errs <- r.Run(context.Background()) }()
	for st := m.Stats(); st.Senders+st.Receivers < 2; st = m.Stats() {
		time.Sleep(time.Millisecond)
	}
	m.Close()
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrMuxClosed) {
				t.Errorf("Run = %v, want ErrMuxClosed", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("Run did not end on Close")
		}
	}
	if _, err := m.Open(); !errors.Is(err, ErrMuxClosed) {
		t.Errorf("Open after Close = %v", err)
	}
	if _, err := NewMux(MuxConfig{}); err == nil {
		t.Error("NewMux without an ip succeeded")
	}
}

// TestMuxDispatchAllocs: handing a datagram to its Receiver, by address or by SSRC, allocates nothing.
func TestMuxDispatchAllocs(t *testing.T) {
	l := &lane{byAddr: make(map[netip.AddrPort][]*Receiver)}
	from := remoteAddr()
	for i := range 3 {
		r := NewReceiver(nil, ReceiverConfig{Remote: from, SSRC: uint32(10 + i)})
		l.byAddr[from] = append(l.byAddr[from], r)
	}
	pkt := rtpBytes(0, 1, 160, 12, false, make([]byte, FrameSize))
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() { l.dispatch(pkt, from, now) }); n != 0 {
		t.Errorf("dispatch allocates %v per packet", n)
	}
	if got := l.byAddr[from][2].Stats().Packets; got == 0 {
		t.Error("the packet did not reach the receiver of its ssrc")
	}
}

// TestMuxRoundAllocs: a pacing round that builds and writes a batch allocates nothing.
func TestMuxRoundAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool, which x/net's WriteBatch uses, drop items")
	}
	m := newTestMux(t, 1)
	l := m.lanes[0]
	sink, err := ListenRTP(loopback(), PortRange{})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	dst := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	start := time.Now()
	// Senders put on the grid by hand, so the lane's own loop (which runs only with nsend > 0) stays idle.
	for i := range 100 {
		s := newSender(nil, dst, SenderConfig{Silence: frameOf(0xff)})
		l.phases[i%lanePhases] = append(l.phases[i%lanePhases], &laneSender{s: s, dst: net.UDPAddrFromAddrPort(dst), start: start})
	}
	tick := start
	n := testing.AllocsPerRun(20, func() {
		l.round(0, tick)
		tick = tick.Add(FrameDuration)
	})
	if n != 0 {
		t.Errorf("a round of 25 senders allocates %v", n)
	}
	if l.packets.Load() == 0 {
		t.Error("nothing was sent")
	}
}

// BenchmarkMuxPacket measures one packet through a lane in dense mode: built and written in a batch
// by one Mux, read in a batch and handed to its Receiver by another, over loopback.
func BenchmarkMuxPacket(b *testing.B) {
	const streams = 200
	tx, rx := newTestMux(b, 1), newTestMux(b, 1)
	ptx, _ := tx.Open()
	prx, _ := rx.Open()
	var got atomic.Int64
	onAudio := func(uint8, []byte, time.Time) { got.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lt := tx.lanes[0]
	start := time.Now()
	for i := range streams {
		s := ptx.NewSender(prx.Addr(), SenderConfig{Silence: frameOf(0xff), SSRC: uint32(i + 1)})
		r := prx.NewReceiver(ReceiverConfig{Remote: ptx.Addr(), SSRC: uint32(i + 1), OnAudio: onAudio})
		go r.Run(ctx)
		lt.phases[i%lanePhases] = append(lt.phases[i%lanePhases], &laneSender{s: s, dst: net.UDPAddrFromAddrPort(prx.Addr()), start: start})
	}
	for rx.Stats().Receivers < streams {
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	tick := start
	sent := 0
	for sent < b.N {
		for ph := range lanePhases {
			lt.round(ph, tick)
		}
		tick = tick.Add(FrameDuration)
		sent += streams
		// Keep the receiver's queue from overflowing: wait for most of what was sent.
		for deadline := time.Now().Add(time.Second); got.Load() < int64(sent)*9/10 && time.Now().Before(deadline); {
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(got.Load())/float64(sent), "delivered/sent")
}

// TestMuxLaneIdleThenBusy: a lane that went idle paces the next call from the present, not from where
// its grid stopped.
func TestMuxLaneIdleThenBusy(t *testing.T) {
	m := newTestMux(t, 1)
	dst, err := ListenRTP(loopback(), PortRange{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	to := dst.LocalAddr().(*net.UDPAddr).AddrPort()
	buf := make([]byte, 1500)
	for call := range 2 {
		p, err := m.Open()
		if err != nil {
			t.Fatal(err)
		}
		s := p.NewSender(to, SenderConfig{Silence: frameOf(0xff)})
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		start := time.Now()
		go func() { ran <- s.Run(ctx) }()
		_ = dst.SetReadDeadline(time.Now().Add(2 * time.Second))
		for i := range 25 {
			if _, err := dst.Read(buf); err != nil {
				t.Fatalf("call %d: %v", call, err)
			}
			// The first packet leaves at the lane's next tick of the call's phase, within 20 ms.
			if first := time.Since(start); i == 0 && first > 100*time.Millisecond {
				t.Errorf("call %d: the first packet came %v after Run", call, first)
			}
		}
		cancel()
		<-ran
		p.Close()
		time.Sleep(300 * time.Millisecond) // the lane goes idle, and its grid stops
		for {
			_ = dst.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := dst.Read(buf); err != nil {
				break // drained
			}
		}
	}
}
