package media

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/zaf/g711"
)

// ErrInactive is returned by [Receiver.Run] when no valid RTP arrived from the remote address for
// [ReceiverConfig.InactivityTimeout].
var ErrInactive = errors.New("media: rtp inactivity timeout")

// errReceiverReused is returned when Run is called a second time.
var errReceiverReused = errors.New("media: receiver run twice")

const (
	// digitBuffer is the capacity of the Digits channel.
	digitBuffer = 16
	// recvBufSize fits any RTP packet on an Ethernet path; G.711 packets are 172 bytes.
	recvBufSize = 1500
	// defaultPoll is how often a blocked read wakes to check the inactivity timeout.
	defaultPoll = 100 * time.Millisecond
)

// ReceiverConfig configures a [Receiver].
type ReceiverConfig struct {
	// Remote is the answered media address. Packets from any other address or port are dropped and
	// counted in RecvStats.Dropped, so nobody else can inject audio or DTMF into the call. Required.
	Remote netip.AddrPort
	// DTMFPayloadTypes are the telephone-event payload types accepted (RFC 4733): list both our offer's
	// and the answer's, as a peer may send either. Values above 127 are ignored.
	DTMFPayloadTypes []uint8
	// InactivityTimeout makes Run return ErrInactive when no valid RTP has arrived from Remote for this
	// long, counted from the start of Run. Zero means no timeout.
	InactivityTimeout time.Duration
	// OnAudio, if set, is called on the Run goroutine (on a Mux, the lane's read goroutine) for every
	// valid packet that is not DTMF, with the time the packet arrived: when it was read from the
	// socket, or on a Mux (on Linux) when the kernel received it. payload is only valid during the
	// call. It must return quickly; it delays the next read.
	OnAudio func(pt uint8, payload []byte, at time.Time)
	// Clock stamps arrivals and measures inactivity. Nil means the real clock.
	Clock Clock
	// InbandDTMF turns on in-band DTMF detection (a [ToneDetector]), for trunks that signal key
	// presses only as tones in the audio: the payload of every PCMU and PCMA packet (static payload
	// types 0 and 8, RFC 3551 §6) is decoded and examined, and key presses found in it are delivered
	// on Digits with Source [SourceInband]. Other payload types are not examined. False (the default)
	// examines no audio. A gateway that sends both telephone-events and tones then reports each key
	// press twice, once per Source: set DisableRFC4733, or treat the two as one press.
	InbandDTMF bool
	// DisableRFC4733 ignores RFC 4733 telephone-events: packets of DTMFPayloadTypes are still checked,
	// counted and kept from OnAudio, but give no digits. False (the default) delivers them on Digits
	// with Source [SourceRFC4733].
	DisableRFC4733 bool
	// SSRC is the synchronisation source the remote announced for this stream in its SDP (a=ssrc,
	// RFC 5576: [Answer.SSRC], [RemoteOffer.SSRC]); zero when it announced none. Only a Receiver on a
	// shared [Mux] port uses it, to tell apart several streams that arrive from one remote address.
	SSRC uint32
}

// RecvStats are a Receiver's counters since it was created.
type RecvStats struct {
	Packets       uint64        // valid RTP packets from Remote
	Bytes         uint64        // their size in bytes, RTP header included
	Lost          uint64        // cumulative packets lost (RFC 3550 A.3), from sequence numbers; never negative
	Jitter        time.Duration // interarrival jitter of the audio (RFC 3550 §6.4.1, A.8), at 8000 Hz
	Dropped       uint64        // datagrams from an address other than Remote (on a Mux the lane counts them, in MuxStats.Unmatched)
	Malformed     uint64        // datagrams from Remote that are not valid RTP version 2 (RTCP included), or bad telephone-events
	Digits        uint64        // DTMF digits detected
	DigitsDropped uint64        // detected digits not delivered because the Digits channel was full
}

// Receiver reads one RTP stream: it checks the source, detects RFC 4733 digits (and in-band DTMF when
// configured) and keeps RFC 3550 receiver statistics. Run is its single goroutine; Digits and Stats
// are safe for concurrent use.
type Receiver struct {
	conn   *net.UDPConn // nil on a Mux lane
	lane   *lane        // the shared socket that feeds this Receiver; nil for a socket of its own
	cfg    ReceiverConfig
	remote netip.AddrPort
	dtmfPT [128]bool
	digits chan Digit
	clock  Clock
	poll   time.Duration
	epoch  time.Time // origin of arrival times for the jitter estimate
	ran    atomic.Bool

	// On a Mux lane: set by the lane's read loop, under the lane's lock.
	muxSSRC    uint32     // the SSRC this Receiver takes on a shared remote address, once latched
	muxLatched bool       // muxSSRC is set
	muxStop    chan error // the lane's verdict that ends Run: ErrInactive or ErrMuxClosed; capacity 1

	// Owned by the Run goroutine, or by the lane's read loop on a Mux (buf is unused there).
	buf       [recvBufSize]byte
	pkt       rtp.Packet
	dtmf      dtmfDecoder
	tones     *ToneDetector // nil unless cfg.InbandDTMF
	pcm       []int16       // decoded audio for tones, reused; recvBufSize samples
	lastValid time.Time

	mu     sync.Mutex // guards the fields below
	ssrc   uint32
	seq    seqTracker
	jitter jitterEstimator
	stats  RecvStats
}

// NewReceiver returns a Receiver reading from conn. The caller owns conn and closes it after Run has
// returned; the Receiver never closes it. Nothing is read until Run is called.
func NewReceiver(conn *net.UDPConn, cfg ReceiverConfig) *Receiver {
	r := &Receiver{
		conn:   conn,
		cfg:    cfg,
		remote: netip.AddrPortFrom(cfg.Remote.Addr().Unmap(), cfg.Remote.Port()),
		digits: make(chan Digit, digitBuffer),
		clock:  cfg.Clock,
		poll:   defaultPoll,
	}
	if r.clock == nil {
		r.clock = &timerClock{}
	}
	r.epoch = r.clock.Now()
	if cfg.InbandDTMF {
		r.tones = NewToneDetector()
		r.pcm = make([]int16, recvBufSize)
	}
	for _, pt := range cfg.DTMFPayloadTypes {
		if pt < 128 {
			r.dtmfPT[pt] = true
		}
	}
	return r
}

// Digits delivers each DTMF digit once, in order of arrival. The channel holds 16 digits; when it is
// full a new digit is dropped and counted in RecvStats.DigitsDropped rather than blocking the reader.
// The channel is never closed: learn that the Receiver stopped from Run's return, so a select on
// Digits cannot spin on a closed channel.
func (r *Receiver) Digits() <-chan Digit { return r.digits }

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (r *Receiver) Stats() RecvStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stats
	st.Lost = r.seq.lost()
	st.Jitter = r.jitter.duration()
	return st
}

// Run reads packets until ctx is done (returning ctx.Err()), until no valid RTP has arrived for the
// inactivity timeout (ErrInactive), or until a read fails (for instance because the caller closed the
// connection). Call it once. Garbage, packets from the wrong source and malformed telephone-events are
// counted and dropped; no datagram can make it panic.
//
// Run uses the connection's read deadline to wake every 100 ms and, through context.AfterFunc, the
// moment ctx is done; it clears the deadline before it returns.
//
// A Receiver made by a [Mux] port reads nothing itself: Run registers it with its lane, whose read loop
// hands it the packets from its remote address (and, when several streams share that address, with its
// SSRC), and waits for ctx, the inactivity timeout, or the lane closing ([ErrMuxClosed]).
func (r *Receiver) Run(ctx context.Context) error {
	if !r.ran.CompareAndSwap(false, true) {
		return errReceiverReused
	}
	if !r.remote.IsValid() || r.remote.Port() == 0 {
		return fmt.Errorf("media: receiver remote %v is not an address and port", r.remote)
	}
	if r.lane != nil {
		return r.lane.runReceiver(ctx, r)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = r.conn.SetReadDeadline(time.Unix(1, 0)) // wake a blocked read now
	})
	defer func() {
		if !stop() {
			<-fired
		}
		_ = r.conn.SetReadDeadline(time.Time{})
	}()

	r.lastValid = r.clock.Now()
	for {
		if err := r.step(ctx); err != nil {
			return err
		}
	}
}

// step is one turn of Run: check ctx and the inactivity timeout, then read and handle at most one
// datagram. A read that times out is not an error. It allocates nothing when a packet arrives.
func (r *Receiver) step(ctx context.Context) error {
	// Set the deadline before looking at ctx: if ctx ends after the check, AfterFunc's deadline lands
	// after ours and the read still wakes at once.
	if err := r.conn.SetReadDeadline(time.Now().Add(r.poll)); err != nil {
		return fmt.Errorf("media: rtp receive: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.cfg.InactivityTimeout > 0 && r.clock.Now().Sub(r.lastValid) >= r.cfg.InactivityTimeout {
		return ErrInactive
	}
	n, from, err := r.conn.ReadFromUDPAddrPort(r.buf[:])
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fmt.Errorf("media: rtp receive: %w", err)
	}
	r.handlePacket(r.buf[:n], from, r.clock.Now())
	return nil
}

// handlePacket processes one datagram that arrived from from at now. It is the Receiver's whole
// per-packet logic, without a socket, and allocates nothing for valid packets.
func (r *Receiver) handlePacket(b []byte, from netip.AddrPort, now time.Time) {
	if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != r.remote {
		r.mu.Lock()
		r.stats.Dropped++
		r.mu.Unlock()
		return
	}
	// Check the fixed header by hand first: rtp.Unmarshal builds an error value for short input, and
	// it does not check the version. RTCP multiplexed on this port (RFC 5761 §4: second byte 192-223)
	// is not RTP media either.
	if len(b) < rtpHeaderSize || b[0]>>6 != 2 || (b[1] >= 192 && b[1] <= 223) || r.pkt.Unmarshal(b) != nil {
		r.mu.Lock()
		r.stats.Malformed++
		r.mu.Unlock()
		return
	}
	h := &r.pkt.Header
	isDTMF := r.dtmfPT[h.PayloadType]
	var ev telephoneEvent
	if isDTMF {
		var ok bool
		if ev, ok = parseTelephoneEvent(r.pkt.Payload); !ok {
			r.mu.Lock()
			r.stats.Malformed++
			r.mu.Unlock()
			return
		}
	}
	r.lastValid = now

	r.mu.Lock()
	r.stats.Packets++
	r.stats.Bytes += uint64(len(b))
	if r.seq.started && h.SSRC != r.ssrc {
		// A new source (RFC 3550 §8.2): restart sequence and transit tracking, keep the totals.
		r.seq.newSource()
		r.jitter.restart()
	}
	r.ssrc = h.SSRC
	r.seq.update(h.SequenceNumber)
	if !isDTMF {
		// Event packets carry the event's start time, not the sampling instant (RFC 4733 §2.3.1), so
		// only audio feeds the jitter estimate.
		r.jitter.update(r.arrivalUnits(now), h.Timestamp)
	}
	r.mu.Unlock()

	if !isDTMF {
		if r.cfg.OnAudio != nil {
			r.cfg.OnAudio(h.PayloadType, r.pkt.Payload, now)
		}
		if r.tones != nil {
			r.detectInband(h.PayloadType, r.pkt.Payload, now)
		}
		return
	}
	if r.cfg.DisableRFC4733 {
		return
	}
	d, ok := r.dtmf.push(h.SSRC, h.Timestamp, h.Marker, ev, now)
	if !ok {
		return
	}
	d.Source = SourceRFC4733
	r.deliver(d)
}

// detectInband decodes a PCMU or PCMA payload (one sample per byte, RFC 3551 §4.5.14) and delivers
// the key presses the tone detector confirms in it, stamped with the packet's arrival. Other payload
// types are ignored. It allocates nothing.
func (r *Receiver) detectInband(pt uint8, payload []byte, now time.Time) {
	pcm := r.pcm[:min(len(payload), len(r.pcm))]
	switch pt {
	case 0:
		for i := range pcm {
			pcm[i] = g711.DecodeUlawFrame(payload[i])
		}
	case 8:
		for i := range pcm {
			pcm[i] = g711.DecodeAlawFrame(payload[i])
		}
	default:
		return
	}
	for _, key := range r.tones.Write(pcm) {
		r.deliver(Digit{Digit: key, At: now, Source: SourceInband})
	}
}

// deliver puts d on the Digits channel without blocking, and counts it.
func (r *Receiver) deliver(d Digit) {
	delivered := false
	select {
	case r.digits <- d:
		delivered = true
	default:
	}
	r.mu.Lock()
	r.stats.Digits++
	if !delivered {
		r.stats.DigitsDropped++
	}
	r.mu.Unlock()
}

// arrivalUnits expresses an arrival time in 8000 Hz timestamp units since the Receiver was made
// (RFC 3550 A.8), on the monotonic clock so a wall-clock step is not mistaken for jitter. Only
// differences matter, so the wrap of the 32-bit result is harmless.
func (r *Receiver) arrivalUnits(t time.Time) uint32 {
	return uint32(int64(t.Sub(r.epoch) / tsUnit))
}
