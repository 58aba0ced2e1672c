package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/voiceotp/voiceotp/media"
	"github.com/voiceotp/voiceotp/prompts"
	"github.com/voiceotp/voiceotp/sip"
)

// Behaviour is what a virtual phone does with a call.
type Behaviour string

// The behaviours of a phone, as named in a load test mix ("answer=85,nokey=5,…").
const (
	// Answer: ring, answer, listen, press the digit the challenge asks for, listen to the code until the
	// server hangs up. The server's outcome should be delivered.
	Answer Behaviour = "answer"
	// NoKey: answer and listen but never press a key, like voicemail. Expect no_input and no code heard.
	NoKey Behaviour = "nokey"
	// Busy: reject with 486 Busy Here (after AnswerDelay, if set). Expect busy.
	Busy Behaviour = "busy"
	// NoAnswer: ring until the server gives up and sends CANCEL. Expect no_answer.
	NoAnswer Behaviour = "noanswer"
	// Hangup: answer, press the digit, and hang up as soon as "your code is" has been heard, during the
	// code. Expect abandoned.
	Hangup Behaviour = "hangup"
)

// Behaviours lists every behaviour, in the order above.
func Behaviours() []Behaviour { return []Behaviour{Answer, NoKey, Busy, NoAnswer, Hangup} }

// ParseBehaviour reads a behaviour name, case-insensitively; "" is Answer.
func ParseBehaviour(s string) (Behaviour, error) {
	b := Behaviour(strings.ToLower(strings.TrimSpace(s)))
	if b == "" {
		return Answer, nil
	}
	for _, k := range Behaviours() {
		if b == k {
			return b, nil
		}
	}
	return "", fmt.Errorf("loadtest: unknown behaviour %q (answer, nokey, busy, noanswer, hangup)", s)
}

// Plan is how a phone treats one call.
type Plan struct {
	// Behaviour is what to do; "" means Answer.
	Behaviour Behaviour
	// AnswerDelay is how long the phone rings (180 Ringing is sent at once) before it answers, or
	// before it rejects for Busy. Zero answers at once. NoAnswer ignores it.
	AnswerDelay time.Duration
	// PressDelay is the reaction time between recognising the challenge digit and pressing it. Zero
	// presses at once.
	PressDelay time.Duration
}

// Default values of Config fields left zero.
const (
	DefaultMaxCallDuration = 2 * time.Minute
	DefaultKeyDuration     = 100 * time.Millisecond
)

// Config configures a Phone. Catalog is required; every other field has a working zero value.
type Config struct {
	// ListenAddr is the SIP UDP address, "host:port". If empty, "127.0.0.1:0".
	ListenAddr string
	// MediaIP is the address the RTP sockets bind and the SDP answers announce. If zero, the SIP
	// listening IP.
	MediaIP netip.Addr
	// Ports is the RTP port range; zero means media's default (10000-20000).
	Ports media.PortRange
	// Catalog holds the prompts the server speaks, the templates the phone recognises. Required.
	Catalog *prompts.Catalog
	// Recogniser, if set, is shared instead of one built from Catalog: build one per catalog and give
	// it to every Phone of a farm.
	Recogniser *Recogniser
	// Plan is how every call is treated, unless PlanFor is set.
	Plan Plan
	// PlanFor, if set, chooses the plan of each call from the called number (a load tester encodes
	// the behaviour in the number it asks the server to call). It is called on the call's goroutine.
	PlanFor func(number string) Plan
	// Codecs is the answer's codec preference; nil means PCMU, then PCMA.
	Codecs []media.Codec
	// NoAudio makes the phone send no RTP but its key presses. By default it sends a frame of silence
	// every 20 ms, as a real phone sends its microphone, so the server's receive path is loaded too.
	NoAudio bool
	// Audio, if set, is sent instead of silence: a recording (LoadPhoneAudio) that each answered call
	// plays in a loop for as long as it lasts, from a random frame per call so that calls are not in
	// phase; a key press takes the place of its frames while it lasts, delaying, not dropping them.
	// Share one between phones. Ignored when NoAudio is set.
	Audio *PhoneAudio
	// Mux, if set, carries every call's RTP on its shared lanes (the dense media mode, [media.Mux])
	// instead of a socket per call; it must be bound to the phone's SIP IP. The phone announces each
	// stream's SSRC in its answer (a=ssrc) and tells the server's streams apart by theirs. The phone
	// never closes it.
	Mux *media.Mux
	// KeepAudio keeps what the phone heard, decoded, in CallReport.PCM.
	KeepAudio bool
	// MaxCallDuration bounds an answered call; the phone hangs up after it. If zero, 2 minutes.
	MaxCallDuration time.Duration
	// Logger receives the phone's logs, keyed by call_id and number. Nil discards them. The code the
	// phone hears is never logged.
	Logger *slog.Logger
	// OnReport, if set, receives each call's report when the call ends, on the call's goroutine; it
	// must not block for long. If nil, reports are kept until WaitReport takes them.
	OnReport func(CallReport)
}

// CallReport is what one call did and what the phone heard.
type CallReport struct {
	CallID    string
	Number    string // the called number (the Request-URI user)
	From      string // the caller (the From user)
	Behaviour Behaviour
	// SIPStatus is the final response the phone sent: 200, 486, or 487 when the caller cancelled.
	SIPStatus int
	Codec     string // the negotiated codec, "PCMU" or "PCMA"; "" when not answered
	// HangupBy is "local" when the phone sent BYE, "remote" when the server did, "" when the call was
	// never answered.
	HangupBy string

	// ChallengeDigit is the digit the challenge asked for, as recognised ("" if none was heard).
	ChallengeDigit string
	// Pressed reports that the phone pressed it (RFC 4733).
	Pressed bool
	// HeardCode is the code heard: every complete play agreeing. "" when no complete play was heard
	// or the plays differ (then Err wraps ErrCodeMismatch).
	HeardCode string
	// Plays are the complete plays of the code heard, in order.
	Plays []string
	// Heard is every utterance recognised, in order.
	Heard []Token

	InvitedAt   time.Time
	AnsweredAt  time.Time
	ChallengeAt time.Time // when the challenge digit was recognised
	PressedAt   time.Time // when the key press started
	CodeHeardAt time.Time // when the first complete play of the code was recognised
	EndedAt     time.Time

	Received media.RecvStats // the server's RTP stream, as the phone received it
	// Pacing is how evenly the server's audio packets arrived (see [Pacing]).
	Pacing Pacing
	Sent   media.SendStats // the phone's RTP stream
	// PCM is the decoded audio heard, 8 kHz mono, when Config.KeepAudio is set.
	PCM []int16
	// Err is what went wrong on the phone's side, if anything.
	Err error
}

// Phone is a virtual phone: a SIP user agent that takes every call sent to it, each on its own
// goroutine with its own RTP socket, and reports each call when it ends. Point a server's trunk at Addr.
// Its methods are safe for concurrent use.
type Phone struct {
	cfg   Config
	log   *slog.Logger
	rec   *Recogniser
	ctx   context.Context // cancelled by Close: every call ends
	stop  context.CancelFunc
	calls sync.WaitGroup

	mu      sync.Mutex // guards ua and ip (set once NewPhone's UA serves), closed, reports, changed
	ua      *sip.UA
	ip      netip.Addr // the RTP address
	closed  bool
	reports map[string][]CallReport // number → reports not yet taken
	changed chan struct{}           // closed and replaced when a report is added
}

// NewPhone starts a phone listening for SIP on cfg.ListenAddr. The caller must Close it.
func NewPhone(cfg Config) (*Phone, error) {
	if cfg.Catalog == nil {
		return nil, errors.New("loadtest: phone needs a prompt catalog")
	}
	if cfg.MaxCallDuration <= 0 {
		cfg.MaxCallDuration = DefaultMaxCallDuration
	}
	rec := cfg.Recogniser
	if rec == nil {
		var err error
		if rec, err = NewRecogniser(cfg.Catalog); err != nil {
			return nil, err
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Phone{cfg: cfg, log: log, rec: rec, reports: map[string][]CallReport{}, changed: make(chan struct{})}
	p.ctx, p.stop = context.WithCancel(context.Background())
	ua, err := sip.NewUA(sip.Config{
		ListenAddr: cfg.ListenAddr,
		UserAgent:  "voiceotp-phone",
		FromUser:   "phone",
		Logger:     log,
		OnInvite:   p.onInvite,
	})
	if err != nil {
		p.stop()
		return nil, err
	}
	ip := cfg.MediaIP
	if !ip.IsValid() || ip.IsUnspecified() {
		ip = ua.LocalAddr().Addr()
	}
	if ip.IsUnspecified() {
		ua.Close()
		p.stop()
		return nil, errors.New("loadtest: set MediaIP when listening on an unspecified address")
	}
	// The UA already serves: publish ua and ip under mu, which onInvite takes.
	p.mu.Lock()
	p.ua, p.ip = ua, ip
	p.mu.Unlock()
	return p, nil
}

// Addr returns the phone's SIP address: use "sip:" + Addr().String() as the server's trunk.
func (p *Phone) Addr() netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ua.LocalAddr()
}

// Close ends every call (answered ones with BYE, ringing ones with 480), waits for their reports, and
// closes the SIP socket. It is idempotent.
func (p *Phone) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.stop()
	p.calls.Wait()
	p.mu.Lock()
	ua := p.ua
	p.mu.Unlock()
	return ua.Close()
}

// WaitReport waits for the report of a call to number that has ended, removes it from the phone and
// returns it; reports for one number come in the order the calls ended. It returns ctx's error when ctx
// ends first. Reports are only kept when Config.OnReport is nil.
func (p *Phone) WaitReport(ctx context.Context, number string) (CallReport, error) {
	for {
		p.mu.Lock()
		if rs := p.reports[number]; len(rs) > 0 {
			r := rs[0]
			if len(rs) == 1 {
				delete(p.reports, number)
			} else {
				p.reports[number] = rs[1:]
			}
			p.mu.Unlock()
			return r, nil
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return CallReport{}, fmt.Errorf("loadtest: waiting for the report of a call to %s: %w", number, context.Cause(ctx))
		}
	}
}

func (p *Phone) deliver(r CallReport) {
	if p.cfg.OnReport != nil {
		p.cfg.OnReport(r)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reports[r.Number] = append(p.reports[r.Number], r)
	close(p.changed)
	p.changed = make(chan struct{})
}

// onInvite starts the goroutine that owns the call.
func (p *Phone) onInvite(in *sip.Incoming) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = in.Reject(480, "")
		return
	}
	p.calls.Add(1)
	ip := p.ip
	p.mu.Unlock()
	go func() {
		defer p.calls.Done()
		p.handle(in, ip)
	}()
}

// handle runs one call from the INVITE to its report.
func (p *Phone) handle(in *sip.Incoming, ip netip.Addr) {
	plan := p.cfg.Plan
	if p.cfg.PlanFor != nil {
		plan = p.cfg.PlanFor(in.Number())
	}
	if plan.Behaviour == "" {
		plan.Behaviour = Answer
	}
	r := &CallReport{
		CallID:    in.CallID(),
		Number:    in.Number(),
		From:      in.From(),
		Behaviour: plan.Behaviour,
		InvitedAt: time.Now(),
	}
	log := p.log.With("call_id", r.CallID, "number", r.Number, "behaviour", string(plan.Behaviour))
	defer func() {
		r.EndedAt = time.Now()
		log.Info("phone: call ended", "sip_status", r.SIPStatus, "hangup_by", r.HangupBy,
			"challenge", r.ChallengeDigit, "pressed", r.Pressed, "code_plays", len(r.Plays), "error", r.Err)
		p.deliver(*r)
	}()

	if err := in.Ringing(); err != nil {
		r.Err = err
		return
	}
	if plan.Behaviour == NoAnswer {
		select {
		case <-in.Done():
			r.SIPStatus = 487
		case <-p.ctx.Done():
			r.SIPStatus = 480
			r.Err = in.Reject(480, "")
		}
		return
	}
	if plan.AnswerDelay > 0 {
		t := time.NewTimer(plan.AnswerDelay)
		select {
		case <-t.C:
		case <-in.Done():
			t.Stop()
			r.SIPStatus = 487
			return
		case <-p.ctx.Done():
			t.Stop()
			r.SIPStatus = 480
			r.Err = in.Reject(480, "")
			return
		}
	}
	if plan.Behaviour == Busy {
		r.SIPStatus = 486
		r.Err = in.Reject(486, "")
		return
	}
	p.talk(in, ip, plan, r, log)
}

// talk answers and runs the media of one call until it ends.
func (p *Phone) talk(in *sip.Incoming, ip netip.Addr, plan Plan, r *CallReport, log *slog.Logger) {
	offer, err := media.ParseOffer(in.OfferSDP())
	var neg media.Answer
	if err == nil {
		neg, err = offer.Negotiate(p.cfg.Codecs)
	}
	if err != nil {
		r.SIPStatus, r.Err = 488, err
		_ = in.Reject(488, "")
		return
	}
	var port media.Port
	var ssrc uint32
	if p.cfg.Mux != nil {
		port, err = p.cfg.Mux.Open()
		for ssrc == 0 {
			ssrc = rand.Uint32()
		}
	} else {
		port, err = media.OpenPort(ip, p.cfg.Ports)
	}
	if err != nil {
		r.SIPStatus, r.Err = 500, err
		_ = in.Reject(500, "")
		return
	}
	defer port.Close()
	local := netip.AddrPortFrom(ip, port.Addr().Port())
	answer, err := media.MarshalAnswer(local, neg, 0, ssrc)
	if err != nil {
		r.SIPStatus, r.Err = 500, err
		_ = in.Reject(500, "")
		return
	}
	actx, cancel := context.WithTimeout(p.ctx, 32*time.Second)
	call, err := in.Answer(actx, answer)
	cancel()
	if err != nil {
		if errors.Is(err, sip.ErrCallerCanceled) {
			r.SIPStatus = 487
			return
		}
		r.SIPStatus, r.Err = 200, err
		return
	}
	r.SIPStatus, r.AnsweredAt, r.Codec = 200, time.Now(), neg.Codec.Name
	log.Debug("phone: answered", "codec", neg.Codec.Name)

	s := newSession(p, plan, neg, r)
	s.run(port, ssrc, call)
}
