package loadtest

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/voiceotp/voiceotp/prompts"
)

// The recogniser works on decoded 8 kHz PCM, never on G.711 bytes: a trunk may
// transcode µ-law to A-law and back, which changes every byte and hardly any
// sample. It is a template matcher, not a speech recogniser: the server speaks
// from the same prompt catalog the phone knows, so each utterance the phone
// hears is one catalog prompt, possibly transcoded, quieter or louder, with a
// frame lost here and there.
//
// The audio is cut into 10 ms feature frames (80 samples). Each frame has two
// features: its log energy, and its spectral tilt (the energy of the first
// difference over the energy, in dB), which tells a hiss from a hum and so
// "six" from "two" where the energy envelopes alone are close. A frame above
// speechDB is speech; the digital silence the server sends between prompts
// decodes to 0 (µ-law) or ±8 (A-law, 18 dB), below it. Utterances are runs of
// speech separated by at least splitGap of quieter frames: the shortest pause
// the server makes between two prompts is 200 ms ("press" … digit), the
// longest quiet stretch inside a catalog prompt 160 ms.
//
// Each utterance is classified against every prompt of the catalog of about
// its length by dynamic time warping of the feature tracks, levels taken
// relative to each utterance's mean so a change of gain does not matter, and
// each frame's cost clipped so that a frame lost to silence costs a little
// instead of everything. Warping absorbs a frame that vanished from the
// stream altogether. The cost is a few microseconds per 20 ms packet,
// classification included (BenchmarkListenerPacket), and no allocation.

const (
	featSamples = 80                     // samples per feature frame: 10 ms at 8 kHz
	featRate    = 8000 / featSamples     // feature frames per second
	featDur     = time.Second / featRate // one feature frame
	speechDB    = 24.0                   // a frame louder than this (mean power, dB re 1 LSB²) is speech
	splitGap    = 18                     // frames of silence (180 ms) that end an utterance
	minFrames   = 4                      // an utterance shorter than 40 ms is a click, not speech
	dtwBand     = 12                     // time warping allowed, ± frames around the diagonal
	minLenRatio = 0.6                    // an utterance and a template this far apart in length do not match
	clipLevel   = 20.0                   // dB: a level difference counts at most this much
	clipTilt    = 10.0                   // dB: a tilt difference counts at most this much
	maxDist     = 0.5                    // a mean distance per frame above this is not a catalog prompt
	extraFrames = 100                    // an utterance may exceed the longest prompt by 1 s before it is cut
)

// feature is one 10 ms frame of audio, reduced.
type feature struct {
	db   float32 // 10·log10(mean power + 1)
	tilt float32 // 10·log10((mean power of the first difference + 1) / (mean power + 1)); 0 when not speech
}

func (f feature) speech() bool { return f.db > speechDB }

// featureOf reduces one frame of featSamples samples; prev is the sample
// before it (for the first difference). It allocates nothing.
func featureOf(prev int16, frame []int16) feature {
	var e, d float64
	p := float64(prev)
	for _, s := range frame {
		x := float64(s)
		e += x * x
		d += (x - p) * (x - p)
		p = x
	}
	e /= featSamples
	d /= featSamples
	f := feature{db: float32(10 * math.Log10(e+1))}
	if f.speech() {
		f.tilt = float32(10 * math.Log10((d+1)/(e+1)))
	}
	return f
}

// template is one catalog prompt as feature frames, silence trimmed.
type template struct {
	id    prompts.ID
	feats []feature
	ref   float32 // reference(feats)
}

// Recogniser holds the feature templates of one prompt catalog. It is
// immutable after NewRecogniser and safe for concurrent use: share one across
// every call of a phone farm, and give each call its own Listener.
type Recogniser struct {
	templates []template
	maxFrames int // the longest utterance a Listener keeps before cutting it
}

// NewRecogniser builds the templates of every prompt in c (c.IDs()). It fails
// when c is nil or a prompt holds no speech at all.
func NewRecogniser(c *prompts.Catalog) (*Recogniser, error) {
	if c == nil {
		return nil, errors.New("loadtest: recogniser needs a prompt catalog")
	}
	r := &Recogniser{}
	longest := 0
	for _, id := range c.IDs() {
		feats := trim(features(c.PCM(id)))
		if len(feats) == 0 {
			return nil, fmt.Errorf("loadtest: prompt %q holds no speech above %.0f dB", id, speechDB)
		}
		r.templates = append(r.templates, template{id: id, feats: feats, ref: reference(feats)})
		longest = max(longest, len(feats))
	}
	if len(r.templates) == 0 {
		return nil, errors.New("loadtest: the prompt catalog is empty")
	}
	r.maxFrames = longest + extraFrames
	return r, nil
}

// features reduces pcm to feature frames; a partial last frame is dropped.
func features(pcm []int16) []feature {
	out := make([]feature, 0, len(pcm)/featSamples)
	var prev int16
	for i := 0; i+featSamples <= len(pcm); i += featSamples {
		out = append(out, featureOf(prev, pcm[i:i+featSamples]))
		prev = pcm[i+featSamples-1]
	}
	return out
}

// trim cuts the frames before the first and after the last speech frame.
func trim(fs []feature) []feature {
	first, last := -1, -1
	for i, f := range fs {
		if f.speech() {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return nil
	}
	return fs[first : last+1]
}

// classify returns the best matching prompt for one utterance (speech-trimmed
// features) and its distance, 0 for a perfect match; "" when no prompt is
// within maxDist.
func (r *Recogniser) classify(seg []feature, w *dtwScratch) (prompts.ID, float64) {
	best, bestDist := prompts.ID(""), math.Inf(1)
	segRef := reference(seg)
	for i := range r.templates {
		t := &r.templates[i]
		lt, ls := len(t.feats), len(seg)
		if float64(min(lt, ls)) < minLenRatio*float64(max(lt, ls)) {
			continue
		}
		if d := w.distance(t.feats, t.ref, seg, segRef, bestDist); d < bestDist {
			best, bestDist = t.id, d
		}
	}
	if bestDist > maxDist {
		return "", bestDist
	}
	return best, bestDist
}

// reference is the mean level of the speech frames of an utterance, so that
// levels are compared relative to it and a trunk that changes the gain does
// not change the match.
func reference(fs []feature) float32 {
	var sum float32
	n := 0
	for _, f := range fs {
		if f.speech() {
			sum += f.db
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float32(n)
}

// frameDist is the distance of two feature frames, each level taken relative
// to its utterance's reference. Each term is clipped, so a frame lost to
// silence costs a bounded amount instead of dominating the match.
func frameDist(a feature, aRef float32, b feature, bRef float32) float32 {
	dl := abs32((a.db - aRef) - (b.db - bRef))
	dt := abs32(a.tilt - b.tilt)
	return min(dl, clipLevel)/clipLevel + min(dt, clipTilt)/clipTilt
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

// dtwScratch is the reusable cost matrix of one Listener, so that classifying
// allocates nothing once it has grown to the longest template.
type dtwScratch struct {
	prev, cur []float32
}

// distance is the dynamic time warping distance (symmetric steps, a band of
// ±dtwBand frames around the diagonal) between template t and utterance s,
// normalised by the length of the path's two axes: the mean cost per frame.
// Warping absorbs frames lost from the stream and small changes of timing. It
// gives up early, returning +Inf, once every cell of a row exceeds bound.
func (w *dtwScratch) distance(t []feature, tRef float32, s []feature, sRef float32, bound float64) float64 {
	n, m := len(t), len(s)
	if cap(w.prev) < m+1 {
		w.prev, w.cur = make([]float32, m+1), make([]float32, m+1)
	}
	prev, cur := w.prev[:m+1], w.cur[:m+1]
	inf := float32(math.Inf(1))
	for j := range prev {
		prev[j] = inf
	}
	prev[0] = 0
	limit := float32(bound) * float32(n+m)
	for i := 1; i <= n; i++ {
		for j := range cur {
			cur[j] = inf
		}
		// The band follows the diagonal of the n×m matrix.
		c := (i * m) / n
		lo, hi := max(1, c-dtwBand), min(m, c+dtwBand)
		rowMin := inf
		for j := lo; j <= hi; j++ {
			d := frameDist(t[i-1], tRef, s[j-1], sRef)
			best := prev[j-1] + 2*d // a diagonal step counts for both axes
			best = min(best, prev[j]+d, cur[j-1]+d)
			cur[j] = best
			rowMin = min(rowMin, best)
		}
		if rowMin > limit {
			return math.Inf(1)
		}
		prev, cur = cur, prev
	}
	return float64(prev[m]) / float64(n+m)
}

// Token is one utterance a Listener heard.
type Token struct {
	// ID is the catalog prompt the utterance matched, or "" when it matched
	// none (noise, speech from outside the catalog, an utterance cut short).
	ID prompts.ID
	// Distance is how far the utterance is from that prompt: 0 for the
	// prompt exactly as in the catalog, growing with every difference; for
	// an unmatched utterance, the distance to the nearest prompt.
	Distance float64
	// Start and End are the utterance's position in the audio the Listener
	// was given, from its first to just past its last speech frame.
	Start, End time.Duration
}

// Digit returns the digit '0'-'9' the token speaks, or 0 if it is not a digit.
func (t Token) Digit() byte {
	if len(t.ID) == 1 && t.ID[0] >= '0' && t.ID[0] <= '9' {
		return t.ID[0]
	}
	return 0
}

// Listener recognises utterances incrementally in one stream of audio. Write
// it the PCM as it arrives, in any chunk sizes; each utterance is reported to
// onToken as soon as the 180 ms of silence that ends it has been written, on
// the goroutine that calls Write or Flush. A Listener is owned by one
// goroutine. After NewListener, Write allocates nothing.
type Listener struct {
	r       *Recogniser
	onToken func(Token)

	pending [featSamples]int16 // samples of the feature frame being filled
	npend   int
	prev    int16 // last sample of the previous feature frame
	frames  int   // feature frames seen so far

	dtw     dtwScratch
	seg     []feature // the utterance being heard, from its first speech frame
	start   int       // frame index of seg[0]
	silence int       // trailing silent frames in seg
}

// NewListener returns a Listener that reports to onToken, which must not be
// nil.
func (r *Recogniser) NewListener(onToken func(Token)) *Listener {
	l := &Listener{r: r, onToken: onToken, seg: make([]feature, 0, r.maxFrames+splitGap+1)}
	l.dtw.prev, l.dtw.cur = make([]float32, r.maxFrames+1), make([]float32, r.maxFrames+1)
	return l
}

// Write feeds audio. It allocates nothing.
func (l *Listener) Write(pcm []int16) {
	for len(pcm) > 0 {
		n := copy(l.pending[l.npend:], pcm)
		l.npend += n
		pcm = pcm[n:]
		if l.npend == featSamples {
			f := featureOf(l.prev, l.pending[:])
			l.prev = l.pending[featSamples-1]
			l.npend = 0
			l.push(f)
		}
	}
}

// Elapsed returns how much audio has been written, in whole feature frames.
func (l *Listener) Elapsed() time.Duration { return time.Duration(l.frames) * featDur }

func (l *Listener) push(f feature) {
	i := l.frames
	l.frames++
	if len(l.seg) == 0 {
		if f.speech() {
			l.seg = append(l.seg, f)
			l.start, l.silence = i, 0
		}
		return
	}
	l.seg = append(l.seg, f)
	if f.speech() {
		l.silence = 0
	} else {
		l.silence++
	}
	switch {
	case l.silence >= splitGap:
		l.emit(false)
	case len(l.seg) >= cap(l.seg):
		l.emit(true) // far longer than any prompt: not one of ours
	}
}

// Flush reports the utterance in progress, if any, as if silence followed:
// call it when the audio ends.
func (l *Listener) Flush() {
	if len(l.seg) > 0 {
		l.emit(false)
	}
}

func (l *Listener) emit(tooLong bool) {
	seg := l.seg[:len(l.seg)-l.silence]
	l.seg, l.silence = l.seg[:0], 0
	if len(seg) < minFrames {
		return
	}
	t := Token{
		Start: time.Duration(l.start) * featDur,
		End:   time.Duration(l.start+len(seg)) * featDur,
	}
	if !tooLong {
		t.ID, t.Distance = l.r.classify(seg, &l.dtw)
	}
	l.onToken(t)
}

// Recognise runs a fresh Listener over a whole recording and returns every
// utterance in it.
func (r *Recogniser) Recognise(pcm []int16) []Token {
	var out []Token
	l := r.NewListener(func(t Token) { out = append(out, t) })
	l.Write(pcm)
	l.Flush()
	return out
}

// ErrCodeMismatch is returned by Heard.Code when two plays of the code were
// heard differently.
var ErrCodeMismatch = errors.New("loadtest: the plays of the code differ")

// ErrNoCode is returned by Heard.Code when no complete play of the code was
// heard.
var ErrNoCode = errors.New("loadtest: no code heard")

// Heard is what the sequence of utterances of a voice OTP call means.
type Heard struct {
	// Challenge is the digit asked for by "to hear your code, press <d>",
	// or 0 if no challenge was heard. The last challenge heard wins (the
	// server repeats it after a wrong or missing key).
	Challenge byte
	// Plays are the complete plays of the code, in order: the digits after
	// "your code is" or "again", ended by the next prompt that is not a
	// digit (or by the end of the audio when Parse was told it is final).
	Plays []string
	// Open holds the digits of a play still in progress, "" if none.
	Open string
	// Unknown counts utterances that matched no prompt.
	Unknown int
}

// Parse reads a call's utterances: "press" followed by a digit is the
// challenge; "code_is" or "again" followed by digits is a play of the code.
// With final set the audio has ended, so a play in progress counts as
// complete: pass it only when the call ended normally, not when it was cut
// short in the middle of the code.
func Parse(tokens []Token, final bool) Heard {
	var h Heard
	const (
		idle = iota
		afterPress
		inCode
	)
	state := idle
	var play []byte
	closePlay := func() {
		if state == inCode && len(play) > 0 {
			h.Plays = append(h.Plays, string(play))
		}
		play = play[:0]
	}
	for _, t := range tokens {
		d := t.Digit()
		switch {
		case t.ID == "":
			h.Unknown++
		case d != 0 && state == afterPress:
			h.Challenge = d
			state = idle
		case d != 0 && state == inCode:
			play = append(play, d)
		case d != 0:
			// A digit out of context; ignore it.
		default:
			closePlay()
			switch t.ID {
			case prompts.Press:
				state = afterPress
			case prompts.CodeIs, prompts.Again:
				state = inCode
			default:
				state = idle
			}
		}
	}
	if state == inCode && len(play) > 0 {
		if final {
			h.Plays = append(h.Plays, string(play))
		} else {
			h.Open = string(play)
		}
	}
	return h
}

// Code returns the code heard: the complete plays must all agree. It returns
// ErrNoCode when there is no complete play, ErrCodeMismatch when plays differ.
func (h Heard) Code() (string, error) {
	if len(h.Plays) == 0 {
		return "", ErrNoCode
	}
	for _, p := range h.Plays[1:] {
		if p != h.Plays[0] {
			return "", ErrCodeMismatch
		}
	}
	return h.Plays[0], nil
}
