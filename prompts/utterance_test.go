package prompts_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/prompts"
)

func TestDigitID(t *testing.T) {
	for d := byte(0); d < 255; d++ {
		want := prompts.ID("")
		if d >= '0' && d <= '9' {
			want = prompts.ID(string(rune(d)))
		}
		if got := prompts.DigitID(d); got != want {
			t.Errorf("DigitID(%q) = %q, want %q", d, got, want)
		}
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		frames int
		want   time.Duration
	}{
		{0, 0},
		{1, 20 * time.Millisecond},
		{50, time.Second},
	}
	for _, tt := range tests {
		if got := prompts.Duration(make([][]byte, tt.frames)); got != tt.want {
			t.Errorf("Duration(%d frames) = %v, want %v", tt.frames, got, tt.want)
		}
	}
}

func TestPauseRoundsUpToFrames(t *testing.T) {
	c := loadEN(t)
	tests := []struct {
		d    time.Duration
		want int
	}{
		{-time.Second, 0},
		{0, 0},
		{time.Nanosecond, 1},
		{20 * time.Millisecond, 1},
		{21 * time.Millisecond, 2},
		{250 * time.Millisecond, 13},
		{700 * time.Millisecond, 35},
		{time.Second, 50},
	}
	for _, tt := range tests {
		t.Run(tt.d.String(), func(t *testing.T) {
			frames, err := c.Say(prompts.ALaw).Pause(tt.d).Frames()
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) != tt.want {
				t.Errorf("Pause(%v) = %d frames, want %d", tt.d, len(frames), tt.want)
			}
			for _, f := range frames {
				if !sameFrame(f, c.SilenceFrame(prompts.ALaw)) {
					t.Fatal("pause frame is not the shared silence frame")
				}
			}
		})
	}
}

func sameFrame(a, b []byte) bool { return len(a) > 0 && len(b) > 0 && &a[0] == &b[0] }

// segment is a run of an utterance: either a pause (silence frames) or sound.
type segment struct {
	pause  bool
	frames [][]byte
}

// split cuts an utterance at runs of the shared silence frame.
func split(frames [][]byte, silence []byte) []segment {
	var segs []segment
	for _, f := range frames {
		p := sameFrame(f, silence)
		if len(segs) == 0 || segs[len(segs)-1].pause != p {
			segs = append(segs, segment{pause: p})
		}
		segs[len(segs)-1].frames = append(segs[len(segs)-1].frames, f)
	}
	return segs
}

// sameFrames reports whether got holds exactly the frames of want, by identity.
func sameFrames(got, want [][]byte) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !sameFrame(got[i], want[i]) {
			return false
		}
	}
	return true
}

func TestCodeGrouping(t *testing.T) {
	const d, g = 13, 35 // default 250 ms and 700 ms pauses, in frames
	tests := []struct {
		code   string
		opt    prompts.CodeOptions
		groups []string
		pauses []int // frames of silence between consecutive digits
	}{
		{"7", prompts.CodeOptions{}, []string{"7"}, nil},
		{"42", prompts.CodeOptions{}, []string{"42"}, []int{d}},
		{"123", prompts.CodeOptions{}, []string{"123"}, []int{d, d}},
		{"1234", prompts.CodeOptions{}, []string{"12", "34"}, []int{d, g, d}},
		{"12345", prompts.CodeOptions{}, []string{"123", "45"}, []int{d, d, g, d}},
		{"482913", prompts.CodeOptions{}, []string{"482", "913"}, []int{d, d, g, d, d}},
		{"4829137", prompts.CodeOptions{}, []string{"4829", "137"}, []int{d, d, d, g, d, d}},
		{"48291370", prompts.CodeOptions{}, []string{"4829", "1370"}, []int{d, d, d, g, d, d, d}},
		{"482913705", prompts.CodeOptions{}, []string{"482", "913", "705"}, []int{d, d, g, d, d, g, d, d}},
		{"4829137056", prompts.CodeOptions{}, []string{"4829", "137", "056"}, []int{d, d, d, g, d, d, g, d, d}},
		{"000000000000", prompts.CodeOptions{}, []string{"000", "000", "000", "000"}, []int{d, d, g, d, d, g, d, d, g, d, d}},
		{"123456", prompts.CodeOptions{GroupSize: 2}, []string{"12", "34", "56"}, []int{d, g, d, g, d}},
		{"123456", prompts.CodeOptions{GroupSize: 6}, []string{"123456"}, []int{d, d, d, d, d}},
		{"123456", prompts.CodeOptions{DigitPause: 40 * time.Millisecond, GroupPause: time.Second}, []string{"123", "456"}, []int{2, 2, 50, 2, 2}},
		{"123456", prompts.CodeOptions{DigitPause: -1, GroupPause: -1}, []string{"123", "456"}, []int{0, 0, 0, 0, 0}},
	}
	c := loadEN(t)
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			if got := prompts.GroupDigits(tt.code, tt.opt.GroupSize); !slices.Equal(got, tt.groups) {
				t.Errorf("GroupDigits = %q, want %q", got, tt.groups)
			}
			for _, enc := range encodings {
				frames, err := c.Code(enc, tt.code, tt.opt)
				if err != nil {
					t.Fatal(err)
				}
				// Walk the utterance: digit, pause, digit, ... with no leading or
				// trailing pause; every digit is exactly the catalog's frames.
				rest := frames
				var pauses []int
				for i := 0; i < len(tt.code); i++ {
					if i > 0 {
						n := 0
						for n < len(rest) && sameFrame(rest[n], c.SilenceFrame(enc)) {
							n++
						}
						pauses = append(pauses, n)
						rest = rest[n:]
					}
					digit := c.Frames(prompts.DigitID(tt.code[i]), enc)
					if len(rest) < len(digit) || !sameFrames(rest[:len(digit)], digit) {
						t.Fatalf("%v: digit %d is not the catalog's frames for it", enc, i)
					}
					rest = rest[len(digit):]
				}
				if len(rest) != 0 {
					t.Errorf("%v: %d trailing frames", enc, len(rest))
				}
				if !slices.Equal(pauses, tt.pauses) {
					t.Errorf("%v: pauses = %v frames, want %v", enc, pauses, tt.pauses)
				}
			}
		})
	}
}

func TestGroupDigitsEdges(t *testing.T) {
	tests := []struct {
		code string
		size int
		want []string
	}{
		{"", 3, []string{}},
		{"12", 1, []string{"1", "2"}},
		{"123456", -5, []string{"123", "456"}},
		{"1234567890123", 3, []string{"1234", "567", "890", "123"}},
	}
	for _, tt := range tests {
		if got := prompts.GroupDigits(tt.code, tt.size); !slices.Equal(got, tt.want) {
			t.Errorf("GroupDigits(%q, %d) = %q, want %q", tt.code, tt.size, got, tt.want)
		}
	}
}

// TestCodeDoesNotCopyAudio checks that a code utterance refers to the
// catalog's frames (same backing memory) rather than copies of them.
func TestCodeDoesNotCopyAudio(t *testing.T) {
	c := loadEN(t)
	frames, err := c.Code(prompts.ULaw, "4", prompts.CodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	four := c.Frames(prompts.DigitID('4'), prompts.ULaw)
	for i := range four {
		if &frames[i][0] != &four[i][0] {
			t.Fatalf("frame %d of the utterance is a copy, not the catalog's frame", i)
		}
	}
	frames, err = c.Code(prompts.ULaw, "44", prompts.CodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if &frames[len(four)][0] != &c.SilenceFrame(prompts.ULaw)[0] {
		t.Error("pause frame is a copy, not the shared silence frame")
	}
	if &frames[len(frames)-1][0] != &four[len(four)-1][0] {
		t.Error("second digit is a copy, not the catalog's frame")
	}
}

func TestCodeRejectsBadInput(t *testing.T) {
	c := loadEN(t)
	tests := []struct {
		name string
		enc  prompts.Encoding
		code string
		want error
	}{
		{"empty", prompts.ULaw, "", prompts.ErrInvalidCode},
		{"letter", prompts.ULaw, "48291a", prompts.ErrInvalidCode},
		{"space", prompts.ULaw, "482 913", prompts.ErrInvalidCode},
		{"dash", prompts.ALaw, "482-913", prompts.ErrInvalidCode},
		{"sign", prompts.ALaw, "-482913", prompts.ErrInvalidCode},
		{"NUL", prompts.ALaw, "4829\x0013", prompts.ErrInvalidCode},
		{"non-ASCII digits", prompts.ULaw, "४८२९१३", prompts.ErrInvalidCode},
		{"full-width digits", prompts.ULaw, "４８２９１３", prompts.ErrInvalidCode},
		{"DTMF keys", prompts.ULaw, "*482913#", prompts.ErrInvalidCode},
		{"bad encoding", prompts.Encoding(2), "482913", prompts.ErrUnknownEncoding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frames, err := c.Code(tt.enc, tt.code, prompts.CodeOptions{})
			if !errors.Is(err, tt.want) || frames != nil {
				t.Fatalf("Code = %d frames, %v; want %v", len(frames), err, tt.want)
			}
			// The code is secret: no part of it may reach the error text.
			for _, part := range []string{tt.code, "482", "913", "829"} {
				if part != "" && strings.Contains(err.Error(), part) {
					t.Errorf("error %q leaks %q", err, part)
				}
			}
			_, err = c.Say(prompts.ULaw).Prompt(prompts.CodeIs).Code(tt.code, prompts.CodeOptions{}).Frames()
			if tt.enc == prompts.ULaw && !errors.Is(err, tt.want) {
				t.Errorf("Builder.Code error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestChallenge(t *testing.T) {
	c := loadEN(t)
	for _, enc := range encodings {
		for d := byte('0'); d <= '9'; d++ {
			frames, err := c.Challenge(enc, d)
			if err != nil {
				t.Fatalf("Challenge(%v, %q): %v", enc, d, err)
			}
			segs := split(frames, c.SilenceFrame(enc))
			if len(segs) != 3 || !sameFrames(segs[0].frames, c.Frames(prompts.Press, enc)) ||
				!segs[1].pause || len(segs[1].frames) != 10 ||
				!sameFrames(segs[2].frames, c.Frames(prompts.DigitID(d), enc)) {
				t.Errorf("Challenge(%v, %q) is not press + 200 ms + digit", enc, d)
			}
		}
	}
}

func TestChallengeRejectsBadInput(t *testing.T) {
	c := loadEN(t)
	tests := []struct {
		name  string
		enc   prompts.Encoding
		digit byte
		want  error
	}{
		{"number not ASCII", prompts.ULaw, 7, prompts.ErrInvalidDigit},
		{"letter", prompts.ULaw, 'a', prompts.ErrInvalidDigit},
		{"star", prompts.ALaw, '*', prompts.ErrInvalidDigit},
		{"hash", prompts.ALaw, '#', prompts.ErrInvalidDigit},
		{"high byte", prompts.ALaw, 0xB7, prompts.ErrInvalidDigit},
		{"bad encoding", prompts.Encoding(200), '7', prompts.ErrUnknownEncoding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frames, err := c.Challenge(tt.enc, tt.digit)
			if !errors.Is(err, tt.want) || frames != nil {
				t.Errorf("Challenge = %d frames, %v; want %v", len(frames), err, tt.want)
			}
		})
	}
}

func TestBuilder(t *testing.T) {
	c := loadEN(t)
	frames, err := c.Say(prompts.ULaw).
		Prompt(prompts.CodeIs).Pause(300*time.Millisecond).
		Code("1234", prompts.CodeOptions{}).Pause(time.Second).
		Prompt(prompts.Repeat).
		Frames()
	if err != nil {
		t.Fatal(err)
	}
	segs := split(frames, c.SilenceFrame(prompts.ULaw))
	// code_is, 15, 1, 13, 2, 35, 3, 13, 4, 50, repeat
	want := []int{len(c.Frames(prompts.CodeIs, prompts.ULaw)), 15, -1, 13, -1, 35, -1, 13, -1, 50, len(c.Frames(prompts.Repeat, prompts.ULaw))}
	if len(segs) != len(want) {
		t.Fatalf("%d segments, want %d", len(segs), len(want))
	}
	for i, w := range want {
		if w >= 0 && len(segs[i].frames) != w {
			t.Errorf("segment %d: %d frames, want %d", i, len(segs[i].frames), w)
		}
	}

	// The first error sticks and later calls do nothing.
	_, err = c.Say(prompts.ULaw).Prompt("no_such_prompt").Prompt(prompts.Hello).Digit('x').Frames()
	if !errors.Is(err, prompts.ErrUnknownPrompt) || !strings.Contains(err.Error(), "no_such_prompt") {
		t.Errorf("error = %v, want ErrUnknownPrompt naming the prompt", err)
	}
	_, err = c.Say(prompts.Encoding(3)).Prompt(prompts.Hello).Frames()
	if !errors.Is(err, prompts.ErrUnknownEncoding) {
		t.Errorf("error = %v, want ErrUnknownEncoding", err)
	}
}

func BenchmarkCode(b *testing.B) {
	c := loadEN(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Code(prompts.ULaw, "482913", prompts.CodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkChallenge(b *testing.B) {
	c := loadEN(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Challenge(prompts.ALaw, '7'); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := prompts.Load("en"); err != nil {
			b.Fatal(err)
		}
	}
}
