package media

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Frame geometry of 8 kHz G.711 at the 20 ms packetisation we always send (RFC 3551 §4.5.14).
const (
	FrameDuration = 20 * time.Millisecond // one RTP packet's worth of audio
	FrameSize     = 160                   // bytes of G.711 per frame: one byte per sample at 8000 Hz
)

const (
	rtpHeaderSize   = 12  // fixed RTP header, no CSRC, no extension (RFC 3550 §5.1)
	samplesPerFrame = 160 // RTP timestamp units per frame at 8000 Hz

	// lateThreshold is how far past its deadline a packet may leave before it counts as late.
	lateThreshold = 5 * time.Millisecond
	// maxBehind is how far behind its schedule Run may fall before it gives up catching up and skips
	// 20 ms slots instead (see Sender.Run).
	maxBehind = 200 * time.Millisecond
)

// errSenderReused is returned when Run is called a second time.
var errSenderReused = errors.New("media: sender run twice")

// packetWriter is the one method of *net.UDPConn a Sender uses; tests substitute a recording fake.
type packetWriter interface {
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// SenderConfig configures a [Sender].
type SenderConfig struct {
	// PayloadType is the audio payload type stamped on every packet: 0 for PCMU, 8 for PCMA, or whatever
	// the answer assigned ([Answer.Codec]). Must be 0-127.
	PayloadType uint8
	// Silence is one frame (FrameSize bytes) of encoded silence, sent whenever nothing is queued so the
	// stream never pauses. Nil means send nothing when idle: the next packet after such a gap carries the
	// marker bit and its timestamp jumps by the length of the gap (RFC 3551 §4.1).
	Silence []byte
	// Clock paces the stream. Nil means the real clock.
	Clock Clock
	// DTMFPayloadType is the telephone-event payload type (RFC 4733) that PlayDigit sends on: the
	// number the peer's SDP gave it ([Answer.DTMFPayloadType]), 96-127 in practice. Zero means the
	// stream carries no events and PlayDigit refuses every digit.
	DTMFPayloadType uint8
	// SSRC is the stream's synchronisation source (RFC 3550 §5.1). Zero means a random one. Set it when
	// the SSRC was announced before the Sender existed, in an SDP a=ssrc line (RFC 5576), as a call on
	// a shared [Mux] port does so that the far end can tell its streams apart.
	SSRC uint32
}

// SendStats are a Sender's counters since it was created.
type SendStats struct {
	Packets      uint64        // RTP packets written
	Bytes        uint64        // RTP header and payload bytes written (no UDP/IP overhead)
	Late         uint64        // packets that left more than 5 ms after their deadline
	MaxLateness  time.Duration // the largest lateness of any packet written
	Skipped      uint64        // 20 ms slots skipped because Run fell more than 200 ms behind
	FramesPlayed uint64        // frames from Play written (silence excluded)
	Rejected     uint64        // utterances refused by Play because a frame was not FrameSize bytes, and digits refused by PlayDigit
	EventPackets uint64        // RFC 4733 telephone-event packets written
	Digits       uint64        // key presses sent in full by PlayDigit
}

// utterance is one Play call: frames go out in order, done is closed after the last one.
type utterance struct {
	frames [][]byte
	next   int
	done   chan struct{}
}

// Sender paces one RTP stream of 20 ms frames to one destination (RFC 3550, RFC 3551).
//
// Its SSRC, first sequence number and first timestamp are random (RFC 3550 §5.1). Run is its single
// pacing goroutine; Play, Stop and Stats may be called from any goroutine, before, during or after Run.
type Sender struct {
	w     packetWriter // nil when the Sender runs on a Mux lane
	lane  *lane        // the shared socket that paces this Sender; nil for a socket of its own
	dst   netip.AddrPort
	cfg   SenderConfig
	ran   atomic.Bool
	clock Clock // set by Run

	// Owned by the Run goroutine, or by the lane's pacing loop on a Mux.
	hdr     rtp.Header
	ts0     uint32 // timestamp of slot 0
	buf     [rtpHeaderSize + FrameSize]byte
	sentAny bool // a packet has been written: later packets carry the marker only after a gap
	gap     bool // a slot passed without a packet, or slots were skipped

	mu     sync.Mutex // guards queue, events, ended and stats
	queue  []*utterance
	events []*dtmfEvent // key presses waiting or being sent; the head is sent first
	ended  bool         // Run has returned: Play and PlayDigit drop at once
	stats  SendStats
}

// NewSender returns a Sender of 20 ms frames to dst over conn. The caller owns conn: the Sender writes to
// it and never closes it. Nothing is sent until Run is called.
func NewSender(conn *net.UDPConn, dst netip.AddrPort, cfg SenderConfig) *Sender {
	return newSender(conn, dst, cfg)
}

func newSender(w packetWriter, dst netip.AddrPort, cfg SenderConfig) *Sender {
	s := &Sender{
		w:   w,
		dst: netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()),
		cfg: cfg,
		ts0: rand.Uint32(),
	}
	s.hdr = rtp.Header{
		Version:        2,
		PayloadType:    cfg.PayloadType,
		SequenceNumber: uint16(rand.Uint32()),
		SSRC:           cfg.SSRC,
	}
	for s.hdr.SSRC == 0 {
		s.hdr.SSRC = rand.Uint32() // zero is valid RTP, but our configs use it for "unset"
	}
	return s
}

// Run is the Sender's pacing goroutine; call it once. Packet n (counting from 0) is due at
// start + n×20 ms on absolute deadlines, so late wake-ups never accumulate into drift. Each due slot
// carries the next queued frame, else the Silence frame, else nothing.
//
// Header rules (RFC 3550 §5.1, RFC 3551 §4.1): the sequence number grows by one per packet written; the
// timestamp is that of the slot, so it grows by 160 per 20 ms whether or not a packet was written; the
// marker bit is set on the first packet and on the first packet after a gap.
//
// When Run wakes late it writes the due packet at once and counts it in [SendStats.Late]; slots that
// fell due meanwhile follow back to back, each with its own timestamp, so the far end's jitter buffer
// sees the audio intact. Only when Run is more than 200 ms behind (a stalled process, a suspended VM)
// does it skip the missed slots instead, counting them in [SendStats.Skipped]: no queued frame is
// dropped, the timestamp jumps to the present and the next packet carries the marker.
//
// Run returns ctx.Err() when ctx is done, or the first write error. Either way every utterance still
// queued is dropped and its channel closed, and later Play calls are dropped at once.
//
// A Sender made by a [Mux] port has no goroutine of its own: Run hands it to its lane's pacing loop,
// which sends the packets of every Sender of the lane with batched writes on the same 20 ms grid, and
// waits for ctx (or for the lane to close, which returns [ErrMuxClosed]). The rules above hold, with
// one difference: the stream's first slot is the lane's next free tick, at most 20 ms after Run.
func (s *Sender) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errSenderReused
	}
	defer s.end()
	if err := s.check(); err != nil {
		return err
	}
	if s.lane != nil {
		return s.lane.runSender(ctx, s)
	}
	s.clock = s.cfg.Clock
	if s.clock == nil {
		s.clock = &timerClock{}
	}

	start := s.clock.Now()
	var slot uint64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		deadline := start.Add(time.Duration(slot) * FrameDuration)
		if err := s.clock.SleepUntil(ctx, deadline); err != nil {
			return err
		}
		late := s.clock.Now().Sub(deadline)
		if late > maxBehind {
			skip := uint64(late / FrameDuration)
			slot += skip
			late -= time.Duration(skip) * FrameDuration
			s.skip(skip)
		}
		if err := s.sendSlot(slot, late); err != nil {
			return err
		}
		slot++
	}
}

// check validates the configuration and destination before the first packet.
func (s *Sender) check() error {
	if s.cfg.PayloadType > 127 {
		return fmt.Errorf("media: sender payload type %d out of range", s.cfg.PayloadType)
	}
	if s.cfg.Silence != nil && len(s.cfg.Silence) != FrameSize {
		return fmt.Errorf("media: sender silence frame is %d bytes, want %d", len(s.cfg.Silence), FrameSize)
	}
	if !s.dst.IsValid() || s.dst.Port() == 0 || s.dst.Addr().IsUnspecified() {
		return fmt.Errorf("media: sender destination %v is not an address and port", s.dst)
	}
	return nil
}

// skip records n 20 ms slots skipped because the pacing fell too far behind.
func (s *Sender) skip(n uint64) {
	s.gap = true
	s.mu.Lock()
	s.stats.Skipped += n
	s.mu.Unlock()
}

// sendSlot writes the packet of one 20 ms slot, if there is anything to write. late is how long after
// the slot's deadline it is written. It allocates nothing.
func (s *Sender) sendSlot(slot uint64, late time.Duration) error {
	p := s.fill(s.buf[:], slot)
	if p.err != nil {
		return s.failed(p, p.err)
	}
	if p.n == 0 {
		return nil
	}
	if _, err := s.w.WriteToUDPAddrPort(s.buf[:p.n], s.dst); err != nil {
		return s.failed(p, err)
	}
	s.sent(p, late)
	return nil
}

// slotPacket is what fill put in a buffer for one slot, kept until the write is done.
type slotPacket struct {
	n      int           // bytes in the buffer; 0 when the slot carries nothing
	done   chan struct{} // to close once written: the end of an utterance or of a key press
	played bool          // a frame from Play, not silence
	event  bool          // an RFC 4733 packet
	err    error         // the packet could not be built
}

// fill writes the packet of one 20 ms slot into buf (at least rtpHeaderSize+FrameSize bytes) and
// advances the header, or returns n 0 when there is nothing to send. The caller writes the packet,
// then calls sent or failed. It allocates nothing.
func (s *Sender) fill(buf []byte, slot uint64) slotPacket {
	var (
		payload []byte
		done    chan struct{}
		played  bool
		event   bool
	)
	s.mu.Lock()
	if len(s.events) > 0 {
		payload, done = s.nextEvent(slot)
		event = true
	} else {
		payload, done, played = s.nextFrame()
	}
	s.mu.Unlock()
	if payload == nil {
		s.gap = true
		return slotPacket{}
	}

	if event {
		// Every packet of one event carries the event's start timestamp (RFC 4733 §2.5.1.2), and
		// the marker bit only on the first (§2.5.1.1), set by nextEvent.
		s.hdr.PayloadType = s.cfg.DTMFPayloadType
	} else {
		s.hdr.PayloadType = s.cfg.PayloadType
		s.hdr.Marker = !s.sentAny || s.gap
		s.hdr.Timestamp = s.ts0 + uint32(slot)*samplesPerFrame
	}
	n, err := s.hdr.MarshalTo(buf)
	if err != nil || len(buf)-n < len(payload) {
		// Only a buffer too short for the packet fails; every caller passes a full packet buffer.
		return slotPacket{done: done, err: fmt.Errorf("media: rtp packet does not fit a %d-byte buffer", len(buf))}
	}
	n += copy(buf[n:], payload)
	s.hdr.SequenceNumber++
	s.sentAny, s.gap = true, false
	return slotPacket{n: n, done: done, played: played, event: event}
}

// failed ends a packet that could not be written and returns the error for Run.
func (s *Sender) failed(p slotPacket, err error) error {
	if p.done != nil {
		close(p.done)
	}
	return fmt.Errorf("media: rtp send to %v: %w", s.dst, err)
}

// sent counts a packet that was written, late after its slot's deadline, and closes its done channel.
func (s *Sender) sent(p slotPacket, late time.Duration) {
	s.mu.Lock()
	s.stats.Packets++
	s.stats.Bytes += uint64(p.n)
	if p.played {
		s.stats.FramesPlayed++
	}
	if p.event {
		s.stats.EventPackets++
		if p.done != nil {
			s.stats.Digits++
		}
	}
	if late > lateThreshold {
		s.stats.Late++
	}
	if late > s.stats.MaxLateness {
		s.stats.MaxLateness = late
	}
	s.mu.Unlock()
	if p.done != nil {
		close(p.done)
	}
}

// nextFrame pops the next frame to send: the head utterance's next frame, else the silence frame, else
// nil. When it pops an utterance's last frame it unlinks the utterance and returns its done channel for
// the caller to close once the frame is written, so Stop cannot close it twice. Caller holds s.mu.
func (s *Sender) nextFrame() (payload []byte, done chan struct{}, played bool) {
	if len(s.queue) == 0 {
		return s.cfg.Silence, nil, false
	}
	u := s.queue[0]
	payload = u.frames[u.next]
	u.next++
	if u.next == len(u.frames) {
		s.queue[0] = nil
		s.queue = s.queue[1:]
		done = u.done
	}
	return payload, done, true
}

// Play queues an utterance behind anything already queued and returns a channel that is closed when its
// last frame has been written, or when it is dropped by Stop or by Run returning.
//
// Each frame must be exactly FrameSize (160) bytes of audio already encoded for the payload type. Play
// does not copy frames or the slice holding them; neither may be modified afterwards (prompt frames are
// built once and shared by every call). An utterance with a frame of another size is refused whole: its
// channel is returned closed and [SendStats.Rejected] counts it. An empty utterance, or one played after
// Run has returned, also gets a closed channel. Safe for concurrent use.
func (s *Sender) Play(frames [][]byte) <-chan struct{} {
	done := make(chan struct{})
	for _, f := range frames {
		if len(f) != FrameSize {
			s.mu.Lock()
			s.stats.Rejected++
			s.mu.Unlock()
			close(done)
			return done
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(frames) == 0 || s.ended {
		close(done)
		return done
	}
	s.queue = append(s.queue, &utterance{frames: frames, done: done})
	return done
}

// Stop drops the utterance being played and every queued one, closing their channels (barge-in). The
// stream itself goes on: silence if configured, else a gap. A frame already handed to the socket is not
// recalled. Safe for concurrent use.
func (s *Sender) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked()
}

func (s *Sender) dropLocked() {
	for i, u := range s.queue {
		close(u.done)
		s.queue[i] = nil
	}
	s.queue = s.queue[:0]
}

// end runs when Run returns: it drops the queue and makes later Play calls drop at once.
func (s *Sender) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	s.dropLocked()
	for i, e := range s.events {
		close(e.done)
		s.events[i] = nil
	}
	s.events = s.events[:0]
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (s *Sender) Stats() SendStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// SSRC returns the stream's synchronisation source identifier (RFC 3550 §5.1).
func (s *Sender) SSRC() uint32 { return s.hdr.SSRC }
