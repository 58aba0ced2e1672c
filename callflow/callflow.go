// Package callflow is the voice-OTP call script: one state machine per call
// that dials through package sip, negotiates media with package media, and
// plays prompts from package prompts.
//
// A call goes dial → ringing → answered → challenge → code → repeat →
// goodbye → hang up. The challenge ("to hear your code, press 7") is a gate:
// nothing of the code leaves before the final 200, our ACK and the right key,
// so a voicemail box that answers and records never hears it. Every step is
// a timestamped Event, and every call ends in exactly one Outcome within
// bounded time (ring timeout, key timeout × tries, maximum call length).
//
// callflow knows nothing of HTTP, verifications or storage: it takes a
// number and a code and returns a Result. The code is held only in memory
// for the call and never appears in an event, a log line or an error.
package callflow

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/voiceotp/voiceotp/media"
	"github.com/voiceotp/voiceotp/prompts"
	"github.com/voiceotp/voiceotp/sip"
)

// Dialer places INVITEs: *sip.UA (to the request's trunk) and *sip.Trunks
// (with failover between configured trunks) implement it.
type Dialer interface {
	Dial(ctx context.Context, req sip.DialRequest) (*sip.Call, error)
}

// sipCall is what the script needs of an established SIP dialog; *sip.Call
// implements it.
type sipCall interface {
	CallID() string
	AnswerSDP() []byte
	Done() <-chan struct{}
	Hangup(ctx context.Context) error
	HangupBy() string
	Trunk() *sip.TrunkConfig
	Digits() <-chan sip.InfoDigit
}

// dialer places the INVITE; the production one wraps a Dialer, tests use a fake.
type dialer interface {
	dial(ctx context.Context, req sip.DialRequest) (sipCall, error)
}

type sipDialer struct{ d Dialer }

func (d sipDialer) dial(ctx context.Context, req sip.DialRequest) (sipCall, error) {
	c, err := d.d.Dial(ctx, req)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Runner places calls with one SIP user agent and one prompt catalog. It is
// safe for concurrent use: each Run is an independent call.
type Runner struct {
	dialer  dialer
	catalog *prompts.Catalog
	cfg     Config
	mediaIP netip.Addr
	phrases map[prompts.Encoding]*phrases // read-only after New
	log     *slog.Logger
	now     func() time.Time
	digit   func() byte
	mux     *media.Mux // dense media mode; nil gives each call a socket of its own
	logNum  func(string) string
}

// Option configures a Runner.
type Option func(*Runner)

// WithLogger sets the logger; the default discards. Logs carry call_id,
// number, outcome and sip_status, never the code.
func WithLogger(l *slog.Logger) Option { return func(r *Runner) { r.log = l } }

// WithLogNumber sets how a callee's number appears in log lines, e.g. masked (policy.MaskNumber); the
// default writes it as it is.
func WithLogNumber(f func(string) string) Option { return func(r *Runner) { r.logNum = f } }

// WithMux puts the RTP of every call on a shared lane of m, the dense media mode ([media.Mux]), instead
// of a socket and two goroutines per call. m must be bound to the Runner's media IP; the Runner never
// closes it. In this mode our offer announces the stream's SSRC (a=ssrc, RFC 5576), and a remote that
// announces its own in the answer has its stream told apart by it.
func WithMux(m *media.Mux) Option { return func(r *Runner) { r.mux = m } }

// New returns a Runner that dials with d (a *sip.UA or *sip.Trunks) and
// speaks from catalog. When cfg.MediaIP is zero, d's listening address is
// used if d has one (LocalAddr), else New fails.
func New(d Dialer, catalog *prompts.Catalog, cfg Config, opts ...Option) (*Runner, error) {
	if d == nil || catalog == nil {
		return nil, errors.New("callflow: a SIP dialer and a prompt catalog are required")
	}
	ip := cfg.MediaIP
	if la, ok := d.(interface{ LocalAddr() netip.AddrPort }); ok && !ip.IsValid() {
		ip = la.LocalAddr().Addr()
	}
	return newRunner(sipDialer{d}, catalog, cfg, ip, opts...)
}

func newRunner(d dialer, catalog *prompts.Catalog, cfg Config, mediaIP netip.Addr, opts ...Option) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !mediaIP.IsValid() {
		return nil, errors.New("callflow: no media IP to bind RTP to; set MediaIP")
	}
	if announce := cfg.MediaPublicIP; (!announce.IsValid() && mediaIP.IsUnspecified()) || (announce.IsValid() && announce.IsUnspecified()) {
		return nil, errors.New("callflow: the media IP announced in SDP must be a concrete address; set MediaPublicIP (or a concrete MediaIP)")
	}
	r := &Runner{
		dialer:  d,
		catalog: catalog,
		cfg:     cfg.withDefaults(),
		mediaIP: mediaIP.Unmap(),
		log:     slog.New(slog.DiscardHandler),
		now:     time.Now,
		digit:   randomDigit,
		logNum:  func(n string) string { return n },
	}
	r.phrases = map[prompts.Encoding]*phrases{}
	for _, enc := range []prompts.Encoding{prompts.ULaw, prompts.ALaw} {
		p, err := buildPhrases(catalog, enc)
		if err != nil {
			return nil, err
		}
		r.phrases[enc] = p
	}
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

// openPort gives a call its RTP endpoint: a share of a Mux lane, or a socket of its own.
func (r *Runner) openPort() (media.Port, error) {
	if r.mux != nil {
		return r.mux.Open()
	}
	return media.OpenPort(r.mediaIP, r.cfg.Ports)
}

func randomDigit() byte {
	n, err := rand.Int(rand.Reader, big.NewInt(10))
	if err != nil {
		// crypto/rand does not fail on Linux; a fixed digit still gates.
		return '5'
	}
	return byte('0' + n.Int64())
}

// Request is one call to place.
type Request struct {
	// Trunk is where the INVITE goes.
	Trunk sip.Trunk
	// Number is the callee in E.164 ("+15551234567"); validated again here.
	Number string
	// CallerID, if set, is the number the call presents, in E.164
	// ("+15557654321"): sip.DialRequest.CallerID, the From user and
	// P-Asserted-Identity of the INVITE on every trunk tried. A malformed one
	// ends the call Failed with CauseInvalid before anything is dialled. If
	// empty, the caller ID configured in package sip is presented.
	CallerID string
	// Code is the one-time code, 4 to 10 digits. It is spoken only after the gate.
	Code string
	// Confirm, if not nil, is asked right before each play of the code (the first, the repeats the
	// script makes, and those the callee asks for), and the code is played only when it returns nil.
	// An error ends the call there with a BYE: its hangup cause is the error's *Stop cause if it has
	// one, else "canceled", and the outcome is Canceled, or Delivered if the code was already heard
	// once. It is the owner's last look (a store read, say) at whether the code may still be spoken,
	// for when a cancel of the call's context could not reach this call. ctx is the call's context.
	Confirm func(ctx context.Context) error
}

// Run places one call and returns its full account. It blocks until the
// call has ended: at most RingTimeout (plus a bounded CANCEL) before the
// answer, and MaxCallDuration (plus a bounded BYE) after it. Cancelling ctx
// cancels a ringing call (CANCEL) or hangs up an answered one (BYE) before
// another frame is sent; the outcome is then Canceled unless the code had
// already been heard, and the hangup cause is that of a *Stop cause given
// to context.WithCancelCause, else "canceled".
//
// onEvent, if not nil, is called for each event as it happens, serially.
// It must not block for long: the call waits for it.
func (r *Runner) Run(ctx context.Context, req Request, onEvent func(Event)) *Result {
	c := &callState{r: r, onEvent: onEvent, res: &Result{Number: req.Number, Events: []Event{}}}
	c.place(ctx, req)
	c.res.EndedAt = r.now()
	r.log.LogAttrs(ctx, slog.LevelInfo, "call ended",
		slog.String("call_id", c.res.CallID),
		slog.String("to", r.logNum(req.Number)),
		slog.String("outcome", string(c.res.Outcome)),
		slog.Int("sip_status", c.res.SIPStatus),
		slog.String("hangup_by", c.res.HangupBy),
		slog.String("hangup_cause", c.res.HangupCause),
		slog.Int("code_plays", c.res.CodePlays))
	return c.res
}

// callState is owned by the goroutine running Run, except emit, which
// sip's progress callback may call too.
type callState struct {
	r       *Runner
	onEvent func(Event)
	mu      sync.Mutex // guards res.Events, res.RingingAt and onEvent calls
	res     *Result
}

func (c *callState) emit(e Event) {
	if e.At.IsZero() {
		e.At = c.r.now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.Events = append(c.res.Events, e)
	if c.onEvent != nil {
		c.onEvent(e)
	}
}

func (c *callState) end(o Outcome, by, cause string, err error) {
	c.res.Outcome = o
	c.res.HangupBy = by
	c.res.HangupCause = cause
	if err != nil {
		c.res.Error = err.Error()
	}
	if by != "" || cause != "" {
		c.emit(Event{Type: EventHangup, By: by, Cause: cause, SIPStatus: c.res.SIPStatus, Reason: c.res.SIPReason})
	}
}

func validateCode(code string) error {
	if len(code) < 4 || len(code) > 10 {
		return fmt.Errorf("callflow: code must have 4 to 10 digits, got %d characters", len(code))
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return errors.New("callflow: code must contain only digits 0-9")
		}
	}
	return nil
}

// place runs the call up to the hangup and fills c.res.
func (c *callState) place(ctx context.Context, req Request) {
	r := c.r
	if err := sip.ValidateE164(req.Number); err != nil {
		c.end(InvalidNumber, "", CauseInvalid, err)
		return
	}
	if err := validateCode(req.Code); err != nil {
		c.end(Failed, "", CauseInvalid, err)
		return
	}
	if err := sip.ValidateCallerID(req.CallerID); err != nil {
		c.end(Failed, "", CauseInvalid, err)
		return
	}
	if ctx.Err() != nil {
		c.end(Canceled, "", stopCause(context.Cause(ctx)), context.Cause(ctx))
		return
	}
	port, err := r.openPort()
	if err != nil {
		c.end(Failed, "", CauseMediaError, err)
		return
	}
	defer port.Close()
	local := port.Addr()
	var ssrc uint32
	if r.mux != nil {
		for ssrc == 0 {
			ssrc = mrand.Uint32()
		}
	}
	announce := r.cfg.MediaPublicIP
	if !announce.IsValid() {
		announce = r.mediaIP
	}
	// offerFor is the offer for a trunk with its own codec order (or ours).
	offerFor := func(t *sip.TrunkConfig) media.Offer {
		o := media.Offer{Addr: netip.AddrPortFrom(announce, local.Port()), Codecs: r.cfg.Codecs, SSRC: ssrc}
		if t != nil && len(t.Codecs) > 0 {
			o.Codecs = codecsByName(t.Codecs)
		}
		return o
	}
	offer := offerFor(nil)
	offerSDP, err := offer.Marshal()
	if err != nil {
		c.end(Failed, "", CauseMediaError, err)
		return
	}

	c.emit(Event{Type: EventDialing})
	c.res.DialedAt = r.now()
	call, err := r.dialer.dial(ctx, sip.DialRequest{
		Trunk:    req.Trunk,
		Number:   req.Number,
		CallerID: req.CallerID,
		Offer:    offerSDP,
		OfferFor: func(t *sip.TrunkConfig) []byte {
			if b, err := offerFor(t).Marshal(); err == nil {
				return b
			}
			return offerSDP
		},
		RingTimeout: r.cfg.RingTimeout,
		OnAttempt: func(a sip.Attempt) {
			e := Event{Type: EventAttempt, At: a.At, Trunk: a.Trunk, SIPStatus: a.Status, Reason: a.Reason}
			if a.FailedOver {
				e.Cause = "failed_over"
			}
			c.emit(e)
		},
		OnProgress: func(p sip.Progress) {
			at := p.At
			if at.IsZero() {
				at = r.now()
			}
			c.mu.Lock()
			if c.res.RingingAt.IsZero() && p.Status > 100 {
				c.res.RingingAt = at
			}
			c.mu.Unlock()
			c.emit(Event{Type: EventProvisional, At: at, SIPStatus: p.Status, Reason: p.Reason})
		},
	})
	if err != nil {
		c.dialFailed(ctx, err)
		return
	}
	c.res.AnsweredAt = r.now()
	c.res.SIPStatus = 200
	c.res.SIPReason = "OK"
	c.res.CallID = call.CallID()
	if t := call.Trunk(); t != nil {
		c.res.Trunk = t.Name
		offer = offerFor(t) // the answer is to this trunk's offer
	}

	ans, err := media.ParseAnswer(offer, call.AnswerSDP())
	if err != nil {
		c.emit(Event{Type: EventAnswered, SIPStatus: 200, Trunk: c.res.Trunk, Reason: "unusable SDP answer"})
		c.hangup(call)
		c.end(Failed, ByLocal, CauseBadSDP, err)
		return
	}
	c.emit(Event{Type: EventAnswered, SIPStatus: 200, Trunk: c.res.Trunk,
		Reason: fmt.Sprintf("%s to %s", ans.Codec.Name, ans.Addr)})
	c.talk(ctx, req, call, port, offer, ans)
}

func (c *callState) dialFailed(ctx context.Context, err error) {
	o := outcomeForDialError(ctx, err)
	by, cause := ByRemote, CauseSIPFinal
	var se *sip.Error
	if errors.As(err, &se) {
		c.res.SIPStatus = se.Status
		c.res.SIPReason = se.Reason
		if se.Canceled {
			by, cause = ByLocal, CauseRingTimeout
		}
	}
	switch {
	case o == Canceled:
		by, cause = ByLocal, stopCause(context.Cause(ctx))
	case o == Unreachable && c.res.SIPStatus == 0:
		by = ""
	}
	c.end(o, by, cause, err)
}

// hangup sends BYE unless the callee already did, bounded in time.
func (c *callState) hangup(call sipCall) {
	hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := call.Hangup(hctx); err != nil {
		c.r.log.Warn("bye failed", slog.String("call_id", call.CallID()), slog.String("error", err.Error()))
	}
}

// codecsByName maps configured codec names (validated by the trunk's
// configuration) to media codecs, in order; unknown names are skipped.
func codecsByName(names []string) []media.Codec {
	var out []media.Codec
	for _, n := range names {
		switch n {
		case media.PCMU.Name:
			out = append(out, media.PCMU)
		case media.PCMA.Name:
			out = append(out, media.PCMA)
		}
	}
	return out
}

func encodingFor(codec media.Codec) prompts.Encoding {
	if codec.PayloadType == media.PCMA.PayloadType {
		return prompts.ALaw
	}
	return prompts.ULaw
}
