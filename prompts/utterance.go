package prompts

import (
	"fmt"
	"slices"
	"time"
)

// Timing of the utterances; a CodeOptions field left zero takes these values.
const (
	// ChallengePause is the pause between "To hear your code, press" and the digit.
	ChallengePause = 200 * time.Millisecond
	// DefaultDigitPause is the pause between two digits of a group.
	DefaultDigitPause = 250 * time.Millisecond
	// DefaultGroupPause is the pause between two groups of digits.
	DefaultGroupPause = 700 * time.Millisecond
	// DefaultGroupSize is the preferred number of digits in a group.
	DefaultGroupSize = 3
)

// Builder concatenates prompts and pauses into one utterance. It appends
// references to the catalog's pre-encoded frames and to its shared silence frame:
// it never transcodes or copies audio, and allocates only the [][]byte it returns.
// A Builder is not safe for concurrent use; make one per utterance with
// Catalog.Say.
//
// The first error (an unknown prompt, digit or encoding, an invalid code) is kept
// and returned by Frames; later calls then do nothing. So a chain needs one check:
//
//	frames, err := c.Say(prompts.ULaw).Prompt(prompts.CodeIs).Pause(300*time.Millisecond).
//		Code(code, prompts.CodeOptions{}).Frames()
type Builder struct {
	c      *Catalog
	enc    Encoding
	frames [][]byte
	err    error
}

// Say starts an utterance in encoding enc.
func (c *Catalog) Say(enc Encoding) *Builder {
	b := &Builder{c: c, enc: enc}
	if !enc.valid() {
		b.err = fmt.Errorf("%w: %d", ErrUnknownEncoding, uint8(enc))
	}
	return b
}

// Prompt appends the frames of prompt id. An ID the catalog lacks is an error
// wrapping ErrUnknownPrompt.
func (b *Builder) Prompt(id ID) *Builder {
	if b.err != nil {
		return b
	}
	p, ok := b.c.prompts[id]
	if !ok {
		b.err = fmt.Errorf("%w: %q in locale %q", ErrUnknownPrompt, id, b.c.locale)
		return b
	}
	b.frames = append(b.frames, p.frames[b.enc]...)
	return b
}

// Digit appends the prompt that speaks digit d ('0' to '9'). Any other byte is an
// error wrapping ErrInvalidDigit.
func (b *Builder) Digit(d byte) *Builder {
	if b.err != nil {
		return b
	}
	if DigitID(d) == "" {
		b.err = fmt.Errorf("%w: %q", ErrInvalidDigit, d)
		return b
	}
	return b.Prompt(DigitID(d))
}

// Pause appends silence for d, rounded up to whole 20 ms frames (a pause of 1 ns
// is one frame). A zero or negative d appends nothing.
func (b *Builder) Pause(d time.Duration) *Builder {
	if b.err != nil {
		return b
	}
	b.frames = appendSilence(b.frames, b.c.silence[b.enc], pauseFrames(d))
	return b
}

// Code appends code spoken digit by digit, grouped as GroupDigits describes, with
// opt's pauses between digits and between groups; see Catalog.Code.
func (b *Builder) Code(code string, opt CodeOptions) *Builder {
	if b.err != nil {
		return b
	}
	b.frames, b.err = b.c.appendCode(b.frames, b.enc, code, opt)
	return b
}

// Frames returns the utterance, or the first error met while building it. The
// frames are shared with the catalog: do not modify them.
func (b *Builder) Frames() ([][]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	return b.frames, nil
}

// Challenge returns "To hear your code, press", a ChallengePause, then digit
// ('0' to '9'). A digit outside '0' to '9' is an error wrapping ErrInvalidDigit.
func (c *Catalog) Challenge(enc Encoding, digit byte) ([][]byte, error) {
	return c.Say(enc).Prompt(Press).Pause(ChallengePause).Digit(digit).Frames()
}

// CodeOptions tunes how Catalog.Code speaks a code. The zero value is the default.
type CodeOptions struct {
	// DigitPause is the silence between two digits of a group.
	// If zero, DefaultDigitPause (250 ms) is used; if negative, none.
	DigitPause time.Duration
	// GroupPause is the silence between two groups.
	// If zero, DefaultGroupPause (700 ms) is used; if negative, none.
	GroupPause time.Duration
	// GroupSize is the preferred number of digits in a group; see GroupDigits.
	// If zero or negative, DefaultGroupSize (3) is used.
	GroupSize int
}

func (o CodeOptions) withDefaults() CodeOptions {
	if o.DigitPause == 0 {
		o.DigitPause = DefaultDigitPause
	}
	if o.GroupPause == 0 {
		o.GroupPause = DefaultGroupPause
	}
	if o.GroupSize <= 0 {
		o.GroupSize = DefaultGroupSize
	}
	return o
}

// Code returns code spoken digit by digit in groups (see GroupDigits), with
// opt.DigitPause between the digits of a group and opt.GroupPause between groups;
// no silence before the first digit or after the last. An empty code or one with
// a byte outside '0' to '9' is an error wrapping ErrInvalidCode, and the error
// text never contains the code. The result allocates one [][]byte and shares the
// catalog's frames.
func (c *Catalog) Code(enc Encoding, code string, opt CodeOptions) ([][]byte, error) {
	if !enc.valid() {
		return nil, fmt.Errorf("%w: %d", ErrUnknownEncoding, uint8(enc))
	}
	return c.appendCode(nil, enc, code, opt)
}

// appendCode appends the utterance of code to dst, growing dst at most once.
func (c *Catalog) appendCode(dst [][]byte, enc Encoding, code string, opt CodeOptions) ([][]byte, error) {
	if code == "" {
		return dst, fmt.Errorf("%w: empty", ErrInvalidCode)
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			// Say neither the byte nor its position: both would leak the code.
			return dst, fmt.Errorf("%w: not all ASCII digits", ErrInvalidCode)
		}
	}
	opt = opt.withDefaults()
	digitFrames, groupFrames := pauseFrames(opt.DigitPause), pauseFrames(opt.GroupPause)
	var digits [10][][]byte
	for d := range digits {
		p, ok := c.prompts[DigitID(byte('0'+d))]
		if !ok { // LoadFS guarantees the digits; a zero Catalog has none
			return dst, fmt.Errorf("%w: digits in locale %q", ErrUnknownPrompt, c.locale)
		}
		digits[d] = p.frames[enc]
	}

	// Count first, so that dst grows once.
	n := 0
	forEachDigit(len(code), opt.GroupSize, func(i int, gapBefore gap) {
		n += len(digits[code[i]-'0'])
		switch gapBefore {
		case gapDigit:
			n += digitFrames
		case gapGroup:
			n += groupFrames
		}
	})
	dst = slices.Grow(dst, n)

	silence := c.silence[enc]
	forEachDigit(len(code), opt.GroupSize, func(i int, gapBefore gap) {
		switch gapBefore {
		case gapDigit:
			dst = appendSilence(dst, silence, digitFrames)
		case gapGroup:
			dst = appendSilence(dst, silence, groupFrames)
		}
		dst = append(dst, digits[code[i]-'0']...)
	})
	return dst, nil
}

// gap is the silence spoken before a digit.
type gap uint8

const (
	gapNone  gap = iota // the first digit
	gapDigit            // a digit inside a group
	gapGroup            // the first digit of a later group
)

// forEachDigit calls f for the indices 0..n-1 of a code of n digits, saying which
// gap precedes each, as groupLayout lays the groups out.
func forEachDigit(n, size int, f func(i int, gapBefore gap)) {
	k, base, extra := groupLayout(n, size)
	i := 0
	for g := 0; g < k; g++ {
		l := base
		if g < extra {
			l++
		}
		for j := 0; j < l; j++ {
			switch {
			case i == 0:
				f(i, gapNone)
			case j == 0:
				f(i, gapGroup)
			default:
				f(i, gapDigit)
			}
			i++
		}
	}
}

// groupLayout returns the grouping of n digits for a preferred group size: k
// groups, the first extra of which hold base+1 digits and the rest base.
func groupLayout(n, size int) (k, base, extra int) {
	if n <= 0 {
		return 0, 0, 0
	}
	if size <= 0 {
		size = DefaultGroupSize
	}
	k = 1
	if n > size {
		k = max(2, n/size)
	}
	return k, n / k, n % k
}

// GroupDigits splits code into the groups in which Code speaks it, for a
// preferred group size (if zero or negative, DefaultGroupSize). The rule:
//
//   - a code of at most size digits is one group;
//   - a longer code is split into max(2, len/size) groups (integer division),
//     as equal in length as possible, the longer groups first.
//
// With the default size 3: 1–3 digits → one group; 4 → 2+2; 5 → 3+2; 6 → 3+3;
// 7 → 4+3; 8 → 4+4; 9 → 3+3+3; 10 → 4+3+3; 11 → 4+4+3; 12 → 3+3+3+3: a code
// longer than 3 digits is spoken in groups of 2 to 4. The groups are sub-strings of code; GroupDigits does not check that
// they are digits.
func GroupDigits(code string, size int) []string {
	k, base, extra := groupLayout(len(code), size)
	groups := make([]string, 0, k)
	for g := 0; g < k; g++ {
		l := base
		if g < extra {
			l++
		}
		groups = append(groups, code[:l])
		code = code[l:]
	}
	return groups
}

// pauseFrames is the number of frames of a pause of d, rounded up.
func pauseFrames(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + FrameDuration - 1) / FrameDuration)
}

func appendSilence(dst [][]byte, silence []byte, n int) [][]byte {
	for range n {
		dst = append(dst, silence)
	}
	return dst
}
