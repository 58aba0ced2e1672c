package prompts_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/zaf/g711"

	"github.com/voiceotp/voiceotp/prompts"
)

func loadEN(tb testing.TB) *prompts.Catalog {
	tb.Helper()
	c, err := prompts.Load("en")
	if err != nil {
		tb.Fatalf(`Load("en"): %v`, err)
	}
	return c
}

var encodings = []prompts.Encoding{prompts.ULaw, prompts.ALaw}

func TestLocales(t *testing.T) {
	if got := prompts.Locales(); !slices.Contains(got, "en") {
		t.Errorf("Locales() = %v, want it to contain en", got)
	}
}

func TestLoadEmbedded(t *testing.T) {
	c := loadEN(t)
	if c.Locale() != "en" {
		t.Errorf("Locale() = %q", c.Locale())
	}
	if got := c.IDs(); len(got) != len(prompts.RequiredIDs()) {
		t.Errorf("IDs() = %v, want the %d required IDs", got, len(prompts.RequiredIDs()))
	}
	for _, id := range prompts.RequiredIDs() {
		t.Run(string(id), func(t *testing.T) {
			pcm := c.PCM(id)
			if len(pcm) == 0 {
				t.Fatal("no PCM")
			}
			for _, enc := range encodings {
				frames := c.Frames(id, enc)
				if len(frames) == 0 {
					t.Fatalf("%v: no frames", enc)
				}
				if len(pcm) != len(frames)*prompts.FrameSamples {
					t.Errorf("%v: %d samples for %d frames", enc, len(pcm), len(frames))
				}
				for i, f := range frames {
					if len(f) != prompts.FrameSamples || cap(f) != prompts.FrameSamples {
						t.Fatalf("%v: frame %d len %d cap %d, want 160", enc, i, len(f), cap(f))
					}
				}
			}
			// Trimmed and normalised by gen/generate.sh: loud, and starts with speech.
			var peak int
			for _, s := range pcm {
				peak = max(peak, abs(int(s)))
			}
			if peak < 16000 {
				t.Errorf("peak %d, want a normalised recording (about -3 dBFS)", peak)
			}
			if d := prompts.Duration(c.Frames(id, prompts.ULaw)); d > 3e9 {
				t.Errorf("duration %v: silence not trimmed?", d)
			}
		})
	}
}

func TestLoadUnknownLocale(t *testing.T) {
	for _, locale := range []string{"fr", "", ".", "..", "../en", "en/..", "/en", "en/", "gen"} {
		t.Run(locale, func(t *testing.T) {
			c, err := prompts.Load(locale)
			if !errors.Is(err, prompts.ErrUnknownLocale) {
				t.Fatalf("Load(%q) = %v, %v; want ErrUnknownLocale", locale, c, err)
			}
		})
	}
}

func TestUnknownPromptAndEncoding(t *testing.T) {
	c := loadEN(t)
	if f := c.Frames("nope", prompts.ULaw); f != nil {
		t.Errorf("Frames(unknown) = %d frames, want nil", len(f))
	}
	if f := c.Frames(prompts.Hello, prompts.Encoding(9)); f != nil {
		t.Errorf("Frames(bad encoding) = %d frames, want nil", len(f))
	}
	if p := c.PCM("nope"); p != nil {
		t.Errorf("PCM(unknown) = %d samples, want nil", len(p))
	}
	if s := c.SilenceFrame(prompts.Encoding(2)); s != nil {
		t.Errorf("SilenceFrame(bad encoding) = %x, want nil", s)
	}
}

func TestEncodingString(t *testing.T) {
	tests := []struct {
		enc  prompts.Encoding
		want string
	}{
		{prompts.ULaw, "PCMU"},
		{prompts.ALaw, "PCMA"},
		{prompts.Encoding(7), "Encoding(7)"},
	}
	for _, tt := range tests {
		if got := tt.enc.String(); got != tt.want {
			t.Errorf("%d.String() = %q, want %q", uint8(tt.enc), got, tt.want)
		}
	}
}

func TestSilenceFrame(t *testing.T) {
	c := loadEN(t)
	tests := []struct {
		enc  prompts.Encoding
		want byte
	}{
		{prompts.ULaw, 0xFF},
		{prompts.ALaw, 0xD5},
	}
	for _, tt := range tests {
		t.Run(tt.enc.String(), func(t *testing.T) {
			s := c.SilenceFrame(tt.enc)
			if !bytes.Equal(s, bytes.Repeat([]byte{tt.want}, prompts.FrameSamples)) {
				t.Errorf("SilenceFrame = %x, want 160 × %#x", s, tt.want)
			}
		})
	}
}

// TestEncodedFramesDecodeToPCM checks that µ-law and A-law frames differ and
// that each decodes back to the linear samples within G.711's quantisation.
func TestEncodedFramesDecodeToPCM(t *testing.T) {
	c := loadEN(t)
	decode := map[prompts.Encoding]func(uint8) int16{
		prompts.ULaw: g711.DecodeUlawFrame,
		prompts.ALaw: g711.DecodeAlawFrame,
	}
	for _, id := range prompts.RequiredIDs() {
		t.Run(string(id), func(t *testing.T) {
			u, a := slices.Concat(c.Frames(id, prompts.ULaw)...), slices.Concat(c.Frames(id, prompts.ALaw)...)
			if bytes.Equal(u, a) {
				t.Error("µ-law and A-law frames are identical")
			}
			pcm := c.PCM(id)
			for _, enc := range encodings {
				var signal, noise float64
				for i, b := range map[prompts.Encoding][]byte{prompts.ULaw: u, prompts.ALaw: a}[enc] {
					x, y := float64(pcm[i]), float64(decode[enc](b))
					// G.711 keeps about 4 significant bits plus the segment:
					// the error is below 1/16 of the magnitude, or one small step.
					if math.Abs(x-y) > math.Abs(x)/16+64 {
						t.Fatalf("%v sample %d: %v decodes to %v", enc, i, x, y)
					}
					signal += x * x
					noise += (x - y) * (x - y)
				}
				if snr := 10 * math.Log10(signal/noise); snr < 30 {
					t.Errorf("%v: SNR %.1f dB, want ≥ 30 dB", enc, snr)
				}
			}
		})
	}
}

// wav is a valid 8 kHz mono 16-bit WAV of samples.
func wav(samples ...int16) []byte {
	le := binary.LittleEndian
	b := []byte("RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data")
	b = le.AppendUint32(b, uint32(2*len(samples)))
	for _, s := range samples {
		b = le.AppendUint16(b, uint16(s))
	}
	le.PutUint32(b[4:], uint32(len(b)-8))
	return b
}

// fullFS returns a file system holding a valid catalog for locale "xx": every
// required prompt, each 161 samples of a constant (so two frames, the second
// padded with 159 samples of silence).
func fullFS() fstest.MapFS {
	fsys := fstest.MapFS{}
	for i, id := range prompts.RequiredIDs() {
		fsys["xx/"+string(id)+".wav"] = &fstest.MapFile{Data: wav(slices.Repeat([]int16{int16(1000 * (i + 1))}, 161)...)}
	}
	return fsys
}

func TestLoadFS(t *testing.T) {
	fsys := fullFS()
	fsys["xx/catalog.txt"] = &fstest.MapFile{Data: []byte("7|seven\n")}
	fsys["xx/extra.wav"] = &fstest.MapFile{Data: wav(1, 2, 3)}
	fsys["xx/sub/ignored.wav"] = &fstest.MapFile{Data: []byte("not even a wav")}
	c, err := prompts.LoadFS(fsys, "xx")
	if err != nil {
		t.Fatalf("LoadFS: %v", err)
	}
	if !slices.Contains(c.IDs(), "extra") || slices.Contains(c.IDs(), "catalog") {
		t.Errorf("IDs() = %v, want extra and no catalog", c.IDs())
	}
	frames := c.Frames(prompts.DigitID('0'), prompts.ULaw)
	if len(frames) != 2 {
		t.Fatalf("161 samples made %d frames, want 2", len(frames))
	}
	want := append([]byte{g711.EncodeUlawFrame(1000)}, bytes.Repeat([]byte{0xFF}, 159)...)
	if !bytes.Equal(frames[1], want) {
		t.Errorf("last frame = %x, want one sample then silence padding", frames[1])
	}
	if pcm := c.PCM(prompts.DigitID('0')); len(pcm) != 320 || pcm[160] != 1000 || pcm[161] != 0 {
		t.Errorf("PCM not padded with silence: len %d", len(pcm))
	}
}

func TestLoadFSBadWAV(t *testing.T) {
	good := wav(1, 2, 3, 4)
	with := func(off int, b ...byte) []byte {
		w := slices.Clone(good)
		copy(w[off:], b)
		return w
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"wrong rate", with(24, 0x80, 0x3e, 0, 0), "sample rate 16000 Hz, want 8000 Hz"},
		{"stereo", with(22, 2, 0), "2 channels, want 1 (mono)"},
		{"8-bit", with(34, 8, 0), "8 bits per sample, want 16"},
		{"truncated", good[:len(good)-1], "truncated"},
		{"garbage", []byte("\x00\x01garbage\xff"), "not a RIFF/WAVE file"},
		{"empty", []byte{}, "not a RIFF/WAVE file"},
		{"mp3", []byte("ID3\x04\x00\x00\x00\x00\x00\x00"), "not a RIFF/WAVE file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fullFS()
			fsys["xx/no_key.wav"] = &fstest.MapFile{Data: tt.data}
			c, err := prompts.LoadFS(fsys, "xx")
			if err == nil {
				t.Fatalf("LoadFS = %v, want error", c)
			}
			var we *prompts.WAVError
			if !errors.As(err, &we) || we.Path != "xx/no_key.wav" || !errors.Is(err, prompts.ErrInvalidWAV) {
				t.Fatalf("error = %#v, want a *WAVError for xx/no_key.wav", err)
			}
			if !strings.Contains(err.Error(), "xx/no_key.wav") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want the file name and %q", err, tt.want)
			}
		})
	}
}

func TestLoadFSMissingPrompt(t *testing.T) {
	fsys := fullFS()
	delete(fsys, "xx/wrong_key.wav")
	_, err := prompts.LoadFS(fsys, "xx")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "wrong_key.wav") {
		t.Errorf("error = %v, want fs.ErrNotExist naming wrong_key.wav", err)
	}
	if _, err := prompts.LoadFS(fsys, "yy"); !errors.Is(err, prompts.ErrUnknownLocale) {
		t.Errorf("LoadFS(yy) error = %v, want ErrUnknownLocale", err)
	}
}

// TestConcurrentUse runs utterance builders on one catalog from many
// goroutines; with -race it proves the catalog is read-only after Load.
func TestConcurrentUse(t *testing.T) {
	c := loadEN(t)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			enc := encodings[g%2]
			for i := range 50 {
				if _, err := c.Challenge(enc, byte('0'+i%10)); err != nil {
					t.Error(err)
				}
				if _, err := c.Code(enc, "4829137", prompts.CodeOptions{}); err != nil {
					t.Error(err)
				}
				_ = c.Frames(prompts.Hello, enc)
				_ = c.PCM(prompts.Goodbye)
			}
		})
	}
	wg.Wait()
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
