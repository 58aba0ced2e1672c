// Package prompts owns the voice of the IVR: the prompt recordings embedded in the
// binary (one folder per locale, go:embed), loading and validating WAV files,
// the pre-encoded G.711 frames of every prompt, and the utterances built from
// them (the challenge "To hear your code, press 7" and a code read digit by
// digit, grouped, with pauses).
//
// A Catalog encodes every prompt to µ-law (PCMU) and A-law (PCMA) once, when it
// is loaded at start-up. A call then plays slices of those shared 160-byte frames:
// nothing is transcoded, resampled or copied per call or per packet, so the 20 ms
// RTP pacing loop in package media does no audio work at all and a thousand
// concurrent calls cost a thousand slices of pointers, not a thousand encoders.
//
// The package does not send audio (package media paces RTP), decide what to say
// when (package callflow), or generate codes (package otp). It imports no other
// package of this project.
//
// The English recordings in en/ are synthetic: gen/generate.sh turns
// en/catalog.txt into 8000 Hz 16-bit mono WAVs with the flite "slt" voice (CMU
// ARCTIC, US English female) and sox (silence trimmed, telephone band-limited,
// peak-normalised). Operators may bring their own recordings in the same layout
// and load them with LoadFS.
package prompts

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/zaf/g711"
)

// FrameSamples is the number of samples in one frame: 20 ms at 8000 Hz. A frame
// of G.711 is one byte per sample, so every frame is FrameSamples bytes long.
const FrameSamples = 160

// FrameDuration is the playing time of one frame.
const FrameDuration = 20 * time.Millisecond

// Encoding is a G.711 companding law.
type Encoding uint8

// The two G.711 laws (ITU-T G.711); RTP payload types 0 and 8 (RFC 3551, section 4.5.14).
const (
	ULaw Encoding = iota // µ-law, PCMU, used in North America and Japan
	ALaw                 // A-law, PCMA, used in most of the rest of the world
)

const numEncodings = 2

// String returns the RTP encoding name: "PCMU" or "PCMA".
func (e Encoding) String() string {
	switch e {
	case ULaw:
		return "PCMU"
	case ALaw:
		return "PCMA"
	}
	return fmt.Sprintf("Encoding(%d)", uint8(e))
}

func (e Encoding) valid() bool { return e < numEncodings }

// ID names a prompt; it is the base name of its WAV file ("press" ↔ en/press.wav).
type ID string

// The prompts every catalog holds, besides the digits (see DigitID).
const (
	Press    ID = "press"     // "To hear your code, press"
	CodeIs   ID = "code_is"   // "Your code is"
	Again    ID = "again"     // "Again"
	Repeat   ID = "repeat"    // "Press 1 to hear it again."
	NoKey    ID = "no_key"    // "We did not receive your key."
	WrongKey ID = "wrong_key" // "That was not the right key."
	Goodbye  ID = "goodbye"   // "Goodbye."
	Hello    ID = "hello"     // "Hello. This is your verification call."
)

// DigitID returns the ID of the prompt that speaks digit d ('0' to '9'), or ""
// if d is not an ASCII digit.
func DigitID(d byte) ID {
	if d < '0' || d > '9' {
		return ""
	}
	const digits = "0123456789"
	i := d - '0'
	return ID(digits[i : i+1]) // a substring of a constant: no allocation
}

// RequiredIDs returns the IDs that every catalog must hold: the ten digits and
// the named prompts above. LoadFS fails if one is missing.
func RequiredIDs() []ID {
	ids := make([]ID, 0, 18)
	for d := byte('0'); d <= '9'; d++ {
		ids = append(ids, DigitID(d))
	}
	return append(ids, Press, CodeIs, Again, Repeat, NoKey, WrongKey, Goodbye, Hello)
}

// Sentinel errors; test with errors.Is.
var (
	// ErrUnknownLocale: no catalog for the requested locale.
	ErrUnknownLocale = errors.New("prompts: unknown locale")
	// ErrUnknownPrompt: the catalog holds no prompt with that ID.
	ErrUnknownPrompt = errors.New("prompts: unknown prompt")
	// ErrUnknownEncoding: an Encoding other than ULaw or ALaw.
	ErrUnknownEncoding = errors.New("prompts: unknown encoding")
	// ErrInvalidDigit: a challenge digit that is not '0' to '9'.
	ErrInvalidDigit = errors.New("prompts: invalid digit")
	// ErrInvalidCode: a code that is empty or holds a non-digit. The error
	// never contains the code itself.
	ErrInvalidCode = errors.New("prompts: invalid code")
)

//go:embed */*.wav
var embedded embed.FS

// Locales returns the locales embedded in the binary, sorted, e.g. ["en"].
func Locales() []string {
	entries, _ := fs.ReadDir(embedded, ".") // cannot fail on an embed.FS root
	var locales []string
	for _, e := range entries {
		if e.IsDir() {
			locales = append(locales, e.Name())
		}
	}
	return locales
}

// Load returns the catalog of an embedded locale (see Locales), every prompt
// validated and pre-encoded. An unknown locale yields an error wrapping
// ErrUnknownLocale. Load does all the encoding work, so call it once at start-up
// and share the Catalog.
func Load(locale string) (*Catalog, error) {
	return LoadFS(embedded, locale)
}

// LoadFS is Load from any file system holding <locale>/<id>.wav, for example
// os.DirFS("/etc/ivr/prompts") with an operator's own recordings. Every *.wav in
// the locale folder becomes a prompt named by its base name; other files are
// ignored. Each must be RIFF/WAVE, linear PCM, 16-bit, mono, 8000 Hz (otherwise a
// *WAVError naming the file, matching ErrInvalidWAV), and every ID of RequiredIDs
// must be present.
func LoadFS(fsys fs.FS, locale string) (*Catalog, error) {
	if locale == "" || locale == "." || strings.Contains(locale, "/") || !fs.ValidPath(locale) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownLocale, locale)
	}
	entries, err := fs.ReadDir(fsys, locale)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownLocale, locale)
	}
	if err != nil {
		return nil, fmt.Errorf("prompts: locale %q: %w", locale, err)
	}

	c := &Catalog{locale: locale, prompts: make(map[ID]*prompt)}
	for enc := range Encoding(numEncodings) {
		c.silence[enc] = encodeFrames(make([]int16, FrameSamples), enc)[0]
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".wav") || name == ".wav" {
			continue
		}
		p := path.Join(locale, name)
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("prompts: %w", err)
		}
		pcm, err := parseWAV(data)
		if err != nil {
			return nil, &WAVError{Path: p, Reason: err.Error()}
		}
		c.prompts[ID(strings.TrimSuffix(name, ".wav"))] = newPrompt(pcm)
	}
	for _, id := range RequiredIDs() {
		if _, ok := c.prompts[id]; !ok {
			return nil, fmt.Errorf("prompts: locale %q: missing %s.wav: %w", locale, id, fs.ErrNotExist)
		}
	}
	return c, nil
}

// Catalog holds the prompts of one locale, each as linear PCM and as pre-encoded
// µ-law and A-law frames. It is immutable after LoadFS returns and safe for
// concurrent use by any number of calls. The slices it hands out are shared:
// callers must not modify them. Get a Catalog from Load or LoadFS; the zero
// value holds no prompts.
type Catalog struct {
	locale  string
	prompts map[ID]*prompt
	silence [numEncodings][]byte // one frame of encoded silence per encoding
}

// prompt is one recording: samples padded to whole frames, and its frames in
// each encoding. Each encoding's frames are sub-slices of one backing array, with
// capacity capped at FrameSamples so an append by a careless caller cannot
// overwrite the next frame.
type prompt struct {
	pcm    []int16
	frames [numEncodings][][]byte
}

func newPrompt(pcm []int16) *prompt {
	if n := len(pcm) % FrameSamples; n != 0 {
		// Pad the last frame with silence.
		pcm = append(pcm, make([]int16, FrameSamples-n)...)
	}
	p := &prompt{pcm: pcm}
	for enc := range Encoding(numEncodings) {
		p.frames[enc] = encodeFrames(pcm, enc)
	}
	return p
}

// encodeFrames encodes pcm, a whole number of frames long, to G.711.
func encodeFrames(pcm []int16, enc Encoding) [][]byte {
	encode := g711.EncodeUlawFrame
	if enc == ALaw {
		encode = g711.EncodeAlawFrame
	}
	buf := make([]byte, len(pcm))
	for i, s := range pcm {
		buf[i] = encode(s)
	}
	frames := make([][]byte, len(buf)/FrameSamples)
	for i := range frames {
		frames[i] = buf[i*FrameSamples : (i+1)*FrameSamples : (i+1)*FrameSamples]
	}
	return frames
}

// Locale returns the locale the catalog was loaded for, e.g. "en".
func (c *Catalog) Locale() string { return c.locale }

// IDs returns the IDs of all prompts in the catalog, sorted.
func (c *Catalog) IDs() []ID {
	ids := make([]ID, 0, len(c.prompts))
	for id := range c.prompts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Frames returns the pre-encoded frames of a prompt, each FrameSamples bytes, the
// last padded with silence; nil if the catalog has no such prompt or enc is
// unknown. The frames are shared by every caller: do not modify them.
func (c *Catalog) Frames(id ID, enc Encoding) [][]byte {
	p, ok := c.prompts[id]
	if !ok || !enc.valid() {
		return nil
	}
	return p.frames[enc]
}

// PCM returns the linear 16-bit samples of a prompt at 8000 Hz, padded with
// silence to whole frames (len is FrameSamples × the number of frames), or nil if
// the catalog has no such prompt. The slice is shared: do not modify it.
func (c *Catalog) PCM(id ID) []int16 {
	p, ok := c.prompts[id]
	if !ok {
		return nil
	}
	return p.pcm
}

// SilenceFrame returns one frame of encoded silence (160 bytes of 0xFF for µ-law,
// 0xD5 for A-law), or nil if enc is unknown. Every call returns the same shared
// slice: do not modify it.
func (c *Catalog) SilenceFrame(enc Encoding) []byte {
	if !enc.valid() {
		return nil
	}
	return c.silence[enc]
}

// Duration returns the playing time of frames: 20 ms per frame.
func Duration(frames [][]byte) time.Duration {
	return time.Duration(len(frames)) * FrameDuration
}
