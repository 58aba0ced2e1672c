package media

import "time"

// Sequence tracking constants of RFC 3550 Appendix A.1.
const (
	maxDropout  = 3000    // a forward jump below this is accepted as loss
	maxMisorder = 100     // a backward jump below this is a late or duplicate packet
	seqMod      = 1 << 16 // RTP sequence number modulus
)

// seqTracker keeps the extended highest sequence number and the packet count of one source, as
// RFC 3550 Appendix A.1 describes, to give the cumulative loss of Appendix A.3. Probation is not used:
// the first packet of a source is trusted (the source is already pinned by address).
type seqTracker struct {
	started  bool
	maxSeq   uint16 // highest sequence number seen
	cycles   uint32 // wraps of maxSeq, times seqMod
	baseSeq  uint32 // first sequence number of this epoch
	badSeq   uint32 // sequence number after a large jump; seqMod+1 when none
	received uint64 // packets counted in this epoch (duplicates included, as in A.3)
	lostPrev int64  // loss carried over from earlier epochs (SSRC change, resync)
}

// newSource folds the loss counted so far into the total and forgets the sequence state, for a new
// SSRC whose first packet will start a new epoch.
func (t *seqTracker) newSource() {
	if t.started {
		t.lostPrev += max(t.epochLost(), 0)
		t.started = false
	}
}

// reset starts a new epoch at seq (RFC 3550 A.1 init_seq), keeping the loss counted so far.
func (t *seqTracker) reset(seq uint16) {
	t.newSource()
	t.started = true
	t.maxSeq = seq
	t.cycles = 0
	t.baseSeq = uint32(seq)
	t.badSeq = seqMod + 1
	t.received = 0
}

// update counts one packet with sequence number seq (RFC 3550 A.1 update_seq).
func (t *seqTracker) update(seq uint16) {
	if !t.started {
		t.reset(seq)
		t.received++
		return
	}
	udelta := seq - t.maxSeq
	switch {
	case udelta < maxDropout:
		// In order, possibly with a gap.
		if seq < t.maxSeq {
			t.cycles += seqMod
		}
		t.maxSeq = seq
	case uint32(udelta) <= seqMod-maxMisorder:
		// A very large jump. Two in a row that agree mean the source restarted its sequence.
		if uint32(seq) != t.badSeq {
			t.badSeq = (uint32(seq) + 1) & (seqMod - 1)
			return
		}
		t.reset(seq)
	default:
		// A duplicate or a reordered packet: counted, but it moves nothing.
	}
	t.received++
}

func (t *seqTracker) epochLost() int64 {
	expected := int64(t.cycles) + int64(t.maxSeq) - int64(t.baseSeq) + 1
	return expected - int64(t.received)
}

// lost is the cumulative number of packets lost (RFC 3550 A.3), never negative: duplicates can make the
// raw figure negative, and a count of lost packets below zero means nothing to a caller.
func (t *seqTracker) lost() uint64 {
	if !t.started {
		return 0
	}
	return uint64(max(t.lostPrev+t.epochLost(), 0))
}

// jitterEstimator is the interarrival jitter of RFC 3550 §6.4.1, computed as Appendix A.8 does: in
// timestamp units, scaled by 16 so the 1/16 gain needs no division.
type jitterEstimator struct {
	hasPrev  bool
	transit  int32  // previous arrival minus timestamp, in timestamp units
	jitter16 uint32 // jitter × 16
}

// tsUnit is one RTP timestamp unit at 8000 Hz.
const tsUnit = time.Second / 8000

// update adds a packet with RTP timestamp ts that arrived at arrival, in timestamp units of an
// arbitrary epoch (RFC 3550 A.8).
func (j *jitterEstimator) update(arrival, ts uint32) {
	transit := int32(arrival - ts)
	if !j.hasPrev {
		j.hasPrev, j.transit = true, transit
		return
	}
	d := transit - j.transit
	j.transit = transit
	if d < 0 {
		d = -d
	}
	// J += (|D| - J) / 16, with J held as 16·J.
	j.jitter16 += uint32(d) - ((j.jitter16 + 8) >> 4)
}

// restart forgets the previous transit time (a new source has a new timestamp base) but keeps the
// estimate.
func (j *jitterEstimator) restart() { j.hasPrev = false }

// duration converts the estimate to time at 8000 Hz.
func (j *jitterEstimator) duration() time.Duration {
	return time.Duration(j.jitter16) * tsUnit / 16
}
