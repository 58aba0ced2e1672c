package media

import (
	"context"
	"testing"
	"time"
)

// runDigits sends presses through a Sender on a fake clock and returns every packet written.
func runDigits(t *testing.T, cfg SenderConfig, presses string, dur time.Duration, limit int) []sentPacket {
	t.Helper()
	clock := newFakeClock()
	cfg.Clock = clock
	w := &recordingWriter{clock: clock}
	s := newSender(w, testDst(), cfg)
	for i := 0; i < len(presses); i++ {
		s.PlayDigit(presses[i], dur)
	}
	runSender(t, s, w, clock, limit, 0)
	return w.packets()
}

func TestPlayDigitPackets(t *testing.T) {
	tests := []struct {
		digit   byte
		dur     time.Duration
		packets int // tone packets before the three end packets
		code    uint8
	}{
		{'7', 100 * time.Millisecond, 5, 7},
		{'0', 0, 5, 0},
		{'*', 20 * time.Millisecond, 1, 10},
		{'#', 30 * time.Millisecond, 2, 11},
		{'D', 200 * time.Millisecond, 10, 15},
		{'a', time.Hour, 400, 12},
	}
	for _, tt := range tests {
		t.Run(string(tt.digit), func(t *testing.T) {
			total := tt.packets - 1 + endRepeats
			pkts := runDigits(t, SenderConfig{PayloadType: 0, Silence: silenceFrame(), DTMFPayloadType: 101}, string(tt.digit), tt.dur, total+2)
			ev := pkts[:total]
			ts := ev[0].hdr.Timestamp
			var d dtmfDecoder
			var got []byte
			for i, p := range ev {
				if p.hdr.PayloadType != 101 || p.hdr.Timestamp != ts || p.hdr.Marker != (i == 0) {
					t.Fatalf("packet %d: pt %d ts %d marker %v", i, p.hdr.PayloadType, p.hdr.Timestamp, p.hdr.Marker)
				}
				if i > 0 && p.hdr.SequenceNumber != ev[i-1].hdr.SequenceNumber+1 {
					t.Fatalf("packet %d: sequence %d after %d", i, p.hdr.SequenceNumber, ev[i-1].hdr.SequenceNumber)
				}
				e, ok := parseTelephoneEvent(p.pay)
				if !ok || len(p.pay) != 4 || e.event != tt.code || p.pay[1]&0x3f != digitVolume {
					t.Fatalf("packet %d payload %x", i, p.pay)
				}
				wantEnd := i >= tt.packets-1
				wantDur := uint16(min(i+1, tt.packets) * 160)
				if e.end != wantEnd || e.duration != wantDur {
					t.Errorf("packet %d: end %v duration %d, want %v %d", i, e.end, e.duration, wantEnd, wantDur)
				}
				if dg, ok := d.push(p.hdr.SSRC, p.hdr.Timestamp, p.hdr.Marker, e, p.at); ok {
					got = append(got, dg.Digit)
				}
			}
			if want := string(eventDigits[tt.code]); string(got) != want {
				t.Errorf("decoded %q, want %q", got, want)
			}
			// Audio resumes on the slot after the last end packet, with that slot's timestamp.
			a := pkts[total]
			if a.hdr.PayloadType != 0 || a.hdr.Marker || a.hdr.Timestamp != ts+uint32(total)*160 {
				t.Errorf("audio after the event: pt %d marker %v ts %d, want 0 false %d", a.hdr.PayloadType, a.hdr.Marker, a.hdr.Timestamp, ts+uint32(total)*160)
			}
		})
	}
}

func TestPlayDigitSequenceDecodes(t *testing.T) {
	pkts := runDigits(t, SenderConfig{Silence: silenceFrame(), DTMFPayloadType: 96}, "1#9*", 60*time.Millisecond, 4*(3-1+endRepeats)+1)
	var d dtmfDecoder
	var got []byte
	for _, p := range pkts {
		if p.hdr.PayloadType != 96 {
			continue
		}
		e, _ := parseTelephoneEvent(p.pay)
		if dg, ok := d.push(p.hdr.SSRC, p.hdr.Timestamp, p.hdr.Marker, e, p.at); ok {
			got = append(got, dg.Digit)
		}
	}
	if string(got) != "1#9*" {
		t.Errorf("decoded %q, want 1#9*", got)
	}
}

func TestPlayDigitRefused(t *testing.T) {
	tests := []struct {
		name  string
		cfg   SenderConfig
		digit byte
	}{
		{"no telephone-event payload type", SenderConfig{}, '5'},
		{"not a key", SenderConfig{DTMFPayloadType: 101}, 'x'},
		{"NUL", SenderConfig{DTMFPayloadType: 101}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSender(&recordingWriter{clock: newFakeClock()}, testDst(), tt.cfg)
			select {
			case <-s.PlayDigit(tt.digit, 0):
			default:
				t.Fatal("channel not closed")
			}
			if s.Stats().Rejected != 1 {
				t.Errorf("Rejected = %d", s.Stats().Rejected)
			}
		})
	}
}

// A press queued while a prompt plays pauses the prompt; no audio frame is lost.
func TestPlayDigitPausesAudio(t *testing.T) {
	clock := newFakeClock()
	w := &recordingWriter{clock: clock}
	s := newSender(w, testDst(), SenderConfig{Clock: clock, DTMFPayloadType: 101})
	s.Play(frames(4, 1))
	w.after = func(n int) {
		if n == 2 {
			s.PlayDigit('3', 20*time.Millisecond)
		}
	}
	runSender(t, s, w, clock, 2+endRepeats+2, 0)
	var kinds []byte
	for _, p := range w.packets() {
		if p.hdr.PayloadType == 101 {
			kinds = append(kinds, 'E')
		} else {
			kinds = append(kinds, '0'+p.pay[0])
		}
	}
	if string(kinds) != "12EEE34" {
		t.Errorf("stream %q, want 12EEE34", kinds)
	}
}

// Through a real socket into a Receiver: the press arrives as one digit.
func TestPlayDigitReceived(t *testing.T) {
	a, b := loopbackPair(t)
	s := NewSender(a, addrPort(b), SenderConfig{Silence: silenceFrame(), DTMFPayloadType: 101})
	r := NewReceiver(b, ReceiverConfig{Remote: addrPort(a), DTMFPayloadTypes: []uint8{101}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go s.Run(ctx)
	go r.Run(ctx)
	done := s.PlayDigit('8', 60*time.Millisecond)
	select {
	case d := <-r.Digits():
		if d.Digit != '8' {
			t.Errorf("received %q, want 8", d.Digit)
		}
	case <-ctx.Done():
		t.Fatal("no digit received")
	}
	<-done
	if st := s.Stats(); st.Digits != 1 || st.EventPackets != 3-1+endRepeats {
		t.Errorf("stats %+v", st)
	}
}

func TestPlayDigitSendSlotAllocs(t *testing.T) {
	src, dst := loopbackPair(t)
	s := NewSender(src, addrPort(dst), SenderConfig{Silence: silenceFrame(), DTMFPayloadType: 101})
	s.PlayDigit('5', maxDigitDuration) // 400 tone packets
	var slot uint64
	allocs := testing.AllocsPerRun(300, func() {
		if err := s.sendSlot(slot, 0); err != nil {
			t.Fatal(err)
		}
		slot++
	})
	if allocs != 0 {
		t.Errorf("sendSlot allocates %v times per event packet, want 0", allocs)
	}
	if st := s.Stats(); st.EventPackets < 300 {
		t.Errorf("only %d event packets sent", st.EventPackets)
	}
}

func BenchmarkSenderEventPacket(b *testing.B) {
	src, dst := loopbackPair(b)
	s := NewSender(src, addrPort(dst), SenderConfig{Silence: silenceFrame(), DTMFPayloadType: 101})
	b.ReportAllocs()
	var slot uint64
	for b.Loop() {
		s.mu.Lock()
		if len(s.events) == 0 {
			s.events = append(s.events, &dtmfEvent{code: 1, packets: 400, done: make(chan struct{})})
		}
		s.mu.Unlock()
		if err := s.sendSlot(slot, 0); err != nil {
			b.Fatal(err)
		}
		slot++
	}
}
