package media

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// remoteAddr is the answered media address of the receivers under test.
func remoteAddr() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, 5}), 30000)
}

// rtpBytes marshals one RTP packet.
func rtpBytes(pt uint8, seq uint16, ts, ssrc uint32, marker bool, payload []byte) []byte {
	h := rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc, Marker: marker}
	b, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

func eventPayload(event uint8, end bool, duration uint16) []byte {
	b := []byte{event, 10, 0, 0}
	if end {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], duration)
	return b
}

func TestReceiverHandlePacket(t *testing.T) {
	audio := make([]byte, FrameSize)
	mapped := netip.AddrPortFrom(netip.AddrFrom16(remoteAddr().Addr().As16()), remoteAddr().Port())
	type dgram struct {
		from netip.AddrPort
		b    []byte
	}
	from := remoteAddr()
	tests := []struct {
		name       string
		in         []dgram
		want       RecvStats // Lost and Jitter included
		wantAudio  int
		wantDigits string
	}{
		{
			name:      "audio from the remote",
			in:        []dgram{{from, rtpBytes(0, 1, 160, 9, true, audio)}, {from, rtpBytes(0, 2, 320, 9, false, audio)}},
			want:      RecvStats{Packets: 2, Bytes: 2 * 172},
			wantAudio: 2,
		},
		{
			name:      "ipv4-mapped source is the same remote",
			in:        []dgram{{mapped, rtpBytes(0, 1, 160, 9, true, audio)}},
			want:      RecvStats{Packets: 1, Bytes: 172},
			wantAudio: 1,
		},
		{
			name: "wrong port is dropped",
			in:   []dgram{{netip.AddrPortFrom(from.Addr(), from.Port()+1), rtpBytes(0, 1, 160, 9, true, audio)}},
			want: RecvStats{Dropped: 1},
		},
		{
			name: "wrong address cannot inject dtmf",
			in: []dgram{
				{netip.MustParseAddrPort("198.51.100.1:30000"), rtpBytes(101, 1, 160, 9, true, eventPayload(1, false, 160))},
			},
			want: RecvStats{Dropped: 1},
		},
		{
			name: "garbage is malformed",
			in: []dgram{
				{from, nil},
				{from, []byte("hello")},
				{from, make([]byte, 12)}, // version 0
				{from, append([]byte{0x40}, make([]byte, 20)...)},       // version 1
				{from, append([]byte{0x8f, 0}, make([]byte, 12)...)},    // 15 CSRCs announced, none present
				{from, append([]byte{0x90, 0}, make([]byte, 10)...)},    // extension announced, none present
				{from, append([]byte{0xa0, 0}, make([]byte, 10)...)},    // padding with no padding length
				{from, []byte{0x80, 200, 0, 7, 0, 0, 0, 1, 0, 0, 0, 1}}, // RTCP sender report on the RTP port
				{from, rtpBytes(101, 1, 160, 9, true, []byte{1, 2, 3})}, // short telephone-event
			},
			want: RecvStats{Malformed: 9},
		},
		{
			name: "digits are detected once",
			in: []dgram{
				{from, rtpBytes(0, 1, 0, 9, false, audio)},
				{from, rtpBytes(101, 2, 320, 9, true, eventPayload(7, false, 160))},
				{from, rtpBytes(101, 3, 320, 9, false, eventPayload(7, false, 320))},
				{from, rtpBytes(101, 4, 320, 9, false, eventPayload(7, true, 480))},
				{from, rtpBytes(101, 5, 320, 9, false, eventPayload(7, true, 480))},
				{from, rtpBytes(96, 6, 1600, 9, true, eventPayload(11, false, 160))}, // the answer's PT
				{from, rtpBytes(0, 7, 6*160, 9, false, audio)},
			},
			want:       RecvStats{Packets: 7, Bytes: 2*172 + 5*16, Digits: 2},
			wantAudio:  2,
			wantDigits: "7#",
		},
		{
			name: "loss is counted over audio and events",
			in: []dgram{
				{from, rtpBytes(0, 1, 0, 9, false, audio)},
				{from, rtpBytes(101, 3, 320, 9, true, eventPayload(1, false, 160))},
				{from, rtpBytes(0, 6, 2*160, 9, false, audio)},
			},
			want:       RecvStats{Packets: 3, Bytes: 2*172 + 16, Lost: 3, Digits: 1},
			wantAudio:  2,
			wantDigits: "1",
		},
		{
			name: "full digit channel drops and counts",
			in: func() []dgram {
				var out []dgram
				for i := range digitBuffer + 3 {
					out = append(out, dgram{from, rtpBytes(101, uint16(i), uint32(i)*1600, 9, true, eventPayload(uint8(i%10), false, 160))})
				}
				return out
			}(),
			want:       RecvStats{Packets: digitBuffer + 3, Bytes: (digitBuffer + 3) * 16, Digits: digitBuffer + 3, DigitsDropped: 3},
			wantDigits: "0123456789012345",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var audioCalls int
			clock := newFakeClock()
			r := NewReceiver(nil, ReceiverConfig{
				Remote:           remoteAddr(),
				DTMFPayloadTypes: []uint8{101, 96},
				OnAudio: func(pt uint8, payload []byte, _ time.Time) {
					if pt != 0 || len(payload) != FrameSize {
						t.Errorf("OnAudio(%d, %d bytes)", pt, len(payload))
					}
					audioCalls++
				},
				Clock: clock,
			})
			for i, d := range tt.in {
				// Packet i arrives at i×20 ms; audio timestamps in the tables are i×160, so jitter stays 0.
				r.handlePacket(d.b, d.from, clock.now.Add(time.Duration(i)*FrameDuration))
			}
			if got := r.Stats(); got != tt.want {
				t.Errorf("Stats =\n %+v\nwant\n %+v", got, tt.want)
			}
			if audioCalls != tt.wantAudio {
				t.Errorf("OnAudio called %d times, want %d", audioCalls, tt.wantAudio)
			}
			var got []byte
			for len(r.Digits()) > 0 {
				got = append(got, (<-r.Digits()).Digit)
			}
			if string(got) != tt.wantDigits {
				t.Errorf("digits %q, want %q", got, tt.wantDigits)
			}
		})
	}
}

func TestReceiverSSRCChange(t *testing.T) {
	r := NewReceiver(nil, ReceiverConfig{Remote: remoteAddr(), DTMFPayloadTypes: []uint8{101}, Clock: newFakeClock()})
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	// feed delivers a packet sampled in 20 ms slot n, arriving exactly on time.
	feed := func(ssrc uint32, seq uint16, ts uint32, slot int) {
		r.handlePacket(rtpBytes(0, seq, ts, ssrc, false, make([]byte, FrameSize)), remoteAddr(), start.Add(time.Duration(slot)*FrameDuration))
	}
	feed(1, 100, 1000, 0)
	feed(1, 102, 1320, 2) // 1 lost
	feed(2, 50000, 7, 3)  // a new source (early media ended, say): a new sequence and timestamp base
	feed(2, 50001, 167, 4)
	feed(2, 50003, 487, 6) // 1 lost
	st := r.Stats()
	if st.Lost != 2 {
		t.Errorf("Lost = %d, want 2", st.Lost)
	}
	if st.Jitter != 0 {
		t.Errorf("Jitter = %v, want 0: a new timestamp base is not jitter", st.Jitter)
	}
}

// runReceiver starts r.Run on a goroutine and returns a channel with its result.
func runReceiver(ctx context.Context, r *Receiver) <-chan error {
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return done
}

func TestReceiverRunOverUDP(t *testing.T) {
	rx, tx := loopbackPair(t)
	_, stranger := loopbackPair(t)
	r := NewReceiver(rx, ReceiverConfig{Remote: addrPort(tx), DTMFPayloadTypes: []uint8{101}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runReceiver(ctx, r)

	send := func(c *net.UDPConn, b []byte) {
		if _, err := c.WriteToUDPAddrPort(b, addrPort(rx)); err != nil {
			t.Fatal(err)
		}
	}
	send(stranger, rtpBytes(101, 1, 160, 5, true, eventPayload(3, false, 160))) // injected: must be ignored
	for i, p := range press(9, 4, 1600) {
		send(tx, rtpBytes(101, uint16(10+i), p.ts, p.ssrc, p.marker, eventPayload(p.ev.event, p.ev.end, p.ev.duration)))
	}
	select {
	case d := <-r.Digits():
		if d.Digit != '4' || d.At.IsZero() {
			t.Errorf("digit %+v, want '4' with an arrival time", d)
		}
	case err := <-done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no digit within 5 s")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	st := r.Stats()
	if st.Digits != 1 || st.Dropped != 1 {
		t.Errorf("Stats = %+v, want 1 digit and 1 dropped", st)
	}
	if len(r.Digits()) != 0 {
		t.Errorf("%d extra digits delivered", len(r.Digits()))
	}
}

func TestReceiverRunEnds(t *testing.T) {
	tests := []struct {
		name    string
		cfg     ReceiverConfig
		poll    time.Duration
		act     func(cancel context.CancelFunc, conn *net.UDPConn)
		wantErr error
	}{
		{
			// poll is an hour: only context.AfterFunc can wake the read.
			name: "cancel wakes a blocked read at once", poll: time.Hour,
			act:     func(cancel context.CancelFunc, _ *net.UDPConn) { cancel() },
			wantErr: context.Canceled,
		},
		{
			// Each Now advances the fake clock 100 ms: one second passes within a few polls.
			name: "inactivity on the injected clock", poll: time.Millisecond,
			cfg:     ReceiverConfig{InactivityTimeout: time.Second, Clock: &fakeClock{step: 100 * time.Millisecond}},
			act:     func(context.CancelFunc, *net.UDPConn) {},
			wantErr: ErrInactive,
		},
		{
			name: "closed socket", poll: time.Hour,
			act:     func(_ context.CancelFunc, conn *net.UDPConn) { conn.Close() },
			wantErr: net.ErrClosed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rx, tx := loopbackPair(t)
			tt.cfg.Remote = addrPort(tx)
			r := NewReceiver(rx, tt.cfg)
			r.poll = tt.poll
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := runReceiver(ctx, r)
			tt.act(cancel, rx)
			select {
			case err := <-done:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Run = %v, want %v", err, tt.wantErr)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return within 5 s")
			}
		})
	}
}

func TestReceiverRunBadConfig(t *testing.T) {
	rx, _ := loopbackPair(t)
	r := NewReceiver(rx, ReceiverConfig{})
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("Run with no Remote returned nil")
	}
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("second Run returned nil")
	}
}

func TestSenderToReceiverOverUDP(t *testing.T) {
	// Real sockets and the real clock: what callflow does, minus SIP.
	txConn, rxConn := loopbackPair(t)
	var audio int
	r := NewReceiver(rxConn, ReceiverConfig{
		Remote:            addrPort(txConn),
		DTMFPayloadTypes:  []uint8{101},
		InactivityTimeout: 2 * time.Second,
		OnAudio:           func(uint8, []byte, time.Time) { audio++ },
	})
	s := NewSender(txConn, addrPort(rxConn), SenderConfig{PayloadType: 0, Silence: silenceFrame()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rdone := runReceiver(ctx, r)
	sdone := make(chan error, 1)
	go func() { sdone <- s.Run(ctx) }()

	select {
	case <-s.Play(frames(10, 1)):
	case <-time.After(5 * time.Second):
		t.Fatal("utterance not played within 5 s")
	}
	cancel()
	for name, ch := range map[string]<-chan error{"sender": sdone, "receiver": rdone} {
		if err := <-ch; !errors.Is(err, context.Canceled) {
			t.Errorf("%s Run = %v, want context.Canceled", name, err)
		}
	}
	ss, rs := s.Stats(), r.Stats()
	if ss.FramesPlayed != 10 || ss.Packets < 10 {
		t.Errorf("sender Stats = %+v, want 10 frames played", ss)
	}
	if rs.Packets == 0 || rs.Packets > ss.Packets || rs.Lost != 0 || rs.Malformed != 0 || rs.Dropped != 0 {
		t.Errorf("receiver Stats = %+v after the sender's %+v", rs, ss)
	}
	if uint64(audio) != rs.Packets {
		t.Errorf("OnAudio called %d times for %d packets", audio, rs.Packets)
	}
}

func BenchmarkReceiverPacket(b *testing.B) {
	r := NewReceiver(nil, ReceiverConfig{Remote: remoteAddr(), DTMFPayloadTypes: []uint8{101}, OnAudio: func(uint8, []byte, time.Time) {}})
	pkt := rtpBytes(0, 0, 0, 9, false, make([]byte, FrameSize))
	now := time.Now()
	b.ReportAllocs()
	var i uint32
	for b.Loop() {
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		binary.BigEndian.PutUint32(pkt[4:], i*160)
		r.handlePacket(pkt, remoteAddr(), now.Add(time.Duration(i)*FrameDuration))
		i++
	}
}

func BenchmarkReceiverReadUDP(b *testing.B) {
	// The whole per-packet receive path: deadline, read from a real socket, handle.
	rx, tx := loopbackPair(b)
	r := NewReceiver(rx, ReceiverConfig{Remote: addrPort(tx), DTMFPayloadTypes: []uint8{101}})
	pkt := rtpBytes(0, 0, 0, 9, false, make([]byte, FrameSize))
	dst := addrPort(rx)
	ctx := context.Background()
	b.ReportAllocs()
	var i uint32
	for b.Loop() {
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		binary.BigEndian.PutUint32(pkt[4:], i*160)
		if _, err := tx.WriteToUDPAddrPort(pkt, dst); err != nil {
			b.Fatal(err)
		}
		if err := r.step(ctx); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if st := r.Stats(); st.Packets != uint64(i) {
		b.Fatalf("received %d of %d packets", st.Packets, i)
	}
}

func FuzzReceiverPacket(f *testing.F) {
	f.Add(rtpBytes(0, 1, 160, 9, true, make([]byte, FrameSize)), true)
	f.Add(rtpBytes(101, 2, 320, 9, true, eventPayload(5, false, 160)), true)
	f.Add(rtpBytes(101, 2, 320, 9, true, eventPayload(5, true, 800)), false)
	f.Add([]byte{0x9f, 0x65, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1}, true)
	f.Add([]byte{0xb0, 0xe5, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0, 4}, true)
	f.Fuzz(func(t *testing.T, b []byte, fromRemote bool) {
		from := remoteAddr()
		if !fromRemote {
			from = netip.MustParseAddrPort("198.51.100.1:4000")
		}
		r := NewReceiver(nil, ReceiverConfig{
			Remote:           remoteAddr(),
			DTMFPayloadTypes: []uint8{101, 96},
			OnAudio:          func(uint8, []byte, time.Time) {},
			Clock:            newFakeClock(),
		})
		now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		// Twice: the second pass sees the state the first left behind.
		for i := range 2 {
			r.handlePacket(b, from, now.Add(time.Duration(i)*FrameDuration))
		}
		st := r.Stats()
		if st.Packets+st.Dropped+st.Malformed != 2 {
			t.Fatalf("Stats %+v do not account for 2 datagrams", st)
		}
		if st.Digits > 1 {
			t.Fatalf("one packet sent twice gave %d digits", st.Digits)
		}
	})
}
