package media

import (
	"encoding/binary"
	"strings"
	"time"
)

// DTMF sending defaults.
const (
	// DefaultDigitDuration is the length of a key press when PlayDigit is given zero.
	DefaultDigitDuration = 100 * time.Millisecond
	// maxDigitDuration keeps an event's duration within the 16-bit field (RFC 4733 §2.3.5): 8 s.
	maxDigitDuration = 8 * time.Second
	// endRepeats is how many times the final packet of an event is sent (RFC 4733 §2.5.1.4).
	endRepeats = 3
	// digitVolume is the power level of the tone in -dBm0 (RFC 4733 §2.3.4); 10 is what phones send.
	digitVolume = 10
)

// dtmfEvent is one key press queued by PlayDigit. Its progress fields belong to the Run goroutine and
// are only touched under Sender.mu.
type dtmfEvent struct {
	code    uint8         // event code, RFC 4733 §3.2
	packets int           // tone packets: the press's duration in 20 ms slots, at least 1
	sent    int           // packets written so far
	start   uint32        // RTP timestamp of the first packet
	payload [4]byte       // the payload of the packet being written
	done    chan struct{} // closed after the last end packet
}

// eventCode maps a key to its RFC 4733 §3.2 event code.
func eventCode(d byte) (uint8, bool) {
	i := strings.IndexByte(eventDigits, d)
	if i < 0 {
		if d >= 'a' && d <= 'd' {
			return uint8(12 + d - 'a'), true
		}
		return 0, false
	}
	return uint8(i), true
}

// PlayDigit queues a key press sent as RFC 4733 telephone-events and returns a channel that is closed
// when its last packet has been written, or when it is dropped because Run returned.
//
// d is '0'-'9', '*', '#' or 'A'-'D'. dur is rounded up to whole 20 ms packets (zero means 100 ms, at most
// 8 s). In each of those slots the stream carries an event packet instead of audio (queued audio waits,
// it is not dropped): all with the timestamp of the first slot, the marker on the first, the duration
// growing by 160 per packet (§2.5.1.2); then the final packet, with the E bit and the full duration, is
// sent three times in the following slots (§2.5.1.4). Presses queued together go out one after the
// other. A digit other than those, or a Sender whose config has no DTMFPayloadType, gets a closed
// channel and counts in [SendStats.Rejected]. Safe for concurrent use; no per-packet allocation.
func (s *Sender) PlayDigit(d byte, dur time.Duration) <-chan struct{} {
	done := make(chan struct{})
	code, ok := eventCode(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok || s.cfg.DTMFPayloadType == 0 || s.cfg.DTMFPayloadType > 127 {
		s.stats.Rejected++
		close(done)
		return done
	}
	if s.ended {
		close(done)
		return done
	}
	if dur <= 0 {
		dur = DefaultDigitDuration
	}
	dur = min(dur, maxDigitDuration)
	n := int((dur + FrameDuration - 1) / FrameDuration)
	s.events = append(s.events, &dtmfEvent{code: code, packets: n, done: done})
	return done
}

// nextEvent builds the payload of the head event's next packet for slot and sets the header's marker
// and timestamp. When the packet is the event's last it unlinks the event and returns its done channel
// for the caller to close once the packet is written. Caller holds s.mu; Run goroutine only.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     event     |E|R| volume    |          duration             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
func (s *Sender) nextEvent(slot uint64) (payload []byte, done chan struct{}) {
	e := s.events[0]
	k := e.sent
	if k == 0 {
		e.start = s.ts0 + uint32(slot)*samplesPerFrame
	}
	end := k >= e.packets-1
	dur := min(k+1, e.packets) * samplesPerFrame
	e.payload[0] = e.code
	e.payload[1] = digitVolume
	if end {
		e.payload[1] |= 0x80
	}
	binary.BigEndian.PutUint16(e.payload[2:], uint16(dur))
	s.hdr.Marker = k == 0
	s.hdr.Timestamp = e.start
	e.sent++
	if e.sent == e.packets-1+endRepeats {
		s.events[0] = nil
		s.events = s.events[1:]
		done = e.done
	}
	return e.payload[:], done
}
