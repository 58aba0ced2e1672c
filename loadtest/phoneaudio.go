package loadtest

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/voiceotp/voiceotp/media"
	"github.com/voiceotp/voiceotp/prompts"
)

// ErrPhoneAudio is matched (with errors.Is) by every error of LoadPhoneAudio about a file it could read
// but cannot use: empty, not a WAV file, truncated, too long, or not 8000 Hz mono audio.
var ErrPhoneAudio = errors.New("loadtest: unusable phone audio")

// Limits of a phone's recording and of what a call queues of it.
const (
	// MaxPhoneAudio is the longest recording LoadPhoneAudio accepts. A phone loops it, so a longer
	// one would only cost memory.
	MaxPhoneAudio = 10 * time.Minute
	// maxPhoneAudioFile bounds the bytes read: MaxPhoneAudio of 16-bit samples and room for other
	// chunks.
	maxPhoneAudioFile = int64(MaxPhoneAudio/time.Second)*16000 + 1<<20
	// loopSlack is how long a call's audio lasts beyond Config.MaxCallDuration: the media runs a little
	// before the phone starts counting and while its BYE is answered.
	loopSlack = 10 * time.Second
	// maxLoop bounds the audio a call queues; a call that outlives it sends silence.
	maxLoop = time.Hour
)

// PhoneAudio is a recording that virtual phones send back instead of silence, looped for the whole of
// each answered call, the way a person's voice or a room's noise reaches the server: its receive path
// decodes it, and its in-band DTMF detector hears it and must not take it for a key press.
//
// It is encoded once, when loaded, into 20 ms frames of µ-law (PCMU) and A-law (PCMA), the last frame
// padded with silence, and shared read-only by every call of every phone: a call queues on its
// media.Sender a view of a tape of references to those frames (see Config.Audio), so no audio is copied
// per call and nothing is allocated per packet. Get one from LoadPhoneAudio (a zero PhoneAudio sends
// silence). Its methods are safe for concurrent use.
type PhoneAudio struct {
	name     string
	duration time.Duration
	frames   [2][][]byte // one pass of the recording, indexed by prompts.Encoding (ULaw, ALaw)

	mu   sync.Mutex  // guards tape
	tape [2][][]byte // per encoding, frames end to end: tape[enc][i] is frames[enc][i%len]. Grown by loop, never modified once handed out.
}

// LoadPhoneAudio reads a WAV file for phones to send back: 8000 Hz mono, either 16-bit linear PCM (what
// the prompts are recorded in, and what WriteWAV writes) or 8-bit G.711 µ-law or A-law; at most
// MaxPhoneAudio long. A file of any other format is refused, with an error that names the format found
// and the one wanted, as is an empty, truncated or non-WAV file (all matching ErrPhoneAudio). It does
// all the decoding and encoding work: call it once per run and share the result.
func LoadPhoneAudio(path string) (*PhoneAudio, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loadtest: phone audio: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPhoneAudioFile+1))
	if err != nil {
		return nil, fmt.Errorf("loadtest: phone audio: %w", err)
	}
	if int64(len(b)) > maxPhoneAudioFile {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrPhoneAudio, path, maxPhoneAudioFile)
	}
	pcm, err := readWAV(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrPhoneAudio, path, err.Error())
	}
	a, err := newPhoneAudio("file:"+filepath.Base(path), pcm)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrPhoneAudio, path, err.Error())
	}
	return a, nil
}

// newPhoneAudio encodes pcm, 8000 Hz samples, for both encodings.
func newPhoneAudio(name string, pcm []int16) (*PhoneAudio, error) {
	if len(pcm) == 0 {
		return nil, errors.New("no samples")
	}
	d := time.Duration(len(pcm)) * time.Second / 8000
	if d > MaxPhoneAudio {
		return nil, fmt.Errorf("%s of audio, at most %s", d.Round(time.Second), MaxPhoneAudio)
	}
	a := &PhoneAudio{name: name, duration: d}
	for _, enc := range []prompts.Encoding{prompts.ULaw, prompts.ALaw} {
		a.frames[enc] = encodeFrames(pcm, enc)
	}
	return a, nil
}

// Name is how reports show the audio: "file:" and the file's base name, e.g. "file:hello.wav".
func (a *PhoneAudio) Name() string { return a.name }

// Duration is the length of one pass of the recording, before padding to whole frames.
func (a *PhoneAudio) Duration() time.Duration { return a.duration }

// callFrames is what one call sends: the recording in enc, looped to last maxCall and the hang-up after
// it (at most maxLoop), from a random frame so that the calls of a farm are not in phase. Only the first
// call of a phone with a new maxCall allocates; the others lock, draw and slice.
func (a *PhoneAudio) callFrames(enc prompts.Encoding, maxCall time.Duration) [][]byte {
	if len(a.frames[enc]) == 0 {
		return nil // a zero PhoneAudio: silence
	}
	n := int(min(maxCall+loopSlack, maxLoop) / media.FrameDuration)
	return a.loop(enc, rand.IntN(len(a.frames[enc])), n)
}

// loop returns n frames of the recording in enc, starting at frame off (0 ≤ off < the number of
// frames) and wrapping around to the first frame as often as needed. The result is a view of the
// shared tape, capacity capped: it holds references to the encoded frames, copies none, and must not be
// modified. The tape grows (a new one; views already handed out keep the old) only when a longer loop
// than ever before is asked for.
func (a *PhoneAudio) loop(enc prompts.Encoding, off, n int) [][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, t := a.frames[enc], a.tape[enc]
	if need := len(f) - 1 + n; len(t) < need { // long enough for any offset
		t = make([][]byte, need)
		for i := range t {
			t[i] = f[i%len(f)]
		}
		a.tape[enc] = t
	}
	return t[off : off+n : off+n]
}
