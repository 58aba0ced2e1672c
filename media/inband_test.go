package media

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zaf/g711"
)

// signal is test audio at 8000 Hz in floating point, on the 16-bit scale, built piece by piece.
type signal struct {
	x   []float64
	rng *rand.Rand
}

func newSignal(seed uint64) *signal {
	return &signal{rng: rand.New(rand.NewPCG(seed, 0x5eed))}
}

// samples is the number of samples in d at 8000 Hz.
func samples(d time.Duration) int { return int(d * 8000 / time.Second) }

// amplitude is the peak of a sine at level dBm0 (see dBm0Power).
func amplitude(dBm0 float64) float64 { return math.Sqrt(2 * dBm0Power * math.Pow(10, dBm0/10)) }

// keyFreqs returns the Q.23 row and column frequencies of key.
func keyFreqs(key byte) (row, col float64) {
	i := strings.IndexByte(keypad, key)
	if i < 0 {
		panic(fmt.Sprintf("no key %q", key))
	}
	f := dtmfFreqs()
	return f[i/4], f[4+i%4]
}

// silence appends d of silence.
func (s *signal) silence(d time.Duration) *signal {
	s.x = append(s.x, make([]float64, samples(d))...)
	return s
}

// tones appends d of the sum of sines at freqs, each at the level in dBm0 of the same index, with
// random phases.
func (s *signal) tones(d time.Duration, freqs, levels []float64) *signal {
	start := len(s.x)
	s.x = append(s.x, make([]float64, samples(d))...)
	for i, f := range freqs {
		a, ph := amplitude(levels[i]), s.rng.Float64()*2*math.Pi
		for n := range s.x[start:] {
			s.x[start+n] += a * math.Sin(2*math.Pi*f*float64(n)/8000+ph)
		}
	}
	return s
}

// key appends a key press of duration d, the row tone at rowDBm0 and the column tone at colDBm0.
func (s *signal) key(key byte, d time.Duration, rowDBm0, colDBm0 float64) *signal {
	row, col := keyFreqs(key)
	return s.tones(d, []float64{row, col}, []float64{rowDBm0, colDBm0})
}

// noise adds white (or, with pink, 1/f) noise at a mean power of dBm0 to the whole signal.
func (s *signal) noise(dBm0 float64, pink bool) *signal {
	n := make([]float64, len(s.x))
	var b0, b1, b2, b3, b4, b5, b6 float64
	for i := range n {
		w := s.rng.NormFloat64()
		if pink {
			// Paul Kellet's refined pink filter: within 0.05 dB of 1/f above 10 Hz.
			b0 = 0.99886*b0 + w*0.0555179
			b1 = 0.99332*b1 + w*0.0750759
			b2 = 0.96900*b2 + w*0.1538520
			b3 = 0.86650*b3 + w*0.3104856
			b4 = 0.55000*b4 + w*0.5329522
			b5 = -0.7616*b5 - w*0.0168980
			w = b0 + b1 + b2 + b3 + b4 + b5 + b6 + w*0.5362
			b6 = w * 0.115926
		}
		n[i] = w
	}
	var p float64
	for _, v := range n {
		p += v * v
	}
	if p == 0 {
		return s
	}
	g := math.Sqrt(dBm0Power * math.Pow(10, dBm0/10) / (p / float64(len(n))))
	for i := range s.x {
		s.x[i] += g * n[i]
	}
	return s
}

// pcm rounds the signal to 16-bit samples, clipping.
func (s *signal) pcm() []int16 {
	out := make([]int16, len(s.x))
	for i, v := range s.x {
		out[i] = int16(math.Round(max(-32768, min(32767, v))))
	}
	return out
}

// testCodec is a path audio takes before the detector: none, or a G.711 encode and decode.
type testCodec struct {
	name    string
	through func([]int16) []int16
}

func testCodecs() []testCodec {
	return []testCodec{
		{"linear", func(p []int16) []int16 { return p }},
		{"ulaw", func(p []int16) []int16 {
			out := make([]int16, len(p))
			for i, v := range p {
				out[i] = g711.DecodeUlawFrame(g711.EncodeUlawFrame(v))
			}
			return out
		}},
		{"alaw", func(p []int16) []int16 {
			out := make([]int16, len(p))
			for i, v := range p {
				out[i] = g711.DecodeAlawFrame(g711.EncodeAlawFrame(v))
			}
			return out
		}},
	}
}

// detect feeds pcm to a new detector in 20 ms frames, as RTP delivers it, and returns the keys.
func detect(pcm []int16) string {
	d := NewToneDetector()
	var got []byte
	for len(pcm) > 0 {
		n := min(len(pcm), FrameSize)
		got = append(got, d.Write(pcm[:n])...)
		pcm = pcm[n:]
	}
	// Flush the last partial block with silence.
	got = append(got, d.Write(make([]int16, toneBlock))...)
	return string(got)
}

// blockHits runs the per-block classifier alone over pcm: how many blocks look like a key and the
// longest run of consecutive blocks with the same key. It measures how close audio came to a false
// digit (a digit needs a run of toneHits).
func blockHits(pcm []int16) (hits, longest int) {
	d := NewToneDetector()
	run, last := 0, -1
	for len(pcm) >= toneBlock {
		copy(d.block[:], pcm)
		pcm = pcm[toneBlock:]
		k, _ := d.classify()
		switch {
		case k < 0:
			run = 0
		case k == last:
			run++
		default:
			run = 1
		}
		last = k
		if k >= 0 {
			hits++
		}
		longest = max(longest, run)
	}
	return hits, longest
}

func TestToneDetectorKeys(t *testing.T) {
	// Every key at every duration, level and codec, at several alignments of the tone to the blocks.
	leads := []int{0, 37, 73, 109} // samples of silence before the tone
	var cases, detected int
	for _, c := range testCodecs() {
		for _, level := range []float64{-10, -15, -20, -25, -30} {
			for _, dur := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond} {
				t.Run(fmt.Sprintf("%s/%gdBm0/%v", c.name, level, dur), func(t *testing.T) {
					for i := range len(keypad) {
						key := keypad[i]
						for _, lead := range leads {
							s := newSignal(uint64(i*1000 + lead))
							s.x = make([]float64, lead)
							s.key(key, dur, level, level).silence(100 * time.Millisecond)
							got := detect(c.through(s.pcm()))
							cases++
							if got == string(key) {
								detected++
							} else {
								t.Errorf("key %c after %d samples: detected %q", key, lead, got)
							}
						}
					}
				})
			}
		}
	}
	t.Logf("detected %d of %d key presses exactly once", detected, cases)
}

func TestToneDetector(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name  string
		build func(s *signal)
		want  string
	}{
		{"long press is one digit", func(s *signal) { s.key('5', 2*time.Second, -20, -20).silence(50 * ms) }, "5"},
		{"long press in white noise at 20 dB SNR", func(s *signal) {
			s.silence(40*ms).key('8', 2*time.Second, -20, -20).silence(100*ms).noise(-37, false)
		}, "8"},
		{"long press in pink noise at 15 dB SNR", func(s *signal) {
			s.silence(40*ms).key('0', 2*time.Second, -15, -15).silence(100*ms).noise(-27, true)
		}, "0"},
		{"same key twice with a 60 ms gap", func(s *signal) {
			s.key('3', 100*ms, -20, -20).silence(60*ms).key('3', 100*ms, -20, -20).silence(50 * ms)
		}, "33"},
		{"same key twice with a 40 ms gap", func(s *signal) {
			s.key('#', 70*ms, -20, -20).silence(40*ms).key('#', 70*ms, -20, -20).silence(50 * ms)
		}, "##"},
		{"a 10 ms dropout is not a new press", func(s *signal) {
			s.key('7', 200*ms, -20, -20).silence(10*ms).key('7', 200*ms, -20, -20).silence(50 * ms)
		}, "7"},
		{"a sequence", func(s *signal) {
			for _, k := range []byte("1234567890*#ABCD") {
				s.key(k, 60*ms, -18, -16).silence(60 * ms)
			}
		}, "1234567890*#ABCD"},
		{"key change without a pause", func(s *signal) { s.key('1', 100*ms, -20, -20).key('9', 100*ms, -20, -20) }, "19"},
		{"20 ms is too short", func(s *signal) { s.key('5', 20*ms, -10, -10).silence(50 * ms) }, ""},
		{"23 ms is too short", func(s *signal) { s.key('D', 23*ms, -10, -10).silence(50 * ms) }, ""},
		{"normal twist 6 dB", func(s *signal) { s.key('2', 100*ms, -14, -20) }, "2"},
		{"reverse twist 3 dB", func(s *signal) { s.key('2', 100*ms, -20, -17) }, "2"},
		{"normal twist 11 dB", func(s *signal) { s.key('2', 100*ms, -10, -21) }, ""},
		{"reverse twist 7 dB", func(s *signal) { s.key('2', 100*ms, -20, -13) }, ""},
		{"below the level floor", func(s *signal) { s.key('6', 500*ms, -40, -40) }, ""},
		{"frequencies 1.5% high", func(s *signal) {
			row, col := keyFreqs('9')
			s.tones(100*ms, []float64{row * 1.015, col * 1.015}, []float64{-20, -20})
		}, "9"},
		{"frequencies 1.5% low", func(s *signal) {
			row, col := keyFreqs('9')
			s.tones(100*ms, []float64{row * 0.985, col * 0.985}, []float64{-20, -20})
		}, "9"},
		{"a third tone in the low group", func(s *signal) {
			s.tones(200*ms, []float64{697, 852, 1209}, []float64{-20, -20, -20})
		}, ""},
		{"with its second harmonics", func(s *signal) {
			s.tones(200*ms, []float64{770, 1336, 1540, 2672}, []float64{-20, -20, -22, -22})
		}, ""},
		{"silence", func(s *signal) { s.silence(time.Second) }, ""},
	}
	for _, f := range dtmfFreqs() {
		tests = append(tests, struct {
			name  string
			build func(s *signal)
			want  string
		}{fmt.Sprintf("single tone %g Hz", f), func(s *signal) { s.tones(time.Second, []float64{f}, []float64{-10}) }, ""})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range testCodecs() {
				s := newSignal(1)
				tt.build(s)
				if got := detect(c.through(s.pcm())); got != tt.want {
					t.Errorf("%s: detected %q, want %q", c.name, got, tt.want)
				}
			}
		})
	}
}

func TestToneDetectorTwistAllKeys(t *testing.T) {
	// Inside the twist limits every key passes, including those whose row harmonic falls next to their
	// column (697×2 near 1336, 770×2 near 1477); outside, none does. A block measures the twist to
	// within about ±1.5 dB near the limits (the louder tone leaks into the other's filter, in or out
	// of phase), so "inside" and "outside" are 1.5 dB from them.
	tests := []struct {
		name     string
		row, col float64 // dBm0
		want     bool
	}{
		{"normal 6.5 dB", -13.5, -20, true},
		{"reverse 2.5 dB", -20, -17.5, true},
		{"normal 9.5 dB", -10.5, -20, false},
		{"reverse 5.5 dB", -20, -14.5, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range testCodecs() {
				for i := range len(keypad) {
					s := newSignal(uint64(i)).silence(20*time.Millisecond).key(keypad[i], 100*time.Millisecond, tt.row, tt.col)
					want := ""
					if tt.want {
						want = string(keypad[i])
					}
					if got := detect(c.through(s.pcm())); got != want {
						t.Errorf("%s key %c: detected %q, want %q", c.name, keypad[i], got, want)
					}
				}
			}
		})
	}
}

func TestToneDetectorTiming(t *testing.T) {
	// Q.24 timing, at every alignment of the signal to the detector's blocks, loud and soft: minimum
	// tone duration, minimum pause between two presses of one key, and interruptions to bridge.
	ms := time.Millisecond
	tests := []struct {
		name  string
		build func(s *signal, level float64)
		want  string
	}{
		{"20 ms is ignored", func(s *signal, l float64) { s.key('5', 20*ms, l, l) }, ""},
		{"30 ms is ignored", func(s *signal, l float64) { s.key('D', 30*ms, l, l) }, ""},
		{"50 ms is a press", func(s *signal, l float64) { s.key('0', 50*ms, l, l) }, "0"},
		{"40 ms pause separates", func(s *signal, l float64) {
			s.key('1', 80*ms, l, l).silence(40*ms).key('1', 80*ms, l, l)
		}, "11"},
		{"12 ms interruption is bridged", func(s *signal, l float64) {
			s.key('#', 80*ms, l, l).silence(12*ms).key('#', 80*ms, l, l)
		}, "#"},
	}
	for _, tt := range tests {
		for _, level := range []float64{-10, -30} {
			t.Run(fmt.Sprintf("%s/%gdBm0", tt.name, level), func(t *testing.T) {
				for lead := range toneBlock {
					s := newSignal(uint64(lead))
					s.x = make([]float64, lead)
					tt.build(s, level)
					s.silence(50 * ms)
					if got := detect(s.pcm()); got != tt.want {
						t.Fatalf("after %d samples: detected %q, want %q", lead, got, tt.want)
					}
				}
			})
		}
	}
}

func TestToneDetectorChunking(t *testing.T) {
	s := newSignal(7)
	for _, k := range []byte("159#") {
		s.key(k, 80*time.Millisecond, -20, -20).silence(80 * time.Millisecond)
	}
	pcm := s.pcm()
	for _, chunk := range []int{1, 7, 110, 160, 1000, len(pcm)} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			d := NewToneDetector()
			var got []byte
			for p := pcm; len(p) > 0; {
				n := min(chunk, len(p))
				got = append(got, d.Write(p[:n])...)
				p = p[n:]
			}
			if string(got) != "159#" {
				t.Errorf("detected %q, want \"159#\"", got)
			}
		})
	}
}

// readWAV reads an 8 kHz, 16-bit, mono PCM WAV file (RIFF, WAVE, "fmt " and "data" chunks).
func readWAV(t *testing.T, path string) []int16 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		t.Fatalf("%s: not a RIFF WAVE file", path)
	}
	var fmtOK bool
	for p := b[12:]; len(p) >= 8; {
		id, size := string(p[:4]), int(binary.LittleEndian.Uint32(p[4:8]))
		p = p[8:]
		if size > len(p) {
			t.Fatalf("%s: chunk %q of %d bytes overruns the file", path, id, size)
		}
		body := p[:size]
		switch id {
		case "fmt ":
			if size < 16 {
				t.Fatalf("%s: short fmt chunk", path)
			}
			format, channels := binary.LittleEndian.Uint16(body[0:]), binary.LittleEndian.Uint16(body[2:])
			rate, bits := binary.LittleEndian.Uint32(body[4:]), binary.LittleEndian.Uint16(body[14:])
			if format != 1 || channels != 1 || rate != 8000 || bits != 16 {
				t.Fatalf("%s: format %d, %d channels, %d Hz, %d bits; want PCM mono 8000 Hz 16 bits", path, format, channels, rate, bits)
			}
			fmtOK = true
		case "data":
			if !fmtOK {
				t.Fatalf("%s: data before fmt", path)
			}
			out := make([]int16, size/2)
			for i := range out {
				out[i] = int16(binary.LittleEndian.Uint16(body[2*i:]))
			}
			return out
		}
		p = p[size+size%2:] // chunks are padded to an even size
	}
	t.Fatalf("%s: no data chunk", path)
	return nil
}

// scale multiplies pcm by the gain in dB, clipping.
func scale(pcm []int16, db float64) []int16 {
	g := math.Pow(10, db/20)
	out := make([]int16, len(pcm))
	for i, v := range pcm {
		out[i] = int16(max(-32768, min(32767, math.Round(float64(v)*g))))
	}
	return out
}

func TestToneDetectorIgnoresSpeech(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "prompts", "en", "*.wav"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no prompts found in ../prompts/en (%v)", err)
	}
	var all []int16
	inputs := map[string][]int16{}
	for _, p := range paths {
		pcm := readWAV(t, p)
		inputs[filepath.Base(p)] = pcm
		all = append(all, pcm...)
		all = append(all, make([]int16, 800)...) // 100 ms between prompts, as an utterance has
	}
	inputs["all prompts"] = all
	var blocks, hits, longest int
	for name, pcm := range inputs {
		for _, c := range testCodecs() {
			// The prompts peak at -3 dBFS; real speech on a call is often louder or softer.
			for _, gain := range []float64{0, -12, -24} {
				in := c.through(scale(pcm, gain))
				if got := detect(in); got != "" {
					t.Errorf("%s through %s at %+g dB: detected %q", name, c.name, gain, got)
				}
				h, l := blockHits(in)
				blocks += len(in) / toneBlock
				hits += h
				longest = max(longest, l)
			}
		}
	}
	t.Logf("speech: %d prompts (%.1f s) × 3 codecs × 3 gains: 0 digits; %d of %d blocks looked like a key, longest run %d (a digit needs %d)",
		len(paths), float64(len(all))/8000, hits, blocks, longest, toneHits)
}

func TestToneDetectorIgnoresNoiseAndMusic(t *testing.T) {
	sec := time.Second
	// chord appends d of the notes (Hz), each with its 2nd and 3rd harmonics 6 and 12 dB down.
	chord := func(s *signal, d time.Duration, level float64, notes ...float64) {
		var f, l []float64
		for _, n := range notes {
			f = append(f, n, 2*n, 3*n)
			l = append(l, level, level-6, level-12)
		}
		s.tones(d, f, l)
	}
	tests := []struct {
		name  string
		build func(s *signal)
	}{
		{"white noise -10 dBm0", func(s *signal) { s.silence(10*sec).noise(-10, false) }},
		{"white noise -30 dBm0", func(s *signal) { s.silence(10*sec).noise(-30, false) }},
		{"pink noise -10 dBm0", func(s *signal) { s.silence(10*sec).noise(-10, true) }},
		{"pink noise -30 dBm0", func(s *signal) { s.silence(10*sec).noise(-30, true) }},
		{"A major pure", func(s *signal) { s.tones(2*sec, []float64{440, 554.37, 659.26}, []float64{-15, -15, -15}) }},
		{"A major with harmonics", func(s *signal) { chord(s, 2*sec, -15, 440, 554.37, 659.26) }},
		{"F major near the rows", func(s *signal) { chord(s, 2*sec, -15, 698.46, 880, 1046.5) }},
		{"G major near the columns", func(s *signal) { chord(s, 2*sec, -15, 783.99, 987.77, 1174.66) }},
		{"D major seventh", func(s *signal) { chord(s, 2*sec, -15, 587.33, 739.99, 880, 1108.73) }},
		{"arpeggio", func(s *signal) {
			for _, n := range []float64{261.63, 329.63, 392, 523.25, 659.26, 783.99, 1046.5, 1318.5} {
				chord(s, 150*time.Millisecond, -12, n)
			}
		}},
		{"vowel /a/ gliding", func(s *signal) { vowel(s, 3*sec, 100, 300, 730, 1090, -15) }},
		{"vowel /i/ gliding", func(s *signal) { vowel(s, 3*sec, 120, 320, 270, 2290, -15) }},
		{"vowel on the rows and columns", func(s *signal) { vowel(s, 3*sec, 80, 350, 770, 1336, -15) }},
		{"sweep 300-3400 Hz", func(s *signal) { sweep(s, 3*sec, 300, 3400, -10) }},
	}
	var blocks, hits, longest int
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range testCodecs() {
				s := newSignal(3)
				tt.build(s)
				in := c.through(s.pcm())
				if got := detect(in); got != "" {
					t.Errorf("%s: detected %q", c.name, got)
				}
				h, l := blockHits(in)
				blocks += len(in) / toneBlock
				hits += h
				longest = max(longest, l)
			}
		})
	}
	t.Logf("noise and music: %d signals × 3 codecs: %d of %d blocks looked like a key, longest run %d (a digit needs %d)",
		len(tests), hits, blocks, longest, toneHits)
}

// vowel appends d of a voiced vowel: a pulse-like harmonic series whose fundamental glides from f0
// to f1, shaped by two formants at fa and fb (bandwidth 80 and 100 Hz), at about level dBm0.
func vowel(s *signal, d time.Duration, f0, f1, fa, fb, level float64) {
	n := samples(d)
	start := len(s.x)
	s.x = append(s.x, make([]float64, n)...)
	res := func(f, fc, bw float64) float64 { return 1 / math.Hypot(1, (f-fc)/(bw/2)) }
	var phase float64
	for i := range n {
		f := f0 + (f1-f0)*float64(i)/float64(n)
		phase += 2 * math.Pi * f / 8000
		var v float64
		for h := 1; float64(h)*f < 3800; h++ {
			fh := float64(h) * f
			v += (res(fh, fa, 80) + res(fh, fb, 100) + 0.05) * math.Sin(float64(h)*phase)
		}
		s.x[start+i] = v
	}
	normalise(s.x[start:], level)
}

// sweep appends d of a sine whose frequency glides linearly from f0 to f1, at level dBm0.
func sweep(s *signal, d time.Duration, f0, f1, level float64) {
	n := samples(d)
	a := amplitude(level)
	var phase float64
	for i := range n {
		phase += 2 * math.Pi * (f0 + (f1-f0)*float64(i)/float64(n)) / 8000
		s.x = append(s.x, a*math.Sin(phase))
	}
}

// normalise scales x to a mean power of level dBm0.
func normalise(x []float64, level float64) {
	var p float64
	for _, v := range x {
		p += v * v
	}
	if p == 0 {
		return
	}
	g := math.Sqrt(dBm0Power * math.Pow(10, level/10) / (p / float64(len(x))))
	for i := range x {
		x[i] *= g
	}
}

func BenchmarkToneDetector(b *testing.B) {
	// 20 ms frames of a key press in noise, the work of one call's audio path.
	s := newSignal(1)
	s.key('5', time.Second, -20, -20).noise(-40, false)
	pcm := s.pcm()
	d := NewToneDetector()
	b.ReportAllocs()
	b.SetBytes(FrameSize * 2)
	var off int
	for b.Loop() {
		d.Write(pcm[off : off+FrameSize])
		if off += FrameSize; off+FrameSize > len(pcm) {
			off = 0
		}
	}
}

func FuzzToneDetector(f *testing.F) {
	f.Add([]byte{0, 0, 0xff, 0x7f, 0, 0x80}, uint8(3))
	key := newSignal(1).key('1', 60*time.Millisecond, -10, -10).pcm()
	seed := make([]byte, 2*len(key))
	for i, v := range key {
		binary.LittleEndian.PutUint16(seed[2*i:], uint16(v))
	}
	f.Add(seed, uint8(160))
	f.Fuzz(func(t *testing.T, b []byte, chunk uint8) {
		pcm := make([]int16, len(b)/2)
		for i := range pcm {
			pcm[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
		}
		step := max(1, int(chunk))
		d := NewToneDetector()
		var got int
		for p := pcm; len(p) > 0; {
			n := min(step, len(p))
			for _, k := range d.Write(p[:n]) {
				if strings.IndexByte(keypad, k) < 0 {
					t.Fatalf("key %q is not on the keypad", k)
				}
				got++
			}
			p = p[n:]
		}
		// A press needs toneHits blocks and another of the same key a gap; distinct keys may follow
		// each other without one, so the bound is one press per toneHits blocks.
		if limit := len(pcm)/(toneBlock*toneHits) + 1; got > limit {
			t.Fatalf("%d presses in %d samples, at most %d possible", got, len(pcm), limit)
		}
	})
}
