package media

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// evPkt is one telephone-event packet as the decoder sees it.
type evPkt struct {
	ssrc   uint32
	ts     uint32
	marker bool
	ev     telephoneEvent
}

// press returns the packets a conforming sender emits for one 100 ms key press starting at ts
// (RFC 4733 §2.5.1): the marker packet, updates every 20 ms with a growing duration, and the end
// packet sent three times.
func press(ssrc uint32, event uint8, ts uint32) []evPkt {
	var out []evPkt
	for i := uint16(1); i <= 4; i++ {
		out = append(out, evPkt{ssrc: ssrc, ts: ts, marker: i == 1, ev: telephoneEvent{event: event, duration: 160 * i}})
	}
	for range 3 {
		out = append(out, evPkt{ssrc: ssrc, ts: ts, ev: telephoneEvent{event: event, end: true, duration: 800}})
	}
	return out
}

// impairment is a way the network can mangle the packets of one key press.
type impairment struct {
	name  string
	apply func([]evPkt) []evPkt
}

func impairments() []impairment {
	return []impairment{
		{"none", func(p []evPkt) []evPkt { return p }},
		{"marker lost", func(p []evPkt) []evPkt { return p[1:] }},
		{"end packets lost", func(p []evPkt) []evPkt { return p[:len(p)-3] }},
		{"only the end packets", func(p []evPkt) []evPkt { return p[len(p)-3:] }},
		{"only one middle packet", func(p []evPkt) []evPkt { return p[2:3] }},
		{"duplicates", func(p []evPkt) []evPkt {
			var out []evPkt
			for _, x := range p {
				out = append(out, x, x)
			}
			return out
		}},
		{"reordered", func(p []evPkt) []evPkt {
			out := slices.Clone(p)
			out[0], out[1] = out[1], out[0]
			out[2], out[5] = out[5], out[2]
			return out
		}},
	}
}

// decode pushes packets one millisecond apart and returns the digits reported and their times.
func decode(pkts []evPkt, start time.Time) (string, []time.Time) {
	var d dtmfDecoder
	var digits []byte
	var at []time.Time
	for i, p := range pkts {
		now := start.Add(time.Duration(i) * time.Millisecond)
		if got, ok := d.push(p.ssrc, p.ts, p.marker, p.ev, now); ok {
			digits = append(digits, got.Digit)
			at = append(at, got.At)
		}
	}
	return string(digits), at
}

func TestDTMFDecoderImpairments(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for ev := range uint8(16) {
		for _, imp := range impairments() {
			for _, same := range []bool{false, true} {
				second := (ev + 1) % 16
				kind := "different digit next"
				if same {
					second, kind = ev, "same digit twice"
				}
				name := fmt.Sprintf("%c/%s/%s", eventDigits[ev], imp.name, kind)
				t.Run(name, func(t *testing.T) {
					// The second press starts 100 ms after the first ended: timestamps 800 + 800 apart.
					first := imp.apply(press(7, ev, 1000))
					next := imp.apply(press(7, second, 2600))
					got, at := decode(append(first, next...), start)
					want := string([]byte{eventDigits[ev], eventDigits[second]})
					if got != want {
						t.Fatalf("digits %q, want %q", got, want)
					}
					// Each digit is stamped with the arrival of the first packet of its event.
					if wantAt := start.Add(time.Duration(len(first)) * time.Millisecond); !at[1].Equal(wantAt) {
						t.Errorf("second digit At = +%v, want +%v", at[1].Sub(start), wantAt.Sub(start))
					}
				})
			}
		}
	}
}

func TestDTMFDecoderSequences(t *testing.T) {
	cat := func(ps ...[]evPkt) []evPkt { return slices.Concat(ps...) }
	tests := []struct {
		name string
		pkts []evPkt
		want string
	}{
		{
			name: "straggler of the previous event after the next began",
			pkts: func() []evPkt {
				a, b := press(1, 5, 1000), press(1, 6, 2600)
				// a's last end packet arrives after b's first two packets.
				return cat(a[:6], b[:2], a[6:], b[2:])
			}(),
			want: "56",
		},
		{
			name: "straggler of the same digit after its repeat began",
			pkts: func() []evPkt {
				a, b := press(1, 5, 1000), press(1, 5, 2600)
				return cat(a[:4], b[:1], a[4:], b[1:])
			}(),
			want: "55",
		},
		{
			name: "flash and other events are ignored",
			pkts: cat(press(1, 16, 1000), press(1, 3, 2600), press(1, 40, 4200)),
			want: "3",
		},
		{
			name: "new ssrc with the same timestamp is a new event",
			pkts: cat(press(1, 2, 1000), press(2, 2, 1000)),
			want: "22",
		},
		{
			name: "new ssrc with an older timestamp is a new event",
			pkts: cat(press(1, 2, 90000), press(2, 3, 1000)),
			want: "23",
		},
		{
			name: "timestamp wraps around between presses",
			pkts: cat(press(1, 4, 0xFFFFFF00), press(1, 8, 0x00000300)),
			want: "48",
		},
		{
			name: "long event continued in a new segment (RFC 4733 §2.5.1.3)",
			pkts: []evPkt{
				{ssrc: 1, ts: 1000, marker: true, ev: telephoneEvent{event: 9, duration: 160}},
				{ssrc: 1, ts: 1000, ev: telephoneEvent{event: 9, duration: 0xFFFF}},
				{ssrc: 1, ts: 1000 + 0xFFFF, ev: telephoneEvent{event: 9, duration: 160}},
				{ssrc: 1, ts: 1000 + 0xFFFF, ev: telephoneEvent{event: 9, end: true, duration: 800}},
			},
			want: "9",
		},
		{
			name: "same digit again after its end is a new press",
			pkts: []evPkt{
				{ssrc: 1, ts: 1000, marker: true, ev: telephoneEvent{event: 9, duration: 160}},
				{ssrc: 1, ts: 1000, ev: telephoneEvent{event: 9, end: true, duration: 800}},
				{ssrc: 1, ts: 1000 + 600, ev: telephoneEvent{event: 9, duration: 160}},
			},
			want: "99",
		},
		{
			name: "digit keys map to their characters",
			pkts: func() []evPkt {
				var out []evPkt
				for ev := range uint8(16) {
					out = append(out, press(1, ev, 1000+uint32(ev)*1600)...)
				}
				return out
			}(),
			want: "0123456789*#ABCD",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := decode(tt.pkts, time.Time{}); got != tt.want {
				t.Errorf("digits %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseTelephoneEvent(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		want    telephoneEvent
		ok      bool
	}{
		{name: "start of 5", payload: []byte{5, 0x0a, 0x00, 0xa0}, want: telephoneEvent{event: 5, duration: 160}, ok: true},
		{name: "end of #", payload: []byte{11, 0x8a, 0x03, 0x20}, want: telephoneEvent{event: 11, end: true, duration: 800}, ok: true},
		{name: "reserved bit ignored", payload: []byte{1, 0x40, 0, 1}, want: telephoneEvent{event: 1, duration: 1}, ok: true},
		{name: "extra blocks ignored", payload: []byte{2, 0, 0, 1, 3, 0x80, 0, 2}, want: telephoneEvent{event: 2, duration: 1}, ok: true},
		{name: "too short", payload: []byte{5, 0x0a, 0x00}},
		{name: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseTelephoneEvent(tt.payload)
			if ok != tt.ok || got != tt.want {
				t.Errorf("parseTelephoneEvent = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func FuzzDTMF(f *testing.F) {
	f.Add([]byte{1, 0, 10, 1, 5, 0x0a, 0, 160, 1, 0, 10, 0, 5, 0x8a, 3, 32})
	f.Add([]byte{0, 255, 255, 1, 16, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Each 8 bytes: ssrc (1 byte), timestamp step (2 bytes, signed), marker, event payload (4 bytes).
		var d dtmfDecoder
		var ts uint32
		for ; len(data) >= 8; data = data[8:] {
			ts += uint32(int32(int16(uint16(data[1])<<8 | uint16(data[2]))))
			ev, ok := parseTelephoneEvent(data[4:8])
			if !ok {
				t.Fatal("parseTelephoneEvent refused 4 bytes")
			}
			ssrc, marker := uint32(data[0]%3), data[3]&1 == 1
			got, ok := d.push(ssrc, ts, marker, ev, time.Time{})
			if ok && (ev.event > 15 || got.Digit != eventDigits[ev.event]) {
				t.Fatalf("event %d reported as digit %q", ev.event, got.Digit)
			}
			// A duplicate of any packet never reports a second digit.
			if _, again := d.push(ssrc, ts, marker, ev, time.Time{}); again {
				t.Fatalf("duplicate packet reported a digit: ssrc %d ts %d %+v", ssrc, ts, ev)
			}
		}
	})
}
