package media

import (
	"encoding/binary"
	"time"
)

// Digit is one DTMF key press received as an RFC 4733 telephone-event or detected in-band.
type Digit struct {
	Digit  byte      // '0'-'9', '*', '#' or 'A'-'D': events 0-15 of RFC 4733 §3.2
	At     time.Time // when the first packet of the event arrived, or when in-band tones were confirmed
	Source string    // how it arrived: SourceRFC4733 or SourceInband
}

// eventDigits maps RFC 4733 §3.2 event codes 0-15 to their keys.
const eventDigits = "0123456789*#ABCD"

// telephoneEvent is the 4-byte payload of RFC 4733 §2.3:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     event     |E|R| volume    |          duration             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type telephoneEvent struct {
	event    uint8
	end      bool
	duration uint16
}

// parseTelephoneEvent reads the first event of a payload. Further 4-byte blocks (several events packed
// in one packet, RFC 4733 §2.5.1.5) are ignored; trunks do not send them for DTMF.
func parseTelephoneEvent(p []byte) (telephoneEvent, bool) {
	if len(p) < 4 {
		return telephoneEvent{}, false
	}
	return telephoneEvent{
		event:    p[0],
		end:      p[1]&0x80 != 0,
		duration: binary.BigEndian.Uint16(p[2:4]),
	}, true
}

// dtmfDecoder turns a stream of telephone-event packets into key presses. It has no socket and no
// clock, so its rules can be tested packet by packet.
//
// RFC 4733 §2.5.1 gives every packet of one event the same RTP timestamp, the event's start, so a new
// key press is a new timestamp, not a marker bit or an end bit: the marker packet may be lost, the end
// packet is sent three times and may be lost entirely, and packets may be duplicated or reordered.
// A digit is therefore reported on the first packet whose timestamp is newer (in RFC 1982 serial order)
// than every event seen from the same SSRC. Older timestamps are stragglers of events already reported.
//
// One exception: an event longer than the 16-bit duration field (8.2 s at 8000 Hz) is continued in a
// new segment with a later timestamp and no marker (RFC 4733 §2.5.1.3). A packet is taken for such a
// continuation when it repeats the last event code, has no marker, the last event has not ended and
// it starts no later than the last event's reported duration.
type dtmfDecoder struct {
	seen     bool
	ssrc     uint32
	ts       uint32 // start timestamp of the newest event
	event    uint8  // its event code
	ended    bool   // an end packet of it was seen
	duration uint16 // the longest duration reported for it
}

// push feeds one telephone-event packet, and returns the digit when the packet starts a new key press.
// Events above 15 (flash, tones) are ignored and do not count as events.
func (d *dtmfDecoder) push(ssrc, ts uint32, marker bool, ev telephoneEvent, now time.Time) (Digit, bool) {
	if ev.event >= uint8(len(eventDigits)) {
		return Digit{}, false
	}
	if d.seen && d.ssrc == ssrc {
		delta := int32(ts - d.ts)
		if delta < 0 {
			return Digit{}, false // straggler of an earlier event
		}
		if delta == 0 {
			d.ended = d.ended || ev.end
			d.duration = max(d.duration, ev.duration)
			return Digit{}, false // same event: continuation, retransmission or duplicate
		}
		if !marker && ev.event == d.event && !d.ended && uint32(delta) <= uint32(d.duration) {
			// A long event continued in a new segment.
			d.ts, d.ended, d.duration = ts, ev.end, ev.duration
			return Digit{}, false
		}
	}
	*d = dtmfDecoder{seen: true, ssrc: ssrc, ts: ts, event: ev.event, ended: ev.end, duration: ev.duration}
	return Digit{Digit: eventDigits[ev.event], At: now}, true
}
