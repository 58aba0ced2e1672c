package loadtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/voiceotp/voiceotp/media"
	"github.com/voiceotp/voiceotp/prompts"
	"github.com/voiceotp/voiceotp/sip"
)

// tokenBuffer is how many recognised utterances may wait for the call's goroutine; a call holds a few
// dozen in all.
const tokenBuffer = 64

// session is the answered part of one call. The call's goroutine owns it; the Receiver's goroutine owns
// listener, pcm, buf, dropped and r.Pacing until the media has stopped.
type session struct {
	p    *Phone
	plan Plan
	neg  media.Answer
	r    *CallReport
	enc  prompts.Encoding

	tokens   chan Token
	listener *Listener
	pcm      []int16
	buf      [2 * prompts.FrameSamples]int16
	dropped  int // tokens lost because the channel was full
}

func newSession(p *Phone, plan Plan, neg media.Answer, r *CallReport) *session {
	s := &session{p: p, plan: plan, neg: neg, r: r, enc: prompts.ULaw, tokens: make(chan Token, tokenBuffer)}
	if neg.Codec.Name == media.PCMA.Name {
		s.enc = prompts.ALaw
	}
	s.listener = p.rec.NewListener(s.onToken)
	if p.cfg.KeepAudio {
		s.pcm = make([]int16, 0, 30*8000)
	}
	return s
}

func (s *session) onToken(t Token) {
	select {
	case s.tokens <- t:
	default:
		s.dropped++
	}
}

// onAudio decodes one RTP payload of the negotiated codec and feeds the recogniser (and the recording).
// Other payload types (comfort noise) are ignored. After the recording's first growth it allocates
// nothing.
func (s *session) onAudio(pt uint8, payload []byte, at time.Time) {
	if pt != s.neg.Codec.PayloadType {
		return
	}
	s.r.Pacing.Observe(at)
	for len(payload) > 0 {
		n := min(len(payload), len(s.buf))
		for i, b := range payload[:n] {
			s.buf[i] = decodeSample(s.enc, b)
		}
		s.listener.Write(s.buf[:n])
		if s.p.cfg.KeepAudio {
			s.pcm = append(s.pcm, s.buf[:n]...)
		}
		payload = payload[n:]
	}
}

// run plays the phone's part until the call ends, then fills the report.
// ssrc is the one the answer announced, or 0.
func (s *session) run(port media.Port, ssrc uint32, call *sip.Call) {
	p, r := s.p, s.r
	var silence []byte
	if !p.cfg.NoAudio {
		silence = p.cfg.Catalog.SilenceFrame(s.enc)
	}
	var dtmfPTs []uint8
	scfg := media.SenderConfig{PayloadType: s.neg.Codec.PayloadType, Silence: silence, SSRC: ssrc}
	if s.neg.HasDTMF {
		scfg.DTMFPayloadType = s.neg.DTMFPayloadType
		dtmfPTs = []uint8{s.neg.DTMFPayloadType}
	}
	sender := port.NewSender(s.neg.Addr, scfg)
	if p.cfg.Audio != nil && !p.cfg.NoAudio {
		// One utterance for the whole call: views of the shared frames, silence after it.
		sender.Play(p.cfg.Audio.callFrames(s.enc, p.cfg.MaxCallDuration))
	}
	recv := port.NewReceiver(media.ReceiverConfig{Remote: s.neg.Addr, SSRC: s.neg.SSRC, DTMFPayloadTypes: dtmfPTs, OnAudio: s.onAudio})

	mediaCtx, stopMedia := context.WithCancel(context.Background())
	mediaErr := make(chan error, 2)
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{sender.Run, recv.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(mediaCtx); err != nil && mediaCtx.Err() == nil {
				mediaErr <- err
			}
		}()
	}

	tokens, hangup := s.converse(call, sender, mediaErr)
	if hangup {
		hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := call.Hangup(hctx); err != nil && r.Err == nil {
			r.Err = err
		}
		cancel()
	}
	stopMedia()
	wg.Wait()

	// The media goroutines are gone: the listener and the recording are ours now.
	tokens = s.drain(tokens)
	s.listener.Flush()
	tokens = s.drain(tokens)
	if s.dropped > 0 && r.Err == nil {
		r.Err = fmt.Errorf("loadtest: %d utterances not processed in time", s.dropped)
	}
	r.HangupBy = call.HangupBy()
	r.Heard = tokens
	h := Parse(tokens, r.HangupBy == "remote")
	r.Plays = h.Plays
	code, err := h.Code()
	switch {
	case err == nil:
		r.HeardCode = code
		if r.CodeHeardAt.IsZero() {
			r.CodeHeardAt = time.Now()
		}
	case errors.Is(err, ErrCodeMismatch) && r.Err == nil:
		r.Err = err
	}
	r.Received, r.Sent = recv.Stats(), sender.Stats()
	if p.cfg.KeepAudio {
		r.PCM = s.pcm
	}
}

func (s *session) drain(tokens []Token) []Token {
	for {
		select {
		case t := <-s.tokens:
			tokens = append(tokens, t)
		default:
			return tokens
		}
	}
}

// converse reacts to what the phone hears until the call ends: it presses the digit each challenge asks
// for, and for Hangup leaves when the code begins. hangup reports that the phone should send BYE.
func (s *session) converse(call *sip.Call, sender *media.Sender, mediaErr <-chan error) (tokens []Token, hangup bool) {
	p, r := s.p, s.r
	maxT := time.NewTimer(p.cfg.MaxCallDuration)
	defer maxT.Stop()
	var pressT *time.Timer
	var pressC <-chan time.Time
	defer func() {
		if pressT != nil {
			pressT.Stop()
		}
	}()
	var asked byte // the digit to press when pressC fires
	press := func(d byte) {
		done := sender.PlayDigit(d, DefaultKeyDuration)
		select {
		case <-done: // refused at once: the offer had no telephone-event
			if !s.neg.HasDTMF && r.Err == nil {
				r.Err = errors.New("loadtest: cannot press: the offer has no telephone-event")
				return
			}
		default:
		}
		r.Pressed = true
		if r.PressedAt.IsZero() {
			r.PressedAt = time.Now()
		}
	}
	afterPress := false
	for {
		select {
		case t := <-s.tokens:
			tokens = append(tokens, t)
			d := t.Digit()
			switch {
			case t.ID == prompts.Press:
				afterPress = true
				continue
			case afterPress && d != 0:
				r.ChallengeDigit = string(d)
				if r.ChallengeAt.IsZero() {
					r.ChallengeAt = time.Now()
				}
				if s.plan.Behaviour != NoKey {
					if s.plan.PressDelay <= 0 {
						press(d)
					} else {
						asked = d
						if pressT == nil {
							pressT = time.NewTimer(s.plan.PressDelay)
						} else {
							pressT.Reset(s.plan.PressDelay)
						}
						pressC = pressT.C
					}
				}
			case t.ID == prompts.CodeIs && s.plan.Behaviour == Hangup && r.Pressed:
				return tokens, true
			}
			afterPress = false
			if r.CodeHeardAt.IsZero() && t.Digit() == 0 && len(Parse(tokens, false).Plays) > 0 {
				r.CodeHeardAt = time.Now()
			}
		case <-pressC:
			pressC = nil
			press(asked)
		case <-call.Done():
			return tokens, false
		case err := <-mediaErr:
			r.Err = err
			return tokens, true
		case <-maxT.C:
			r.Err = fmt.Errorf("loadtest: call still up after %s", p.cfg.MaxCallDuration)
			return tokens, true
		case <-p.ctx.Done():
			return tokens, true
		}
	}
}
