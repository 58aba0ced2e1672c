package media

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// sentPacket is one datagram a recordingWriter saw.
type sentPacket struct {
	at  time.Time
	hdr rtp.Header
	pay []byte
	dst netip.AddrPort
}

// recordingWriter is a packetWriter that decodes and keeps every packet, stamped with the fake
// clock's time. After limit packets it cancels the Run under test; err, if set, fails every write.
type recordingWriter struct {
	clock  *fakeClock
	limit  int
	cancel context.CancelFunc
	after  func(n int) // called after the n-th packet (1-based)
	err    error

	mu   sync.Mutex
	pkts []sentPacket
}

func (w *recordingWriter) WriteToUDPAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	var p rtp.Packet
	if err := p.Unmarshal(bytes.Clone(b)); err != nil {
		panic(err)
	}
	w.mu.Lock()
	w.pkts = append(w.pkts, sentPacket{at: w.clock.Now(), hdr: p.Header, pay: p.Payload, dst: dst})
	n := len(w.pkts)
	w.mu.Unlock()
	if w.after != nil {
		w.after(n)
	}
	if n == w.limit && w.cancel != nil {
		w.cancel()
	}
	return len(b), nil
}

func (w *recordingWriter) packets() []sentPacket {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]sentPacket(nil), w.pkts...)
}

// testDst is where the senders under test send (TEST-NET-1; nothing is sent for real).
func testDst() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, 99}), 30000)
}

// frames returns n distinct 160-byte frames: frame i is filled with byte first+i.
func frames(n int, first byte) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = bytes.Repeat([]byte{first + byte(i)}, FrameSize)
	}
	return out
}

func silenceFrame() []byte { return bytes.Repeat([]byte{0xff}, FrameSize) } // PCMU silence

// runSender runs s synchronously on the test goroutine until the writer has seen limit packets, or
// until the fake clock has slept maxSleeps times (for streams with gaps).
func runSender(t *testing.T, s *Sender, w *recordingWriter, clock *fakeClock, limit, maxSleeps int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.limit, w.cancel = limit, cancel
	if maxSleeps > 0 {
		prev := clock.onSleep
		clock.onSleep = func(i int) {
			if prev != nil {
				prev(i)
			}
			if i+1 >= maxSleeps {
				cancel()
			}
		}
	}
	if err := s.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}

func TestSenderPacing(t *testing.T) {
	const n = 40
	tests := []struct {
		name     string
		lag      func(i int) time.Duration
		wantLate uint64
	}{
		{name: "on time", lag: func(int) time.Duration { return 0 }},
		{name: "every wake 7ms late", lag: func(int) time.Duration { return 7 * time.Millisecond }, wantLate: n},
		{name: "every wake 19ms late", lag: func(int) time.Duration { return 19 * time.Millisecond }, wantLate: n},
		{
			name: "one wake 75ms late then catch up",
			lag: func(i int) time.Duration {
				if i == 10 {
					return 75 * time.Millisecond
				}
				return 0
			},
			// Slot 10 leaves 75 ms late; 11, 12 and 13 are already due and follow at once (55, 35 and
			// 15 ms late); slot 14 is due after that instant and leaves on time.
			wantLate: 4,
		},
		{
			name: "jittery wakes",
			lag: func(i int) time.Duration {
				return time.Duration(i%5) * 3 * time.Millisecond
			},
			wantLate: 24, // lags of 6, 9 and 12 ms exceed the 5 ms threshold: 3 slots in 5
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			clock.lag = tt.lag
			w := &recordingWriter{clock: clock}
			s := newSender(w, testDst(), SenderConfig{PayloadType: 8, Silence: silenceFrame(), Clock: clock})
			start := clock.now
			runSender(t, s, w, clock, n, 0)

			for i, d := range clock.deadlines() {
				if want := start.Add(time.Duration(i) * FrameDuration); !d.Equal(want) {
					t.Fatalf("sleep %d until %v, want start+%v (drift)", i, d.Sub(start), want.Sub(start))
				}
			}
			pkts := w.packets()
			if len(pkts) != n {
				t.Fatalf("sent %d packets, want %d", len(pkts), n)
			}
			var late uint64
			for i, p := range pkts {
				due := start.Add(time.Duration(i) * FrameDuration)
				if p.at.Before(due) {
					t.Errorf("packet %d sent %v before its deadline", i, due.Sub(p.at))
				}
				if p.at.Sub(due) > lateThreshold {
					late++
				}
				if p.hdr.Version != 2 || p.hdr.PayloadType != 8 || p.hdr.SSRC != pkts[0].hdr.SSRC || p.dst != testDst() {
					t.Errorf("packet %d header %+v to %v", i, p.hdr, p.dst)
				}
				if got, want := p.hdr.Timestamp-pkts[0].hdr.Timestamp, uint32(i)*160; got != want {
					t.Errorf("packet %d timestamp +%d, want +%d", i, got, want)
				}
				if got, want := p.hdr.SequenceNumber-pkts[0].hdr.SequenceNumber, uint16(i); got != want {
					t.Errorf("packet %d sequence +%d, want +%d", i, got, want)
				}
				if p.hdr.Marker != (i == 0) {
					t.Errorf("packet %d marker = %v", i, p.hdr.Marker)
				}
				if !bytes.Equal(p.pay, s.cfg.Silence) {
					t.Errorf("packet %d payload is not the silence frame", i)
				}
			}
			st := s.Stats()
			if st.Packets != n || st.Bytes != n*(rtpHeaderSize+FrameSize) || st.FramesPlayed != 0 || st.Late != late || st.Skipped != 0 {
				t.Errorf("Stats = %+v, want %d packets, %d late", st, n, late)
			}
			if late != tt.wantLate {
				t.Errorf("%d packets late, want %d", late, tt.wantLate)
			}
		})
	}
}

func TestSenderGapWithoutSilence(t *testing.T) {
	// Slots 0-2 carry utterance A, slots 3-7 are idle (nothing sent), utterance B is queued during
	// sleep 8 and fills slots 8-9.
	clock := newFakeClock()
	w := &recordingWriter{clock: clock}
	s := newSender(w, testDst(), SenderConfig{PayloadType: 0, Clock: clock})
	a, b := frames(3, 1), frames(2, 10)
	doneA := s.Play(a)
	var doneB <-chan struct{}
	clock.onSleep = func(i int) {
		if i == 8 {
			doneB = s.Play(b)
		}
	}
	runSender(t, s, w, clock, 5, 0)

	pkts := w.packets()
	wantSlots := []uint32{0, 1, 2, 8, 9}
	wantMarker := []bool{true, false, false, true, false}
	wantPayload := [][]byte{a[0], a[1], a[2], b[0], b[1]}
	if len(pkts) != len(wantSlots) {
		t.Fatalf("sent %d packets, want %d", len(pkts), len(wantSlots))
	}
	for i, p := range pkts {
		if got := (p.hdr.Timestamp - pkts[0].hdr.Timestamp) / 160; got != wantSlots[i] {
			t.Errorf("packet %d timestamp is slot %d, want %d", i, got, wantSlots[i])
		}
		if got := p.hdr.SequenceNumber - pkts[0].hdr.SequenceNumber; got != uint16(i) {
			t.Errorf("packet %d sequence +%d, want +%d (no gap in sequence numbers)", i, got, i)
		}
		if p.hdr.Marker != wantMarker[i] {
			t.Errorf("packet %d marker = %v, want %v", i, p.hdr.Marker, wantMarker[i])
		}
		if !bytes.Equal(p.pay, wantPayload[i]) {
			t.Errorf("packet %d carries the wrong frame", i)
		}
	}
	for name, ch := range map[string]<-chan struct{}{"A": doneA, "B": doneB} {
		select {
		case <-ch:
		default:
			t.Errorf("utterance %s channel not closed after its last frame", name)
		}
	}
	if st := s.Stats(); st.FramesPlayed != 5 || st.Packets != 5 {
		t.Errorf("Stats = %+v, want 5 frames played", st)
	}
}

func TestSenderSkipsWhenFarBehind(t *testing.T) {
	tests := []struct {
		name     string
		silence  []byte
		stall    time.Duration // lag of sleep 3
		wantSkip uint64
	}{
		{name: "200ms behind catches up", silence: silenceFrame(), stall: 200 * time.Millisecond},
		{name: "300ms behind skips with silence", silence: silenceFrame(), stall: 300 * time.Millisecond, wantSkip: 15},
		{name: "310ms behind skips without silence", stall: 310 * time.Millisecond, wantSkip: 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			clock.lag = func(i int) time.Duration {
				if i == 3 {
					return tt.stall
				}
				return 0
			}
			w := &recordingWriter{clock: clock}
			s := newSender(w, testDst(), SenderConfig{Silence: tt.silence, Clock: clock})
			utt := frames(8, 1)
			s.Play(utt)
			runSender(t, s, w, clock, 8, 0)

			pkts := w.packets()
			for i, p := range pkts {
				if !bytes.Equal(p.pay, utt[i]) {
					t.Errorf("packet %d is not frame %d: no queued frame may be dropped", i, i)
				}
				slot := (p.hdr.Timestamp - pkts[0].hdr.Timestamp) / 160
				wantSlot := uint32(i)
				if i >= 3 {
					wantSlot += uint32(tt.wantSkip) // the stalled slot and those after it moved to the present
				}
				if slot != wantSlot {
					t.Errorf("packet %d in slot %d, want %d", i, slot, wantSlot)
				}
				wantMarker := i == 0 || (i == 3 && tt.wantSkip > 0)
				if p.hdr.Marker != wantMarker {
					t.Errorf("packet %d marker = %v, want %v", i, p.hdr.Marker, wantMarker)
				}
			}
			if st := s.Stats(); st.Skipped != tt.wantSkip {
				t.Errorf("Skipped = %d, want %d", st.Skipped, tt.wantSkip)
			}
		})
	}
}

func TestSenderPlayAndStop(t *testing.T) {
	clock := newFakeClock()
	w := &recordingWriter{clock: clock}
	s := newSender(w, testDst(), SenderConfig{Silence: silenceFrame(), Clock: clock})
	first, second := frames(50, 1), frames(50, 100)
	done1 := s.Play(first)
	done2 := s.Play(second)
	w.after = func(n int) {
		if n == 3 {
			s.Stop() // barge-in during the first utterance
		}
	}
	runSender(t, s, w, clock, 6, 0)

	for name, ch := range map[string]<-chan struct{}{"playing": done1, "queued": done2} {
		select {
		case <-ch:
		default:
			t.Errorf("%s utterance channel not closed by Stop", name)
		}
	}
	pkts := w.packets()
	for i, p := range pkts {
		want := s.cfg.Silence
		if i < 3 {
			want = first[i]
		}
		if !bytes.Equal(p.pay, want) {
			t.Errorf("packet %d payload %x…, want %x…", i, p.pay[0], want[0])
		}
		if p.hdr.Marker != (i == 0) {
			t.Errorf("packet %d marker = %v: silence keeps the stream continuous", i, p.hdr.Marker)
		}
	}
	if st := s.Stats(); st.FramesPlayed != 3 || st.Packets != 6 {
		t.Errorf("Stats = %+v, want 3 frames played of 6 packets", st)
	}
}

func TestSenderPlayEdgeCases(t *testing.T) {
	tests := []struct {
		name         string
		frames       [][]byte
		afterRun     bool
		wantRejected uint64
	}{
		{name: "nil utterance"},
		{name: "empty utterance", frames: [][]byte{}},
		{name: "short frame", frames: [][]byte{make([]byte, FrameSize), make([]byte, 80)}, wantRejected: 1},
		{name: "long frame", frames: [][]byte{make([]byte, FrameSize+1)}, wantRejected: 1},
		{name: "after Run returned", frames: frames(2, 1), afterRun: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			w := &recordingWriter{clock: clock}
			s := newSender(w, testDst(), SenderConfig{Clock: clock})
			if tt.afterRun {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				if err := s.Run(ctx); !errors.Is(err, context.Canceled) {
					t.Fatalf("Run = %v", err)
				}
			}
			select {
			case <-s.Play(tt.frames):
			default:
				t.Fatal("Play returned an open channel for an utterance that can never play")
			}
			if st := s.Stats(); st.Rejected != tt.wantRejected {
				t.Errorf("Rejected = %d, want %d", st.Rejected, tt.wantRejected)
			}
		})
	}
}

func TestSenderRunEndDropsQueue(t *testing.T) {
	clock := newFakeClock()
	w := &recordingWriter{clock: clock}
	s := newSender(w, testDst(), SenderConfig{Clock: clock})
	done := s.Play(frames(100, 1))
	runSender(t, s, w, clock, 2, 0)
	select {
	case <-done:
	default:
		t.Fatal("utterance channel still open after Run returned")
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run returned nil")
	}
}

func TestSenderWriteError(t *testing.T) {
	clock := newFakeClock()
	werr := errors.New("boom")
	w := &recordingWriter{clock: clock, err: werr}
	s := newSender(w, testDst(), SenderConfig{Clock: clock})
	done := s.Play(frames(1, 1))
	if err := s.Run(context.Background()); !errors.Is(err, werr) {
		t.Fatalf("Run = %v, want the write error", err)
	}
	select {
	case <-done:
	default:
		t.Error("utterance channel open after a failed write")
	}
}

func TestSenderBadConfig(t *testing.T) {
	tests := []struct {
		name string
		dst  netip.AddrPort
		cfg  SenderConfig
	}{
		{name: "silence too short", dst: testDst(), cfg: SenderConfig{Silence: make([]byte, 80)}},
		{name: "payload type above 127", dst: testDst(), cfg: SenderConfig{PayloadType: 128}},
		{name: "zero destination"},
		{name: "destination port 0", dst: netip.MustParseAddrPort("192.0.2.1:0")},
		{name: "unspecified destination", dst: netip.MustParseAddrPort("0.0.0.0:4000")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			tt.cfg.Clock = clock
			s := newSender(&recordingWriter{clock: clock}, tt.dst, tt.cfg)
			if err := s.Run(context.Background()); err == nil || errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v, want a configuration error", err)
			}
		})
	}
}

// loopbackPair returns two UDP sockets on 127.0.0.1, closed at the end of the test.
func loopbackPair(t testing.TB) (a, b *net.UDPConn) {
	t.Helper()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback(), 0)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	return listen(), listen()
}

func addrPort(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestSenderSendSlotAllocs(t *testing.T) {
	src, dst := loopbackPair(t)
	s := NewSender(src, addrPort(dst), SenderConfig{Silence: silenceFrame()})
	s.Play(frames(2000, 0)) // the utterance is built before measuring, as prompts are
	var slot uint64
	allocs := testing.AllocsPerRun(1000, func() {
		if err := s.sendSlot(slot, 0); err != nil {
			t.Fatal(err)
		}
		slot++
	})
	if allocs != 0 {
		t.Errorf("sendSlot allocates %v times per packet, want 0", allocs)
	}
}

func TestTimerClockSleepUntilAllocs(t *testing.T) {
	c := &timerClock{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	allocs := testing.AllocsPerRun(20, func() {
		if err := c.SleepUntil(ctx, time.Now().Add(50*time.Microsecond)); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("SleepUntil allocates %v times per call, want 0", allocs)
	}
}

func TestTimerClockSleepUntil(t *testing.T) {
	tests := []struct {
		name    string
		until   time.Duration
		cancel  bool
		wantErr error
	}{
		{name: "past deadline returns at once", until: -time.Second},
		{name: "short sleep", until: 2 * time.Millisecond},
		{name: "cancelled context", until: time.Hour, cancel: true, wantErr: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			c := &timerClock{}
			deadline := time.Now().Add(tt.until)
			err := c.SleepUntil(ctx, deadline)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("SleepUntil = %v, want %v", err, tt.wantErr)
			}
			if err == nil && time.Now().Before(deadline) {
				t.Errorf("SleepUntil returned before the deadline")
			}
		})
	}
}

func BenchmarkSenderPacket(b *testing.B) {
	src, dst := loopbackPair(b)
	s := NewSender(src, addrPort(dst), SenderConfig{Silence: silenceFrame()})
	b.ReportAllocs()
	var slot uint64
	for b.Loop() {
		if err := s.sendSlot(slot, 0); err != nil {
			b.Fatal(err)
		}
		slot++
	}
}
