package loadtest

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zaf/g711"

	"github.com/voiceotp/voiceotp/prompts"
)

// testCatalog is loaded once: it is immutable and safe to share.
var testCatalog = sync.OnceValues(func() (*prompts.Catalog, error) { return prompts.Load("en") })

func catalog(t testing.TB) *prompts.Catalog {
	t.Helper()
	c, err := testCatalog()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var testRecogniser = sync.OnceValues(func() (*Recogniser, error) {
	c, err := testCatalog()
	if err != nil {
		return nil, err
	}
	return NewRecogniser(c)
})

func recogniser(t testing.TB) *Recogniser {
	t.Helper()
	r, err := testRecogniser()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// callAudio builds what the server says in a call that passes the gate, as
// callflow does: the challenge, a wait for the key, the code twice, the
// offer to repeat, goodbye.
func callAudio(t testing.TB, c *prompts.Catalog, enc prompts.Encoding, challenge byte, code string) [][]byte {
	t.Helper()
	frames, err := c.Say(enc).
		Prompt(prompts.Press).Pause(prompts.ChallengePause).Digit(challenge).Pause(700*time.Millisecond).
		Pause(200*time.Millisecond).Prompt(prompts.CodeIs).Pause(400*time.Millisecond).Code(code, prompts.CodeOptions{}).
		Pause(200*time.Millisecond).Prompt(prompts.Again).Pause(400*time.Millisecond).Code(code, prompts.CodeOptions{}).
		Pause(300 * time.Millisecond).Prompt(prompts.Repeat).Pause(time.Second).
		Pause(300 * time.Millisecond).Prompt(prompts.Goodbye).Pause(200 * time.Millisecond).
		Frames()
	if err != nil {
		t.Fatal(err)
	}
	return frames
}

// path is what the network between server and phone does to the audio.
type path struct {
	name      string
	transcode bool    // decode, re-encode in the other law, decode again
	loss      float64 // probability that a frame is replaced by silence
	drop      float64 // probability that a frame vanishes (a lost packet with no concealment)
	gain      float64 // linear gain applied to the samples; 0 means 1
}

// hear decodes frames as the phone would after the path.
func (p path) hear(frames [][]byte, enc prompts.Encoding, rng *rand.Rand) []int16 {
	pcm := make([]int16, 0, len(frames)*prompts.FrameSamples)
	for _, f := range frames {
		if p.loss > 0 && rng.Float64() < p.loss {
			pcm = append(pcm, make([]int16, len(f))...)
			continue
		}
		if p.drop > 0 && rng.Float64() < p.drop {
			continue
		}
		for _, b := range f {
			s := decodeSample(enc, b)
			if p.gain != 0 {
				s = int16(max(-32768, min(32767, float64(s)*p.gain)))
			}
			if p.transcode {
				if enc == prompts.ULaw {
					s = g711.DecodeAlawFrame(g711.EncodeAlawFrame(s))
				} else {
					s = g711.DecodeUlawFrame(g711.EncodeUlawFrame(s))
				}
			}
			pcm = append(pcm, s)
		}
	}
	return pcm
}

func randomCode(rng *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(byte('0' + rng.IntN(10)))
	}
	return b.String()
}

// TestRecogniseEveryPrompt: each catalog prompt alone, in both laws, is
// recognised as itself.
func TestRecogniseEveryPrompt(t *testing.T) {
	c, r := catalog(t), recogniser(t)
	for _, enc := range []prompts.Encoding{prompts.ULaw, prompts.ALaw} {
		for _, id := range c.IDs() {
			t.Run(fmt.Sprintf("%s/%s", enc, id), func(t *testing.T) {
				pcm := path{}.hear(c.Frames(id, enc), enc, nil)
				toks := r.Recognise(pcm)
				if len(toks) != 1 || toks[0].ID != id {
					t.Fatalf("heard %v, want one %q", toks, id)
				}
			})
		}
	}
}

// TestRecognitionAccuracy plays whole calls through clean, transcoded and
// lossy paths and counts what the phone gets right: the challenge digit and
// the code, both plays agreeing.
func TestRecognitionAccuracy(t *testing.T) {
	c, r := catalog(t), recogniser(t)
	paths := []struct {
		path
		want float64 // minimum accuracy required
	}{
		{path{name: "clean"}, 1},
		{path{name: "transcoded", transcode: true}, 1},
		{path{name: "loss 1%", loss: 0.01}, 0.95},
		{path{name: "transcoded, loss 1%", transcode: true, loss: 0.01}, 0.95},
		{path{name: "gain -6 dB, transcoded", transcode: true, gain: 0.5}, 1},
		{path{name: "gain -10 dB", gain: 0.316}, 0},
		{path{name: "loss 5%", loss: 0.05}, 0.5},
		{path{name: "dropped 1%", drop: 0.01}, 0.9},
	}
	for _, p := range paths {
		for _, enc := range []prompts.Encoding{prompts.ULaw, prompts.ALaw} {
			t.Run(fmt.Sprintf("%s/%s", p.name, enc), func(t *testing.T) {
				t.Parallel()
				rng := rand.New(rand.NewPCG(1, uint64(enc)))
				calls, right, challenges := 0, 0, 0
				var fails []string
				for i := range 100 {
					challenge := byte('0' + i%10)
					code := randomCode(rng, 4+i%7)
					h := Parse(r.Recognise(p.hear(callAudio(t, c, enc, challenge, code), enc, rng)), true)
					got, err := h.Code()
					calls++
					if h.Challenge == challenge {
						challenges++
					}
					if h.Challenge == challenge && err == nil && got == code {
						right++
					} else if len(fails) < 5 {
						fails = append(fails, fmt.Sprintf("challenge %c heard %q, code %s heard %v (%v)", challenge, h.Challenge, code, h.Plays, err))
					}
				}
				acc := float64(right) / float64(calls)
				t.Logf("%s %s: %d/%d calls fully right (%.1f%%), challenge digit %d/%d", p.name, enc, right, calls, 100*acc, challenges, calls)
				if acc < p.want {
					t.Errorf("accuracy %.1f%% below %.0f%%: %s", 100*acc, 100*p.want, strings.Join(fails, "; "))
				}
			})
		}
	}
}

func toks(ids ...prompts.ID) []Token {
	out := make([]Token, len(ids))
	for i, id := range ids {
		out[i] = Token{ID: id}
	}
	return out
}

func TestParse(t *testing.T) {
	d := prompts.DigitID
	tests := []struct {
		name      string
		tokens    []Token
		final     bool
		challenge byte
		plays     []string
		open      string
		code      string
		err       error
	}{
		{name: "nothing", err: ErrNoCode},
		{name: "challenge only", tokens: toks(prompts.Press, d('7')), challenge: '7', err: ErrNoCode},
		{name: "re-asked after no key", tokens: toks(prompts.Press, d('7'), prompts.NoKey, prompts.Press, d('3')), challenge: '3', err: ErrNoCode},
		{name: "a full call", tokens: toks(prompts.Press, d('2'), prompts.CodeIs, d('4'), d('8'), prompts.Again, d('4'), d('8'), prompts.Repeat, prompts.Goodbye),
			challenge: '2', plays: []string{"48", "48"}, code: "48"},
		{name: "plays differ", tokens: toks(prompts.CodeIs, d('4'), d('8'), prompts.Again, d('4'), d('9'), prompts.Repeat),
			plays: []string{"48", "49"}, err: ErrCodeMismatch},
		{name: "cut short, not final", tokens: toks(prompts.Press, d('1'), prompts.CodeIs, d('5')), challenge: '1', open: "5", err: ErrNoCode},
		{name: "cut short, final", tokens: toks(prompts.CodeIs, d('5'), d('6')), final: true, plays: []string{"56"}, code: "56"},
		{name: "unknown utterances are skipped", tokens: toks(prompts.Press, "", d('9'), prompts.CodeIs, d('1'), "", d('2'), prompts.Goodbye),
			challenge: '9', plays: []string{"12"}, code: "12"},
		{name: "digits out of context", tokens: toks(d('1'), d('2'), prompts.Goodbye, d('3')), err: ErrNoCode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := Parse(tt.tokens, tt.final)
			if h.Challenge != tt.challenge || h.Open != tt.open || fmt.Sprint(h.Plays) != fmt.Sprint(tt.plays) {
				t.Errorf("got challenge %q plays %v open %q, want %q %v %q", h.Challenge, h.Plays, h.Open, tt.challenge, tt.plays, tt.open)
			}
			code, err := h.Code()
			if code != tt.code || err != tt.err {
				t.Errorf("Code() = %q, %v; want %q, %v", code, err, tt.code, tt.err)
			}
		})
	}
}

// The Listener reports each utterance as the audio streams in, packet by packet, once the silence after
// it has arrived: the phone can press the key while the server waits for it.
func TestListenerIncremental(t *testing.T) {
	c, r := catalog(t), recogniser(t)
	frames, err := c.Challenge(prompts.ULaw, '4')
	if err != nil {
		t.Fatal(err)
	}
	pcm := path{}.hear(frames, prompts.ULaw, nil)
	var got []Token
	var at []time.Duration
	var l *Listener
	l = r.NewListener(func(tok Token) { got = append(got, tok); at = append(at, l.Elapsed()) })
	for i := 0; i < len(pcm); i += prompts.FrameSamples {
		l.Write(pcm[i : i+prompts.FrameSamples])
	}
	if len(got) != 1 || got[0].ID != prompts.Press {
		t.Fatalf("before the silence after the digit: %v", got)
	}
	silence := make([]int16, prompts.FrameSamples)
	for range 10 {
		l.Write(silence)
	}
	if len(got) != 2 || got[1].ID != prompts.DigitID('4') {
		t.Fatalf("after 200 ms of silence: %v", got)
	}
	end := time.Duration(len(pcm)) * time.Second / 8000
	if lag := at[1] - end; lag > 200*time.Millisecond {
		t.Errorf("digit reported %s after it ended, want within 200 ms", lag)
	}
	if got[1].End > end || got[1].Start >= got[1].End {
		t.Errorf("digit at %s-%s, audio ends at %s", got[1].Start, got[1].End, end)
	}
}

// An utterance no prompt resembles (a tone) is reported with an empty ID.
func TestListenerUnknown(t *testing.T) {
	r := recogniser(t)
	tone := make([]int16, 8000/2)
	for i := range tone {
		if (i/4)%2 == 0 {
			tone[i] = 8000
		} else {
			tone[i] = -8000
		}
	}
	got := r.Recognise(tone)
	if len(got) != 1 || got[0].ID != "" {
		t.Errorf("a 1 kHz square wave heard as %v", got)
	}
}

func TestListenerWriteAllocs(t *testing.T) {
	c, r := catalog(t), recogniser(t)
	pcm := path{}.hear(callAudio(t, c, prompts.ULaw, '5', "482913"), prompts.ULaw, nil)
	n := 0
	l := r.NewListener(func(Token) { n++ })
	i := 0
	allocs := testing.AllocsPerRun(len(pcm)/prompts.FrameSamples-1, func() {
		l.Write(pcm[i : i+prompts.FrameSamples])
		i += prompts.FrameSamples
	})
	if allocs != 0 {
		t.Errorf("Write allocates %v times per packet, want 0", allocs)
	}
	if n < 10 {
		t.Errorf("only %d utterances recognised", n)
	}
}

// BenchmarkListenerPacket is the phone's per-packet recognition cost, utterance classification included,
// averaged over a whole call.
func BenchmarkListenerPacket(b *testing.B) {
	c, r := catalog(b), recogniser(b)
	pcm := path{}.hear(callAudio(b, c, prompts.ULaw, '5', "4829137"), prompts.ULaw, nil)
	l := r.NewListener(func(Token) {})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i+prompts.FrameSamples > len(pcm) {
			i = 0
		}
		l.Write(pcm[i : i+prompts.FrameSamples])
		i += prompts.FrameSamples
	}
}

// FuzzListener feeds arbitrary audio: the Listener must not panic, and every utterance it reports lies
// within the audio.
func FuzzListener(f *testing.F) {
	c := catalog(f)
	seed := func(id prompts.ID) []byte {
		var b []byte
		for _, s := range c.PCM(id) {
			b = append(b, byte(s), byte(s>>8))
		}
		return b
	}
	f.Add(seed(prompts.DigitID('7')))
	f.Add(seed(prompts.Goodbye))
	f.Add([]byte{0xff, 0x7f, 0x00, 0x80})
	r := recogniser(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		pcm := make([]int16, len(data)/2)
		for i := range pcm {
			pcm[i] = int16(uint16(data[2*i]) | uint16(data[2*i+1])<<8)
		}
		end := time.Duration(len(pcm)) * time.Second / 8000
		for _, tok := range r.Recognise(pcm) {
			if tok.Start < 0 || tok.End > end || tok.Start >= tok.End {
				t.Fatalf("utterance %v outside audio of %s", tok, end)
			}
		}
	})
}
