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
// foreign. It signals the first packet and the last of the frames it expects, so that a test waits for
// them rather than for a while.
type streamCheck struct {
	want    byte
	expect  int64
	frames  atomic.Int64
	foreign atomic.Int64
	seen    atomic.Int64
	first   chan struct{} // closed on the first packet, own or foreign
	all     chan struct{} // closed when expect own frames have come
}

func newStreamCheck(want byte, expect int64) *streamCheck {
	return &streamCheck{want: want, expect: expect, first: make(chan struct{}), all: make(chan struct{})}
}

func (c *streamCheck) onAudio(_ uint8, payload []byte, _ time.Time) {
	if c.seen.Add(1) == 1 {
		close(c.first)
	}
	for _, b := range payload {
		if b != c.want {
			c.foreign.Add(1)
			return
		}
	}
	if c.frames.Add(1) == c.expect {
		close(c.all)
	}
}

// waitClosed waits until every one of chans is closed or ctx is done, and says which.
func waitClosed(ctx context.Context, chans ...chan struct{}) bool {
	for _, c := range chans {
		select {
		case <-c:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// waitFor polls cond every millisecond until it holds, for state that the code under test offers no
// signal for (Mux stats, a lane's table), and fails the test naming what did not happen once timeout
// has passed.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%s: not within %v", what, timeout)
		}
	}
}

// TestMuxStreamsStayApart runs many calls between two Muxes, so that every stream of a lane shares
// its source address with the others and the SSRC alone tells them apart, in both directions. Each
// stream carries frames of its own byte; no receiver may see another's.
func TestMuxStreamsStayApart(t *testing.T) {
	for _, tt := range []struct {
		name     string
		announce bool // the SSRCs are known before the first packet (a=ssrc); else they are latched
		// oneByOne starts each call once both streams of the one before have delivered a packet, so
		// that each latched SSRC is the only new one on its address; else all start at once.
		oneByOne bool
	}{
		{name: "announced ssrc", announce: true},
		{name: "latched ssrc, streams starting one after the other", oneByOne: true},
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
				checks[2*i] = newStreamCheck(byte(2*i), frames)
				checks[2*i+1] = newStreamCheck(byte(2*i+1), frames)
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
				// The receivers are registered before the first packet leaves.
				waitFor(t, 5*time.Second, "the receivers of a call to register", func() bool {
					return registered(a, ra) && registered(b, rb)
				})
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer pa.Close()
					defer pb.Close()
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
					heard, cancelHeard := context.WithTimeout(callCtx, time.Second)
					waitClosed(heard, checks[2*i].all, checks[2*i+1].all)
					cancelHeard()
					stop()
					senders.Wait()
					inner.Wait()
				}()
				if tt.oneByOne {
					started, cancelStarted := context.WithTimeout(ctx, 5*time.Second)
					ok := waitClosed(started, checks[2*i].first, checks[2*i+1].first)
					cancelStarted()
					if !ok {
						t.Errorf("call %d: no packet reached both ends within 5s; no more calls started", i)
						break
					}
				}
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

// registered reports whether r's Run has put it on its lane of m. Registration happens on the Run
// goroutine and signals nothing, so tests poll this with waitFor.
func registered(m *Mux, r *Receiver) bool {
	for _, l := range m.lanes {
		l.rmu.Lock()
		found := false
		for _, x := range l.byAddr[r.remote] {
			found = found || x == r
		}
		l.rmu.Unlock()
		if found {
			return true
		}
	}
	return false
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
	waitFor(t, 5*time.Second, "the receiver to register", func() bool { return m.Stats().Receivers == 1 })
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
	waitFor(t, 5*time.Second, "the sender and the receiver to join their lanes", func() bool {
		st := m.Stats()
		return st.Senders+st.Receivers == 2
	})
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
	// got counts the packets delivered; onAudio signals reached when the count comes to target.
	var got, target atomic.Int64
	reached := make(chan struct{}, 1)
	onAudio := func(uint8, []byte, time.Time) {
		if got.Add(1) == target.Load() {
			select {
			case reached <- struct{}{}:
			default:
			}
		}
	}
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
	waitFor(b, 5*time.Second, "the receivers to register", func() bool { return rx.Stats().Receivers == streams })
	slow := time.NewTimer(time.Hour)
	slow.Stop()
	b.ReportAllocs()
	b.ResetTimer()
	tick := start
	sent := 0
	for sent < b.N {
		// Keep the receiver's queue from overflowing: wait for most of what is sent, or a second.
		// The target is set before the round, so the count cannot pass it unseen.
		want := int64(sent+streams) * 9 / 10
		target.Store(want)
		for ph := range lanePhases {
			lt.round(ph, tick)
		}
		tick = tick.Add(FrameDuration)
		sent += streams
		slow.Reset(time.Second)
	wait:
		for got.Load() < want {
			select {
			case <-reached: // maybe left over from an earlier round that timed out: check again
			case <-slow.C:
				break wait
			}
		}
		slow.Stop()
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
		// Run took the Sender off the grid before it returned, so the lane is idle and every packet
		// of the call is already queued at dst: read the rest, counted by the Sender.
		if st := m.Stats(); st.Senders != 0 {
			t.Fatalf("call %d: %d senders on the lane after Run returned", call, st.Senders)
		}
		for i := range s.Stats().Packets - 25 {
			if _, err := dst.Read(buf); err != nil {
				t.Fatalf("call %d: packet %d of the rest: %v", call, 25+i, err)
			}
		}
		if call == 0 {
			// Not a wait for anything: the idle spell under test. Real time passes with no Sender on
			// the lane, longer than maxBehind, so a lane that resumed its old grid would be far off
			// the present.
			time.Sleep(300 * time.Millisecond)
		}
	}
}
