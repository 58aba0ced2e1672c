package callflow

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/voiceotp/voiceotp/media"
	"github.com/voiceotp/voiceotp/prompts"
	"github.com/voiceotp/voiceotp/sip"
)

// script is the answered part of one call: the gate, the code, the repeats
// and the goodbye. It runs on the call's owner goroutine; the sender and
// receiver each run on one goroutine of their own, ended by stopMedia.
type script struct {
	*callState
	call     sipCall
	sender   *media.Sender
	receiver *media.Receiver
	enc      prompts.Encoding
	phrases  *phrases
	mediaErr chan error
	info     <-chan sip.InfoDigit        // SIP INFO key presses; nil unless the DTMF mode allows them
	last     media.Digit                 // the last key press taken, for dedupe across sources
	confirm  func(context.Context) error // Request.Confirm; nil: always play
}

// dedupeWindow: the same key reported by two signalling paths (a gateway
// that sends both RFC 4733 and SIP INFO, or leaks tones in-band) within this
// time is one press. Presses of the same key by a person are further apart.
const dedupeWindow = 300 * time.Millisecond

// wake says why script.wait returned.
type wake int

const (
	wakeDigit   wake = iota // a digit arrived
	wakePlayed              // the utterance finished playing
	wakeTimeout             // the timer fired
	wakeHangup              // the callee sent BYE
	wakeCtx                 // the call's context ended (max duration or cancel)
	wakeMedia               // RTP inactivity or a socket error
	wakeStopped             // Request.Confirm refused the next play of the code (err says why)
)

type waited struct {
	wake  wake
	digit media.Digit
	err   error
}

// wait blocks until the first of: a digit, played closing (if not nil),
// timer firing (if not nil), the remote hangup, ctx, or a media failure.
func (s *script) wait(ctx context.Context, played <-chan struct{}, timer <-chan time.Time) waited {
	for {
		w := s.waitOnce(ctx, played, timer)
		if w.wake != wakeDigit {
			return w
		}
		d := w.digit
		if d.Digit == s.last.Digit && d.Source != s.last.Source && d.At.Sub(s.last.At).Abs() < dedupeWindow {
			continue // the same press, signalled twice
		}
		s.last = d
		return w
	}
}

func (s *script) waitOnce(ctx context.Context, played <-chan struct{}, timer <-chan time.Time) waited {
	select {
	case d := <-s.receiver.Digits():
		return waited{wake: wakeDigit, digit: d}
	case d := <-s.info:
		return waited{wake: wakeDigit, digit: media.Digit{Digit: d.Digit, At: d.At, Source: "info"}}
	case <-played:
		return waited{wake: wakePlayed}
	case <-timer:
		return waited{wake: wakeTimeout}
	case <-s.call.Done():
		return waited{wake: wakeHangup}
	case <-ctx.Done():
		return waited{wake: wakeCtx, err: ctx.Err()}
	case err := <-s.mediaErr:
		return waited{wake: wakeMedia, err: err}
	}
}

// talk runs media for an answered call and ends it.
func (c *callState) talk(ctx context.Context, req Request, call sipCall, port media.Port, offer media.Offer, ans media.Answer) {
	r := c.r
	enc := encodingFor(ans.Codec)
	dtmfPTs := []uint8{offer.DTMFPayloadType}
	if offer.DTMFPayloadType == 0 {
		dtmfPTs[0] = 101
	}
	if ans.HasDTMF && ans.DTMFPayloadType != dtmfPTs[0] {
		dtmfPTs = append(dtmfPTs, ans.DTMFPayloadType)
	}
	modeName, sendDigits := r.cfg.DTMFMode, ""
	if t := call.Trunk(); t != nil {
		if t.DTMFMode != "" {
			modeName = t.DTMFMode
		}
		sendDigits = t.SendDigits
	}
	mode, err := parseDTMFMode(modeName)
	if err != nil {
		c.hangup(call)
		c.end(Failed, ByLocal, CauseMediaError, err)
		return
	}
	var sendPT uint8
	if ans.HasDTMF {
		sendPT = ans.DTMFPayloadType
	}
	s := &script{
		callState: c,
		call:      call,
		enc:       enc,
		phrases:   r.phrases[enc],
		sender: port.NewSender(ans.Addr, media.SenderConfig{
			PayloadType:     ans.Codec.PayloadType,
			Silence:         r.catalog.SilenceFrame(enc),
			DTMFPayloadType: sendPT,
			SSRC:            offer.SSRC,
		}),
		receiver: port.NewReceiver(media.ReceiverConfig{
			Remote:            ans.Addr,
			SSRC:              ans.SSRC,
			DTMFPayloadTypes:  dtmfPTs,
			DisableRFC4733:    !mode.rfc4733,
			InbandDTMF:        mode.inband && !(mode.inbandIfNoEvents && ans.HasDTMF),
			InactivityTimeout: r.cfg.RTPTimeout,
		}),
		mediaErr: make(chan error, 2),
		confirm:  req.Confirm,
	}
	if mode.info {
		s.info = call.Digits()
	}
	if sendDigits != "" && sendPT == 0 {
		c.emit(Event{Type: EventSentDigits, Reason: "not sent: the answer has no telephone-event"})
		sendDigits = ""
	}

	mediaCtx, stopMedia := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{s.sender.Run, s.receiver.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(mediaCtx); err != nil && mediaCtx.Err() == nil {
				s.mediaErr <- err
			}
		}()
	}

	talkCtx, cancel := context.WithTimeout(ctx, r.cfg.MaxCallDuration)
	outcome, by, cause, err := s.run(talkCtx, ctx, req.Code, sendDigits)
	cancel()
	if by == ByLocal {
		c.hangup(call)
	}
	stopMedia()
	wg.Wait()

	st, rs := s.sender.Stats(), s.receiver.Stats()
	c.res.Media = &MediaReport{
		Codec:           ans.Codec.Name,
		RemoteAddr:      ans.Addr.String(),
		LocalAddr:       port.Addr().String(),
		DTMFPayloadType: ans.DTMFPayloadType,
		PacketsSent:     st.Packets,
		BytesSent:       st.Bytes,
		LatePackets:     st.Late,
		PacketsRecv:     rs.Packets,
		BytesRecv:       rs.Bytes,
		PacketsLost:     rs.Lost,
		JitterMS:        float64(rs.Jitter) / float64(time.Millisecond),
		DroppedSource:   rs.Dropped,
		Malformed:       rs.Malformed,
	}
	c.end(outcome, by, cause, err)
}

// run is the state machine after the answer. talkCtx bounds the call
// length; parent tells a cancel from the maximum duration.
func (s *script) run(talkCtx, parent context.Context, code, sendDigits string) (Outcome, string, string, error) {
	if sendDigits != "" {
		if w, done := s.sendDigits(talkCtx, sendDigits); !done {
			return s.interrupted(w, parent, false)
		}
	}
	if o, by, cause, err, ok := s.gate(talkCtx, parent); !ok {
		return o, by, cause, err
	}
	return s.speak(talkCtx, parent, code)
}

// interrupted maps a wake that ends the script to its outcome. heard says
// whether the code was already played in full once.
func (s *script) interrupted(w waited, parent context.Context, heard bool) (Outcome, string, string, error) {
	switch w.wake {
	case wakeHangup:
		if heard {
			return Delivered, ByRemote, CauseRemoteBye, nil
		}
		return Abandoned, ByRemote, CauseRemoteBye, nil
	case wakeMedia:
		cause := CauseMediaError
		if errors.Is(w.err, media.ErrInactive) {
			cause = CauseRTPTimeout
		}
		if heard {
			return Delivered, ByLocal, cause, nil
		}
		return Failed, ByLocal, cause, w.err
	case wakeStopped:
		if heard {
			return Delivered, ByLocal, stopCause(w.err), nil
		}
		return Canceled, ByLocal, stopCause(w.err), w.err
	default: // wakeCtx
		if parent.Err() != nil {
			cause := context.Cause(parent)
			if heard {
				return Delivered, ByLocal, stopCause(cause), nil
			}
			return Canceled, ByLocal, stopCause(cause), cause
		}
		if heard {
			return Delivered, ByLocal, CauseMaxDuration, nil
		}
		return Failed, ByLocal, CauseMaxDuration, errors.New("callflow: maximum call duration reached before the code was played")
	}
}

// gate plays the challenge up to Tries times and waits for the key.
// ok is true when the right key came; otherwise the outcome is returned.
func (s *script) gate(ctx, parent context.Context) (o Outcome, by, cause string, err error, ok bool) {
	r := s.r
	ch := r.cfg.Challenge
	want := ch.Digit
	if ch.Mode == ChallengeRandom {
		want = r.digit()
	}
	asked := ""
	if ch.Mode != ChallengeAny {
		asked = string(want)
		s.res.ChallengeDigit = asked
	}
	// In any-key mode the prompt asks for 1, which is clear, and accepts any key.
	challenge := s.phrases.challenge[1]
	if ch.Mode != ChallengeAny {
		challenge = s.phrases.challenge[want-'0']
	}

	var lead [][]byte // said before the challenge on a re-try
	for try := 1; try <= r.cfg.Tries; try++ {
		frames := challenge
		if lead != nil {
			frames = join(lead, challenge)
		}
		start := r.now()
		s.emit(Event{Type: EventChallenge, At: start, N: try, Digit: asked})
		played := s.sender.Play(frames)
		var timer *time.Timer
		var fire <-chan time.Time
	wait:
		for {
			w := s.wait(ctx, played, fire)
			switch w.wake {
			case wakePlayed:
				played = nil
				timer = time.NewTimer(r.cfg.KeyTimeout)
				fire = timer.C
			case wakeTimeout:
				s.emit(Event{Type: EventNoKey, N: try})
				lead = s.phrases.noKey
				break wait
			case wakeDigit:
				d := w.digit
				if d.At.Before(start) {
					s.emit(Event{Type: EventDigit, At: d.At, Digit: string(d.Digit), Source: d.Source, Accepted: ptr(false), Reason: "before challenge"})
					continue
				}
				if ch.Mode == ChallengeAny || d.Digit == want {
					s.sender.Stop() // barge-in
					stopTimer(timer)
					s.emit(Event{Type: EventDigit, At: d.At, Digit: string(d.Digit), Source: d.Source, Accepted: ptr(true)})
					s.res.ChallengeDigitOK = true
					s.res.GatePassedAt = r.now()
					s.emit(Event{Type: EventGatePassed, At: s.res.GatePassedAt})
					return "", "", "", nil, true
				}
				s.sender.Stop()
				s.emit(Event{Type: EventDigit, At: d.At, Digit: string(d.Digit), Source: d.Source, Accepted: ptr(false), Reason: "wrong key"})
				lead = s.phrases.wrongKey
				break wait
			default:
				stopTimer(timer)
				o, by, cause, err := s.interrupted(w, parent, false)
				return o, by, cause, err, false
			}
		}
		stopTimer(timer)
	}
	// No right key: say so and leave; the code was never sent.
	if w, done := s.playThrough(ctx, s.phrases.noKeyBye); !done {
		o, by, cause, err := s.interrupted(w, parent, false)
		return o, by, cause, err, false
	}
	return NoInput, ByLocal, CauseNoInput, nil, false
}

// speak plays the code CodePlays times, offers repeats, and says goodbye.
func (s *script) speak(ctx, parent context.Context, code string) (Outcome, string, string, error) {
	r := s.r
	// The code's frames exist only from here on: after 200, ACK and the key.
	digits, err := r.catalog.Code(s.enc, code, r.cfg.Code)
	if err != nil {
		return Failed, ByLocal, CauseMediaError, err
	}
	play := func(intro [][]byte) (waited, bool) {
		if s.confirm != nil {
			if err := s.confirm(ctx); err != nil {
				return waited{wake: wakeStopped, err: err}, false
			}
		}
		w, done := s.playThrough(ctx, join(intro, digits))
		if done {
			s.res.CodePlays++
			s.emit(Event{Type: EventCodePlayed, N: s.res.CodePlays})
		}
		return w, done
	}
	for n := 1; n <= r.cfg.CodePlays; n++ {
		intro := s.phrases.codeIs
		if n > 1 {
			intro = s.phrases.again
		}
		if w, done := play(intro); !done {
			return s.interrupted(w, parent, s.res.CodePlays > 0)
		}
	}
	for repeats := 0; repeats < r.cfg.MaxRepeats; {
		w, again := s.offerRepeat(ctx)
		if w.wake != wakeTimeout && w.wake != wakeDigit {
			return s.interrupted(w, parent, true)
		}
		if !again {
			break
		}
		repeats++
		s.emit(Event{Type: EventRepeatAsked, N: repeats})
		if w, done := play(s.phrases.codeIs); !done {
			return s.interrupted(w, parent, true)
		}
	}
	if w, done := s.playThrough(ctx, s.phrases.goodbye); !done {
		return s.interrupted(w, parent, true)
	}
	return Delivered, ByLocal, CauseCompleted, nil
}

// offerRepeat says "press 1 to hear it again" and waits RepeatWait after it
// for a 1. It returns again=true on a 1 (w.wake == wakeDigit), false on the
// timeout (w.wake == wakeTimeout); any other wake ends the call.
func (s *script) offerRepeat(ctx context.Context) (w waited, again bool) {
	r := s.r
	start := r.now()
	played := s.sender.Play(s.phrases.repeat)
	var timer *time.Timer
	var fire <-chan time.Time
	defer func() { stopTimer(timer) }()
	for {
		w = s.wait(ctx, played, fire)
		switch w.wake {
		case wakePlayed:
			played = nil
			timer = time.NewTimer(r.cfg.RepeatWait)
			fire = timer.C
		case wakeDigit:
			ok := w.digit.Digit == '1' && !w.digit.At.Before(start)
			e := Event{Type: EventDigit, At: w.digit.At, Digit: string(w.digit.Digit), Source: w.digit.Source, Accepted: ptr(ok)}
			if !ok {
				e.Reason = "not a repeat request"
				s.emit(e)
				continue
			}
			s.emit(e)
			s.sender.Stop()
			return w, true
		default:
			return w, false
		}
	}
}

// playThrough plays frames to the end. Digits that arrive meanwhile are
// recorded and otherwise ignored. done is false when something ended the
// call first; w says what.
func (s *script) playThrough(ctx context.Context, frames [][]byte) (w waited, done bool) {
	played := s.sender.Play(frames)
	for {
		w = s.wait(ctx, played, nil)
		switch w.wake {
		case wakePlayed:
			return w, true
		case wakeDigit:
			s.emit(Event{Type: EventDigit, At: w.digit.At, Digit: string(w.digit.Digit), Source: w.digit.Source, Accepted: ptr(false), Reason: "ignored while speaking"})
		default:
			s.sender.Stop()
			return w, false
		}
	}
}

// sendDigits plays a trunk's post-answer digits (an extension, say) as
// RFC 4733 events; ',' is a 500 ms pause. Keys the callee presses meanwhile
// are recorded and ignored: the challenge has not started.
func (s *script) sendDigits(ctx context.Context, digits string) (waited, bool) {
	for i := 0; i < len(digits); i++ {
		var done <-chan struct{}
		if digits[i] == ',' {
			done = s.sender.Play(s.phrases.pause)
		} else {
			done = s.sender.PlayDigit(digits[i], 160*time.Millisecond)
		}
		for waiting := true; waiting; {
			w := s.wait(ctx, done, nil)
			switch w.wake {
			case wakePlayed:
				waiting = false
			case wakeDigit:
				s.emit(Event{Type: EventDigit, At: w.digit.At, Digit: string(w.digit.Digit), Source: w.digit.Source,
					Accepted: ptr(false), Reason: "before challenge"})
			default:
				return w, false
			}
		}
	}
	s.emit(Event{Type: EventSentDigits, N: len(digits)})
	return waited{}, true
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

func ptr[T any](v T) *T { return &v }
