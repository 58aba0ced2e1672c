package media

import "math"

// Values of [Digit.Source]: how a key press reached the Receiver.
const (
	// SourceRFC4733 marks a digit received as an RTP telephone-event (RFC 4733 §3.2).
	SourceRFC4733 = "rfc4733"
	// SourceInband marks a digit detected in the decoded audio by a [ToneDetector].
	SourceInband = "inband"
)

// Tuning of the in-band detector. The frequencies, the twist and the timing limits are those of
// ITU-T Q.23 (the tones) and Q.24 (what a receiver must accept and reject); where Q.24 leaves a range
// to each administration, the values are the ones common DTMF receivers use (Bellcore GR-506,
// spandsp, Asterisk).
const (
	// toneBlock is the Goertzel block: 110 samples (13.75 ms at 8000 Hz) give bins 72.7 Hz wide, as
	// wide as the 73 Hz between the two lowest rows, so a row tone falls near a null of its
	// neighbour's filter; a shorter block blurs the rows together, a longer one makes the 40 ms
	// minimum duration too coarse to enforce.
	toneBlock = 110
	// toneHits is how many consecutive blocks must carry the same key before it is reported:
	// 3 × 13.75 ms = 41.25 ms, just over the 40 ms that Q.24 requires a receiver to accept, while
	// a burst of 20-24 ms (which it must reject) cannot fill three blocks well enough.
	toneHits = 3
	// toneGap is how many consecutive blocks without the key end a key press, so that the same key
	// can be reported again. A block still counts as the key while its strongest row and column are
	// the key's and above the level floor, even if it fails the other checks, so a block spoiled by a
	// short interruption does not end the press. The result (measured at every alignment in the
	// tests): a pause of 40 ms or more, which Q.24 requires a receiver to recognise, always ends a
	// press; an interruption of 12 ms or less never does.
	toneGap = 2

	// dBm0Power is the mean power of a 0 dBm0 sine on the 16-bit scale of the G.711 decoders
	// (G.711: the largest µ-law code is +3.17 dBm0, the largest A-law code +3.14 dBm0; a 0 dBm0 sine
	// peaks near 22700).
	dBm0Power = 22700.0 * 22700.0 / 2
	// minToneDBm0 is the level floor: each of the two tones must be at least this loud. Q.24 asks
	// for acceptance down to about -25 to -30 dBm0 per tone; -36 dBm0 leaves margin below that
	// and ignores faint crosstalk and comfort noise.
	minToneDBm0 = -36
	// normalTwistDB is how much louder the low (row) tone may be than the high (column) one: lines
	// lose more at high frequencies. reverseTwistDB is how much louder the high tone may be.
	normalTwistDB  = 8
	reverseTwistDB = 4
	// relativePeakDB is how far every other filter of a group must stay below the strongest one:
	// a real key has one tone per group; speech and music spread over several.
	relativePeakDB = 8
	// harmonicDB is how far below its fundamental the second harmonic of each tone must stay. A
	// voiced sound whose harmonics happen to sit on a row and a column frequency also has strong
	// harmonics at twice those frequencies; a DTMF tone is a pure sine. Not stricter than 6 dB: the
	// second harmonics of 697 and 770 Hz lie within a bin of the 1336 and 1477 Hz columns, and a
	// column tone at the reverse twist limit leaks into them at about 9 dB below the row tone.
	harmonicDB = 6
	// minToneShare is the share of the block's energy the two tones must carry together (1 for a
	// clean key press). Speech and music, whose energy spreads over many frequencies, fall far below.
	minToneShare = 0.7
)

// keypad maps row×4+column of the Q.23 frequency matrix to the key.
const keypad = "123A456B789C*0#D"

// dtmfFreqs are the Q.23 frequencies: rows (low group) 0-3, columns (high group) 4-7.
func dtmfFreqs() [8]float64 {
	return [8]float64{697, 770, 852, 941, 1209, 1336, 1477, 1633}
}

// ToneDetector detects DTMF key presses (ITU-T Q.23) in linear PCM at 8 kHz, for trunks that send
// key presses only as audio. It is not safe for concurrent use: use one per call, on the goroutine
// that reads the audio.
//
// The audio is cut into blocks of 110 samples (13.75 ms), and a Goertzel filter measures each of the
// eight Q.23 frequencies in each block. A block carries a key when:
//
//   - one row and one column tone are each at least -36 dBm0 (Q.24 leaves the floor to each
//     administration; they ask for acceptance down to -25 to -30 dBm0),
//   - every other frequency of each group is at least 8 dB below that group's tone,
//   - the twist is within the limits of Q.24 and Bellcore GR-506: the row tone at most 8 dB louder
//     than the column tone (normal twist), the column tone at most 4 dB louder (reverse twist);
//     near these limits a block measures the twist to within about ±1.5 dB,
//   - the second harmonic of each tone is at least 6 dB below it, and
//   - the two tones carry at least 70 % of the block's energy.
//
// A key press is reported once, when three consecutive blocks (41.25 ms) carry the same key, and ends
// after two blocks (27.5 ms) without it; only then can the same key be reported again. A tone that
// changes to another key without a pause is a second press. Measured at every alignment of the tone to
// the blocks: every press of 50 ms or more is reported and every burst of 30 ms or less is ignored
// (Q.24 asks acceptance from 40 ms and rejection below 20-24 ms; a 40 ms tone is reported when it
// covers three blocks, about half the time); every pause of 40 ms or more separates two presses and
// no interruption of 12 ms or less does.
type ToneDetector struct {
	coeff  [8]float64 // 2cos(2πf/8000) of each Q.23 frequency
	coeff2 [8]float64 // the same for twice each frequency
	minPow float64    // the level floor as a mean power per tone
	// The limits in dB above, as power ratios.
	normalTwist, reverseTwist, relativePeak, harmonic float64

	block [toneBlock]int16 // samples of the block being filled
	n     int              // how many of them are filled

	cand int // the key (index into keypad) of the last blocks, or -1
	hits int // how many consecutive blocks carried cand
	cur  int // the key being held since it was reported, or -1
	miss int // how many consecutive blocks lacked cur

	out []byte // Write's result, reused
}

// NewToneDetector returns a detector that has heard nothing yet. The zero ToneDetector is not ready
// for use.
func NewToneDetector() *ToneDetector {
	d := &ToneDetector{
		minPow:       dBm0Power * dbRatio(minToneDBm0),
		normalTwist:  dbRatio(normalTwistDB),
		reverseTwist: dbRatio(reverseTwistDB),
		relativePeak: dbRatio(relativePeakDB),
		harmonic:     dbRatio(harmonicDB),
		cand:         -1,
		cur:          -1,
		out:          make([]byte, 0, 8),
	}
	for i, f := range dtmfFreqs() {
		d.coeff[i] = 2 * math.Cos(2*math.Pi*f/8000)
		d.coeff2[i] = 2 * math.Cos(2*math.Pi*2*f/8000)
	}
	return d
}

// Write consumes samples of 8 kHz linear PCM, in chunks of any size, and returns the keys ('0'-'9',
// '*', '#', 'A'-'D') of the key presses confirmed within them, in order: usually none, at most one
// per 41.25 ms of audio. A press is confirmed about 41 ms after its tone began, so it may be
// reported by a later Write than the one where it began.
//
// The returned slice is owned by the detector and is overwritten by the next call of Write: copy it
// to keep it. Write allocates nothing (the slice only grows, once, if a single call confirms more
// than 8 presses, which takes more than a third of a second of audio).
func (d *ToneDetector) Write(pcm []int16) []byte {
	d.out = d.out[:0]
	for len(pcm) > 0 {
		n := copy(d.block[d.n:], pcm)
		d.n += n
		pcm = pcm[n:]
		if d.n < toneBlock {
			break
		}
		d.n = 0
		if key := d.next(d.classify()); key >= 0 {
			d.out = append(d.out, keypad[key])
		}
	}
	return d.out
}

// next advances the state machine by one block, and returns the key of a press it confirms, or -1.
// key is the key the block carries (-1 for none); pair is the key of its strongest row and column
// tones when both are above the level floor, even if the block fails the other checks (-1 if not).
// A press being held goes on while pair stays its key, so that a block spoiled by a short dropout,
// a click or a phase jump where a packet was lost does not end it.
func (d *ToneDetector) next(key, pair int) int {
	if key == d.cand {
		d.hits++
	} else {
		d.cand, d.hits = key, 1
	}
	if d.cur >= 0 {
		if pair == d.cur {
			d.miss = 0
			return -1
		}
		if d.miss++; d.miss < toneGap {
			return -1
		}
		d.cur = -1
	}
	if key >= 0 && d.hits >= toneHits {
		d.cur, d.miss = key, 0
		return key
	}
	return -1
}

// classify returns the key (an index into keypad) that the full block carries, or -1, and the pair
// of its strongest tones (see next).
func (d *ToneDetector) classify() (key, pair int) {
	var energy float64
	for _, s := range d.block {
		x := float64(s)
		energy += x * x
	}
	// Mean power of the block; a pure tone of amplitude A has A²/2. Two tones at the floor need twice it.
	if energy/toneBlock < 2*d.minPow {
		return -1, -1
	}
	var pow [8]float64
	d.goertzel(&d.coeff, &pow)
	row, col := strongest(pow[:4]), 4+strongest(pow[4:])
	rowPow, colPow := pow[row], pow[col]
	if rowPow < d.minPow || colPow < d.minPow {
		return -1, -1
	}
	pair = row*4 + col - 4
	// Twist (Q.24): normal when the row tone is louder, reverse when the column tone is.
	if rowPow > colPow*d.normalTwist || colPow > rowPow*d.reverseTwist {
		return -1, pair
	}
	for i, p := range pow {
		if i == row || i == col {
			continue
		}
		peak := rowPow
		if i >= 4 {
			peak = colPow
		}
		if p*d.relativePeak > peak {
			return -1, pair
		}
	}
	if rowPow+colPow < minToneShare*energy/toneBlock {
		return -1, pair
	}
	// Second harmonics, only for the two candidates: most blocks never get this far.
	rowHarm, colHarm := d.power2(d.coeff2[row], d.coeff2[col])
	if rowHarm*d.harmonic > rowPow || colHarm*d.harmonic > colPow {
		return -1, pair
	}
	return pair, pair
}

// goertzel runs the eight filters of coeff over the block and stores the mean power of each tone.
// The filters run side by side in locals, four at a time: their recurrences are independent, so the
// processor overlaps them, and their state stays in registers.
func (d *ToneDetector) goertzel(coeff *[8]float64, pow *[8]float64) {
	for i := 0; i < 8; i += 4 {
		c0, c1, c2, c3 := coeff[i], coeff[i+1], coeff[i+2], coeff[i+3]
		var a1, a2, b1, b2, e1, e2, f1, f2 float64
		for _, s := range d.block {
			x := float64(s)
			a1, a2 = x+c0*a1-a2, a1
			b1, b2 = x+c1*b1-b2, b1
			e1, e2 = x+c2*e1-e2, e1
			f1, f2 = x+c3*f1-f2, f1
		}
		pow[i] = goertzelPower(c0, a1, a2)
		pow[i+1] = goertzelPower(c1, b1, b2)
		pow[i+2] = goertzelPower(c2, e1, e2)
		pow[i+3] = goertzelPower(c3, f1, f2)
	}
}

// power2 runs two Goertzel filters over the block, side by side, and returns the mean powers of
// their tones.
func (d *ToneDetector) power2(c0, c1 float64) (p0, p1 float64) {
	var a1, a2, b1, b2 float64
	for _, s := range d.block {
		x := float64(s)
		a1, a2 = x+c0*a1-a2, a1
		b1, b2 = x+c1*b1-b2, b1
	}
	return goertzelPower(c0, a1, a2), goertzelPower(c1, b1, b2)
}

// goertzelPower turns the final Goertzel state into the mean power of the tone: |X|² is (A·N/2)² for
// a sine of amplitude A at the filter's frequency, and the sine's mean power is A²/2.
func goertzelPower(coeff, s1, s2 float64) float64 {
	return (s1*s1 + s2*s2 - coeff*s1*s2) * 2 / (toneBlock * toneBlock)
}

// strongest returns the index of the largest value.
func strongest(p []float64) int {
	best := 0
	for i := range p {
		if p[i] > p[best] {
			best = i
		}
	}
	return best
}

// dbRatio converts a power ratio in dB to a factor.
func dbRatio(db float64) float64 { return math.Pow(10, db/10) }
