package media

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/zaf/g711"
)

// g711Frames encodes pcm as 160-byte frames of payload type pt (0 PCMU, 8 PCMA; anything else is
// encoded as PCMU), dropping a last partial frame.
func g711Frames(pt uint8, pcm []int16) [][]byte {
	var out [][]byte
	for ; len(pcm) >= FrameSize; pcm = pcm[FrameSize:] {
		f := make([]byte, FrameSize)
		for i, v := range pcm[:FrameSize] {
			if pt == 8 {
				f[i] = g711.EncodeAlawFrame(v)
			} else {
				f[i] = g711.EncodeUlawFrame(v)
			}
		}
		out = append(out, f)
	}
	return out
}

func TestReceiverInbandDTMF(t *testing.T) {
	// "4", then "#" as tones; a silent stretch of audio between and after.
	s := newSignal(1).silence(40*time.Millisecond).key('4', 100*time.Millisecond, -20, -20).
		silence(100*time.Millisecond).key('#', 100*time.Millisecond, -18, -18).silence(100 * time.Millisecond)
	pcm := s.pcm()
	tests := []struct {
		name       string
		cfg        ReceiverConfig
		pt         uint8
		event      bool // a telephone-event for '9' arrives in the middle of the audio
		wantDigits string
		wantSource string
	}{
		{name: "pcmu", cfg: ReceiverConfig{InbandDTMF: true}, pt: 0, wantDigits: "4#", wantSource: "inband,inband"},
		{name: "pcma", cfg: ReceiverConfig{InbandDTMF: true}, pt: 8, wantDigits: "4#", wantSource: "inband,inband"},
		{name: "other payload types are not examined", cfg: ReceiverConfig{InbandDTMF: true}, pt: 18},
		{name: "off by default", pt: 0},
		{
			name: "both sources", cfg: ReceiverConfig{InbandDTMF: true}, pt: 0, event: true,
			wantDigits: "49#", wantSource: "inband,rfc4733,inband",
		},
		{
			name: "rfc4733 disabled", cfg: ReceiverConfig{InbandDTMF: true, DisableRFC4733: true}, pt: 0, event: true,
			wantDigits: "4#", wantSource: "inband,inband",
		},
		{name: "rfc4733 alone", pt: 0, event: true, wantDigits: "9", wantSource: "rfc4733"},
		{name: "rfc4733 disabled and no inband", cfg: ReceiverConfig{DisableRFC4733: true}, pt: 0, event: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			tt.cfg.Remote, tt.cfg.DTMFPayloadTypes, tt.cfg.Clock = remoteAddr(), []uint8{101}, clock
			var audio int
			tt.cfg.OnAudio = func(uint8, []byte, time.Time) { audio++ }
			r := NewReceiver(nil, tt.cfg)
			frames := g711Frames(tt.pt, pcm)
			var seq uint16
			at := func(i int) time.Time { return clock.now.Add(time.Duration(i) * FrameDuration) }
			for i, f := range frames {
				seq++
				r.handlePacket(rtpBytes(tt.pt, seq, uint32(i)*FrameSize, 9, i == 0, f), remoteAddr(), at(i))
				if tt.event && i == 12 {
					seq++
					r.handlePacket(rtpBytes(101, seq, uint32(i)*FrameSize, 9, true, eventPayload(9, false, 160)), remoteAddr(), at(i))
				}
			}
			var digits []byte
			var sources string
			for len(r.Digits()) > 0 {
				d := <-r.Digits()
				digits = append(digits, d.Digit)
				if sources != "" {
					sources += ","
				}
				sources += d.Source
				if d.At.Before(clock.now) || d.At.After(at(len(frames))) {
					t.Errorf("digit %c at %v, outside the call", d.Digit, d.At)
				}
			}
			if string(digits) != tt.wantDigits || sources != tt.wantSource {
				t.Errorf("digits %q from %q, want %q from %q", digits, sources, tt.wantDigits, tt.wantSource)
			}
			st := r.Stats()
			wantPackets := uint64(len(frames))
			if tt.event {
				wantPackets++
			}
			if st.Packets != wantPackets || st.Digits != uint64(len(tt.wantDigits)) || st.Malformed != 0 {
				t.Errorf("Stats = %+v, want %d packets and %d digits", st, wantPackets, len(tt.wantDigits))
			}
			if audio != len(frames) {
				t.Errorf("OnAudio called %d times for %d audio packets", audio, len(frames))
			}
		})
	}
}

func TestReceiverInbandOversizedPayload(t *testing.T) {
	// A payload longer than a frame (here the largest a datagram can carry) is decoded whole.
	s := newSignal(2).key('7', 150*time.Millisecond, -15, -15)
	pcm := s.pcm()
	payload := make([]byte, recvBufSize-rtpHeaderSize)
	for i := range payload {
		payload[i] = g711.EncodeUlawFrame(pcm[i%len(pcm)])
	}
	r := NewReceiver(nil, ReceiverConfig{Remote: remoteAddr(), InbandDTMF: true, Clock: newFakeClock()})
	r.handlePacket(rtpBytes(0, 1, 0, 9, true, payload), remoteAddr(), time.Now())
	if n := len(r.Digits()); n == 0 {
		t.Fatal("no digit from a 1488-sample payload of tones")
	}
}

func BenchmarkReceiverPacketInband(b *testing.B) {
	// The per-packet path with in-band detection on: PCMU frames of a key press in noise.
	s := newSignal(1).silence(200*time.Millisecond).key('5', 600*time.Millisecond, -20, -20).
		silence(200*time.Millisecond).noise(-45, false)
	var pkts [][]byte
	for i, f := range g711Frames(0, s.pcm()) {
		pkts = append(pkts, rtpBytes(0, uint16(i), uint32(i)*FrameSize, 9, false, f))
	}
	r := NewReceiver(nil, ReceiverConfig{Remote: remoteAddr(), DTMFPayloadTypes: []uint8{101}, InbandDTMF: true})
	now := time.Now()
	b.ReportAllocs()
	var i uint32
	for b.Loop() {
		pkt := pkts[int(i)%len(pkts)]
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		binary.BigEndian.PutUint32(pkt[4:], i*FrameSize)
		r.handlePacket(pkt, remoteAddr(), now.Add(time.Duration(i)*FrameDuration))
		for len(r.Digits()) > 0 {
			<-r.Digits()
		}
		i++
	}
}

func FuzzReceiverPacketInband(f *testing.F) {
	tone := g711Frames(0, newSignal(1).key('3', 60*time.Millisecond, -10, -10).pcm())
	f.Add(rtpBytes(0, 1, 0, 9, true, tone[0]), uint8(3))
	f.Add(rtpBytes(8, 1, 0, 9, true, make([]byte, FrameSize)), uint8(1))
	f.Add(rtpBytes(101, 2, 320, 9, true, eventPayload(5, false, 160)), uint8(2))
	f.Fuzz(func(t *testing.T, b []byte, repeat uint8) {
		r := NewReceiver(nil, ReceiverConfig{
			Remote:           remoteAddr(),
			DTMFPayloadTypes: []uint8{101},
			InbandDTMF:       true,
			Clock:            newFakeClock(),
		})
		now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		n := int(repeat%8) + 1
		for i := range n {
			r.handlePacket(b, remoteAddr(), now.Add(time.Duration(i)*FrameDuration))
		}
		st := r.Stats()
		if st.Packets+st.Malformed != uint64(n) {
			t.Fatalf("Stats %+v do not account for %d datagrams", st, n)
		}
		for len(r.Digits()) > 0 {
			if d := <-r.Digits(); d.Source != SourceInband && d.Source != SourceRFC4733 {
				t.Fatalf("digit %+v has no source", d)
			}
		}
	})
}
