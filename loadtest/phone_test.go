package loadtest

import (
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/media"
	"github.com/voiceotp/voiceotp/prompts"
)

func TestParseBehaviour(t *testing.T) {
	tests := []struct {
		in      string
		want    Behaviour
		wantErr bool
	}{
		{"", Answer, false},
		{"answer", Answer, false},
		{" NoKey ", NoKey, false},
		{"busy", Busy, false},
		{"noanswer", NoAnswer, false},
		{"hangup", Hangup, false},
		{"voicemail", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseBehaviour(tt.in)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("ParseBehaviour(%q) = %q, %v", tt.in, got, err)
			}
		})
	}
}

func TestNewPhoneNeedsCatalog(t *testing.T) {
	if _, err := NewPhone(Config{}); err == nil {
		t.Error("NewPhone without a catalog succeeded")
	}
}

// The phone's per-packet receive path (decode, recognise) allocates nothing when it keeps no recording.
func TestSessionOnAudioAllocs(t *testing.T) {
	c, r := catalog(t), recogniser(t)
	p := &Phone{cfg: Config{Catalog: c}, rec: r}
	s := newSession(p, Plan{}, media.Answer{Codec: media.PCMU}, &CallReport{})
	frames := callAudio(t, c, prompts.ULaw, '3', "1234")
	i := 0
	allocs := testing.AllocsPerRun(len(frames)-1, func() {
		s.onAudio(0, frames[i], time.Now())
		i++
	})
	if allocs != 0 {
		t.Errorf("onAudio allocates %v times per packet, want 0", allocs)
	}
	if len(s.tokens) < 8 {
		t.Errorf("only %d utterances recognised", len(s.tokens))
	}
}
