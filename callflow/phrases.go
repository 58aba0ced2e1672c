package callflow

import (
	"fmt"
	"time"

	"github.com/voiceotp/voiceotp/prompts"
)

// phrases are the utterances every call uses, built once per Runner and
// encoding from the catalog's shared frames. Only the code is built per
// call, and only after the gate.
type phrases struct {
	challenge [10][][]byte // "to hear your code, press <d>"
	noKey     [][]byte     // said before a re-try after a timeout
	wrongKey  [][]byte     // said before a re-try after a wrong key
	noKeyBye  [][]byte     // the end of a call without the right key
	codeIs    [][]byte     // lead-in of the first play of the code
	again     [][]byte     // lead-in of the second play
	repeat    [][]byte     // "press 1 to hear it again"
	goodbye   [][]byte
	pause     [][]byte // 500 ms of silence, a ',' in a trunk's send_digits
}

func buildPhrases(cat *prompts.Catalog, enc prompts.Encoding) (*phrases, error) {
	p := &phrases{}
	for d := byte('0'); d <= '9'; d++ {
		f, err := cat.Challenge(enc, d)
		if err != nil {
			return nil, fmt.Errorf("callflow: challenge prompt: %w", err)
		}
		p.challenge[d-'0'] = f
	}
	const short, lead = 300 * time.Millisecond, 200 * time.Millisecond
	for _, b := range []struct {
		dst *[][]byte
		say *prompts.Builder
	}{
		{&p.noKey, cat.Say(enc).Prompt(prompts.NoKey).Pause(short)},
		{&p.wrongKey, cat.Say(enc).Prompt(prompts.WrongKey).Pause(short)},
		{&p.noKeyBye, cat.Say(enc).Prompt(prompts.NoKey).Pause(short).Prompt(prompts.Goodbye).Pause(lead)},
		{&p.codeIs, cat.Say(enc).Pause(lead).Prompt(prompts.CodeIs).Pause(2 * lead)},
		{&p.again, cat.Say(enc).Pause(lead).Prompt(prompts.Again).Pause(2 * lead)},
		{&p.repeat, cat.Say(enc).Pause(short).Prompt(prompts.Repeat)},
		{&p.goodbye, cat.Say(enc).Pause(short).Prompt(prompts.Goodbye).Pause(lead)},
		{&p.pause, cat.Say(enc).Pause(500 * time.Millisecond)},
	} {
		f, err := b.say.Frames()
		if err != nil {
			return nil, fmt.Errorf("callflow: prompt catalog %s: %w", cat.Locale(), err)
		}
		*b.dst = f
	}
	return p, nil
}

// join concatenates utterances into a new slice of frame references; the
// audio itself is shared, never copied.
func join(parts ...[][]byte) [][]byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([][]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
