package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Progress is a provisional (1xx) response to the INVITE.
type Progress struct {
	Status int    // 100, 180, 183, ...
	Reason string // reason phrase as received
	SDP    []byte // application/sdp body (early media, usually on 183), or nil
	At     time.Time
}

// DialRequest describes one outbound call.
type DialRequest struct {
	// Trunk is where UA.Dial sends the INVITE, over Trunk.Transport.
	// Trunks.Dial ignores it and chooses among its own trunks.
	Trunk Trunk
	// Number is the callee, in E.164 (validated again by Dial).
	Number string
	// CallerID, if set, is the number the call presents, in E.164
	// ("+15557654321"): the user part of From, whose display name stays
	// empty, and a P-Asserted-Identity <sip:CallerID@from-domain>
	// (RFC 3325 §9.1), sent to the trunk as the network-asserted identity.
	// It takes the place of the From user (Config.FromUser,
	// TrunkConfig.FromUser) and of any TrunkConfig.PAssertedIdentity, on
	// every attempt: the retry after a digest challenge and each trunk
	// Trunks.Dial fails over to; the From domain and a trunk's Privacy stay.
	// Dial checks it with ValidateCallerID before anything is sent. If
	// empty, the configured From user and P-Asserted-Identity are sent.
	CallerID string
	// Offer is the SDP offer, sent as the application/sdp INVITE body.
	Offer []byte
	// OfferFor, if set, makes the offer for each trunk Trunks.Dial tries
	// (its codec order, say) instead of Offer. UA.Dial ignores it.
	OfferFor func(t *TrunkConfig) []byte
	// RingTimeout bounds the wait for an answer, counted from the INVITE. On
	// expiry Dial sends CANCEL (RFC 3261 §9.1) and returns an *Error with
	// Kind ErrNoAnswer and Canceled set. If zero, 60s is used.
	RingTimeout time.Duration
	// OnProgress, if set, is called for each provisional response, on the
	// Dial goroutine and in order; it must not block.
	OnProgress func(Progress)
	// OnAttempt, if set, is called by Trunks.Dial when an attempt on one
	// trunk ends without an answer: before it fails over to the next trunk
	// (FailedOver set) and for the last attempt. It runs on the Dial
	// goroutine and must not block. UA.Dial does not call it.
	OnAttempt func(Attempt)
}

// Attempt is one try of Trunks.Dial on one trunk that ended without an
// answer.
type Attempt struct {
	// Trunk is the TrunkConfig.Name of the trunk tried.
	Trunk string
	// Status is the final SIP status received, 0 if none (timeout,
	// transport error).
	Status int
	// Reason is the reason phrase of that status, or a local description.
	Reason string
	// Err is the error of the attempt, as Dial would return it.
	Err error
	// At is when the attempt ended.
	At time.Time
	// FailedOver reports that the call moved on to another trunk after
	// this attempt.
	FailedOver bool
}

// outbound is everything about the trunk that goes into one call's INVITE
// and decides where it is sent. UA.Dial builds it from Config and a plain
// Trunk; Trunks.Dial from a TrunkConfig. Immutable once built.
type outbound struct {
	trunk      Trunk
	proxy      *Trunk      // outbound proxy: first Route and next hop; nil sends to the trunk
	tls        *tls.Config // for a TLS next hop; nil verifies against the system roots
	fromUser   string
	fromDomain string
	creds      credentials
	headers    []sip.Header  // P-Asserted-Identity, Privacy; cloned into each INVITE
	noResponse time.Duration // give up on a trunk that sends nothing at all after this; 0: wait for Timer B
	cfg        *TrunkConfig  // returned by Call.Trunk; nil for UA.Dial
	onEnd      func()        // set as Call.onEnd of each call answered; may be nil
}

// credentials answer digest challenges (RFC 3261 §22.2). realm, if set,
// restricts them to challenges of that realm.
type credentials struct {
	username, password, realm string
}

// fallback is the transport of the next hop when its URI names none.
func (o *outbound) fallback() Transport {
	if o.proxy != nil {
		return o.proxy.Transport.orUDP()
	}
	return o.trunk.Transport.orUDP()
}

// route is the Route header for the outbound proxy (loose routing,
// RFC 3261 §16.12.1.1 and §8.1.2), nil without one.
func (o *outbound) route() *sip.RouteHeader {
	if o.proxy == nil {
		return nil
	}
	u := sip.Uri{Scheme: "sip", Host: o.proxy.Host, Port: o.proxy.Port, UriParams: sip.NewParams()}
	if t := o.proxy.Transport.orUDP(); t != TransportUDP {
		u.UriParams.Add("transport", string(t))
	}
	u.UriParams.Add("lr", "")
	return &sip.RouteHeader{Address: u}
}

// Dial places a call: it sends the INVITE to req.Trunk and returns the
// established, ACKed Call once a 2xx arrives (RFC 3261 §13.2.2.4).
//
// The INVITE carries a From of Config.FromUser, or of req.CallerID with a
// matching P-Asserted-Identity, and our own tag; a To without tag, a
// Contact with the listening address, Via with rport (RFC 3581),
// Max-Forwards, User-Agent, Allow and the offer. Provisional responses are
// passed to OnProgress, as many as the trunk sends; the SDP of the last one
// carrying SDP is kept as Call.EarlySDP. One 401/407 challenge is answered
// with digest credentials from Config (RFC 3261 §22.2); the retry keeps the
// From and P-Asserted-Identity.
//
// A Number that fails ValidateE164, or a CallerID that fails
// ValidateCallerID, is an error wrapping ErrInvalidNumber, and nothing is
// sent. Other failures are *Error values with Kind set (see
// KindForStatus): a final non-2xx; a second challenge or one we have no
// credentials for (ErrAuth); no response at all before the INVITE
// transaction times out, or a transport error (ErrUnreachable, Status 0).
//
// On ring timeout, or when ctx ends, Dial sends CANCEL as soon as a
// provisional response allows it (RFC 3261 §9.1) and waits up to
// Config.CancelWait for the final response, normally 487. If a 2xx crosses
// the CANCEL, Dial ACKs it and sends BYE, so no dialog is left behind, and
// still reports the cancellation. On ring timeout the error has Kind
// ErrNoAnswer (or the verdict of a different final response that won the
// race; or ErrUnreachable if the trunk never sent any response, not even 100)
// and Canceled set. When ctx ends, the error wraps both ErrCanceled and
// context.Cause(ctx). If the trunk sends no provisional response to allow a
// CANCEL within CancelWait, the INVITE transaction is abandoned; a 2xx that
// still arrives for it later is ACKed and ended with BYE in the background.
//
// Dial returns at most RingTimeout plus three times CancelWait after it sends
// the INVITE (wait for a provisional, for the final response, for the BYE
// after a crossing 2xx), and sooner if the INVITE transaction times out (64*T1)
// because the trunk sends nothing at all.
func (ua *UA) Dial(ctx context.Context, req DialRequest) (*Call, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	o := &outbound{
		trunk:      req.Trunk,
		fromUser:   ua.cfg.FromUser,
		fromDomain: ua.cfg.FromDomain,
		creds:      credentials{username: ua.cfg.Username, password: ua.cfg.Password},
	}
	return ua.dial(ctx, req, o, req.Number)
}

// validate checks what of req goes into headers: Number and CallerID.
func (req *DialRequest) validate() error {
	if err := ValidateE164(req.Number); err != nil {
		return err
	}
	return ValidateCallerID(req.CallerID)
}

// ValidateCallerID reports whether s may be presented as a DialRequest's
// CallerID: empty (the configured caller ID), or an E.164 number as
// ValidateE164 accepts it. It ends up in From and P-Asserted-Identity, so
// this is what keeps CR/LF and other header-injection bytes out of them.
// The error wraps ErrInvalidNumber and quotes s with %q.
func ValidateCallerID(s string) error {
	if s == "" {
		return nil
	}
	if ValidateE164(s) != nil {
		return fmt.Errorf("%w: caller ID %q is not '+' followed by 8 to 15 digits, the first not 0", ErrInvalidNumber, s)
	}
	return nil
}

// withCallerID returns a copy of o that presents id, an E.164 number that
// passed ValidateCallerID: the From user, and the only P-Asserted-Identity
// (RFC 3325 §9.1 allows one sip URI), at o's From domain. o is shared by
// concurrent calls, so it is not changed.
func (o *outbound) withCallerID(id string) *outbound {
	c := *o
	c.fromUser = id
	c.headers = make([]sip.Header, 0, len(o.headers)+1)
	for _, h := range o.headers {
		if !strings.EqualFold(h.Name(), "P-Asserted-Identity") {
			c.headers = append(c.headers, h)
		}
	}
	pai := sip.Uri{Scheme: "sip", User: id, Host: o.fromDomain}
	c.headers = append(c.headers, sip.NewHeader("P-Asserted-Identity", "<"+pai.String()+">"))
	return &c
}

// dial places one call through o to user (the Request-URI user part,
// already validated: an E.164 number or its rewrite), presenting
// req.CallerID (already validated) if set.
func (ua *UA) dial(ctx context.Context, req DialRequest, o *outbound, user string) (*Call, error) {
	if req.CallerID != "" {
		o = o.withCallerID(req.CallerID)
	}
	target, err := o.trunk.requestURI(user)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", &Error{Kind: ErrCanceled, Reason: "not sent"}, context.Cause(ctx))
	}
	if ua.isClosed() {
		return nil, ErrClosed
	}
	var ruri sip.Uri
	if err := sip.ParseUri(target, &ruri); err != nil {
		return nil, fmt.Errorf("sip: request URI: %w", err)
	}
	ring := req.RingTimeout
	if ring <= 0 {
		ring = DefaultRingTimeout
	}
	inv := ua.newInvite(ruri, req, o, user)
	d := &dialing{
		ua:  ua,
		req: req,
		out: o,
		inv: inv,
		log: ua.log.With("call_id", inv.CallID().Value()),
	}
	return d.run(ctx, ring)
}

// newInvite builds the initial INVITE (RFC 3261 §8.1.1); Via is added by
// prepare when it is sent.
func (ua *UA) newInvite(ruri sip.Uri, req DialRequest, o *outbound, user string) *sip.Request {
	inv := sip.NewRequest(sip.INVITE, ruri)
	from := &sip.FromHeader{
		Address: sip.Uri{Scheme: "sip", User: o.fromUser, Host: o.fromDomain},
		Params:  sip.NewParams(),
	}
	from.Params.Add("tag", randToken()) // §8.1.1.3: the UAC's tag; sipgo adds none to a From we build
	to := &sip.ToHeader{
		Address: sip.Uri{Scheme: "sip", User: user, Host: o.trunk.Host},
		Params:  sip.NewParams(),
	}
	if rt := o.route(); rt != nil {
		inv.AppendHeader(rt)
	}
	callID := sip.CallIDHeader(randToken())
	maxfwd := sip.MaxForwardsHeader(70)
	inv.AppendHeader(&maxfwd)
	inv.AppendHeader(from)
	inv.AppendHeader(to)
	inv.AppendHeader(&callID)
	inv.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	inv.AppendHeader(ua.contact.Clone())
	inv.AppendHeader(sip.NewHeader("User-Agent", ua.cfg.UserAgent))
	inv.AppendHeader(sip.NewHeader("Allow", allowed))
	for _, h := range o.headers {
		inv.AppendHeader(sip.HeaderClone(h))
	}
	if len(req.Offer) > 0 {
		ct := sip.ContentTypeHeader("application/sdp")
		inv.AppendHeader(&ct)
	}
	inv.SetBody(req.Offer)
	return inv
}

// dialing is the state of one Dial; only the Dial goroutine touches it.
type dialing struct {
	ua  *UA
	req DialRequest
	out *outbound
	log *slog.Logger

	inv         *sip.Request // the INVITE of tx (replaced when answering a challenge)
	tx          sip.ClientTransaction
	provisional bool // tx got a 1xx, so CANCEL may be sent (§9.1)
	responded   bool // any response arrived, on any INVITE transaction
	authed      int  // challenges answered (a second only when the first nonce went stale)
	early       []byte

	cancelling bool  // ring timeout or ctx: we want the call gone
	cancelSent bool  // CANCEL went out for tx
	cancelKind error // ErrNoAnswer (ring timeout) or ErrCanceled (ctx)
	ctxErr     error // set when ctx ended
	deadline   *time.Timer
}

func (d *dialing) run(ctx context.Context, ring time.Duration) (*Call, error) {
	if err := d.ua.prepare(ctx, d.inv, d.out.fallback(), d.out.tls); err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, ErrClosed
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", &Error{Kind: ErrCanceled, Reason: "not sent"}, context.Cause(ctx))
		}
		return nil, &Error{Kind: ErrUnreachable, Reason: "transport error", cause: err}
	}
	tx, err := d.ua.cli.TransactionRequest(ctx, d.inv, d.ua.finish)
	if err != nil {
		return nil, &Error{Kind: ErrUnreachable, Reason: "transport error", cause: err}
	}
	d.tx = tx
	d.log.Debug("sip: INVITE sent", "to", d.out.trunk.String())

	ringTimer := time.NewTimer(ring)
	defer ringTimer.Stop()
	var silence <-chan time.Time
	if d.out.noResponse > 0 {
		t := time.NewTimer(d.out.noResponse)
		defer t.Stop()
		silence = t.C
	}
	defer func() {
		if d.deadline != nil {
			d.deadline.Stop()
		}
	}()
	ctxDone := ctx.Done()
	var deadline <-chan time.Time
	for {
		select {
		case res := <-d.tx.Responses():
			if call, err, done := d.onResponse(ctx, res); done {
				return call, err
			}
		case <-d.tx.Done():
			// Timer B or a transport error, no final response (§17.1.1.2),
			// or Close terminated every transaction.
			if d.ua.isClosed() {
				return nil, ErrClosed
			}
			if d.cancelling && (d.responded || d.cancelKind == ErrCanceled) {
				return nil, d.cancelError(408, "Request Timeout")
			}
			return nil, &Error{Kind: ErrUnreachable, Reason: "no response", Canceled: d.cancelling, cause: d.tx.Err()}
		case <-silence:
			if d.responded || d.cancelling {
				continue
			}
			// Not even a 100 Trying: the trunk is down. There is nothing
			// to CANCEL (§9.1); a 2xx that still comes gets ACK and BYE.
			d.tx.Terminate()
			d.ua.abandon(d.inv)
			d.log.Info("sip: no response from trunk", "after", d.out.noResponse)
			return nil, &Error{Kind: ErrUnreachable, Reason: fmt.Sprintf("no response within %s", d.out.noResponse)}
		case <-ringTimer.C:
			d.log.Info("sip: ring timeout, cancelling", "ring_timeout", ring)
			d.startCancel(ErrNoAnswer)
		case <-ctxDone:
			ctxDone = nil
			d.ctxErr = context.Cause(ctx)
			d.startCancel(ErrCanceled)
		case <-deadline:
			// No final response to the cancelled INVITE in time: give up
			// on it, but remember it so a late 2xx still gets ACK and BYE.
			d.tx.Terminate()
			d.ua.abandon(d.inv)
			if !d.responded && d.cancelKind == ErrNoAnswer {
				// Not even a 100 Trying: the trunk is down, nobody is ringing.
				return nil, &Error{Kind: ErrUnreachable, Reason: "no response", Canceled: true}
			}
			return nil, d.cancelError(408, "Request Timeout")
		}
		if d.deadline != nil {
			deadline = d.deadline.C
		}
	}
}

// onResponse handles one response to the INVITE; done reports that Dial
// returns call, err.
func (d *dialing) onResponse(ctx context.Context, res *sip.Response) (call *Call, err error, done bool) {
	d.responded = true
	switch {
	case res.IsProvisional():
		d.provisional = true
		var sdp []byte
		if res.StatusCode > 100 && len(res.Body()) > 0 && isSDP(res) {
			sdp = append([]byte(nil), res.Body()...)
			d.early = sdp
		}
		d.log.Debug("sip: provisional", "sip_status", res.StatusCode)
		if d.req.OnProgress != nil {
			d.req.OnProgress(Progress{Status: res.StatusCode, Reason: res.Reason, SDP: sdp, At: time.Now()})
		}
		if d.cancelling && !d.cancelSent {
			d.sendCancel()
		}
		return nil, nil, false

	case res.IsSuccess():
		dlg := newDialog(d.inv, res)
		dlg.transport, dlg.tls = d.out.fallback(), d.out.tls
		if d.cancelling {
			// The 2xx crossed our CANCEL: the callee is in a dialog we no
			// longer want. ACK it (§13.2.2.4) and end it with BYE (§15).
			d.log.Info("sip: 2xx crossed CANCEL; sending ACK and BYE", "sip_status", res.StatusCode)
			bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.ua.cfg.CancelWait)
			defer cancel()
			ack := dlg.ack(d.ua)
			if err := d.ua.prepare(bctx, ack, dlg.transport, dlg.tls); err == nil {
				d.tx.OnRetransmission(func(r *sip.Response) {
					if r.IsSuccess() {
						_ = d.ua.cli.WriteRequest(ack.Clone(), d.ua.finish)
					}
				})
			}
			d.ua.endUnwanted(bctx, dlg)
			return nil, d.cancelError(487, "Request Terminated"), true
		}
		c := newCall(d.ua, dlg, res, d.early)
		c.trunk, c.onEnd = d.out.cfg, d.out.onEnd
		if !d.ua.register(c) {
			return nil, ErrClosed, true
		}
		ack := dlg.ack(d.ua)
		if err := d.ua.prepare(ctx, ack, dlg.transport, dlg.tls); err != nil {
			d.log.Warn("sip: ACK not sent", "error", err)
		} else if err := d.ua.cli.WriteRequest(ack, d.ua.finish); err != nil {
			// The 2xx will be retransmitted and ACKed again from the hook.
			d.log.Warn("sip: ACK failed", "error", err)
		}
		c.ackTmpl = ack.Clone()
		inv := d.inv
		d.tx.OnRetransmission(func(r *sip.Response) { c.onRetransmission(inv, r) })
		d.log.Info("sip: answered", "sip_status", res.StatusCode)
		return c, nil, true

	default:
		if (res.StatusCode == 401 || res.StatusCode == 407) && !d.cancelling {
			if d.out.creds.username == "" || d.authed >= 2 || (d.authed == 1 && !staleChallenge(res)) {
				d.log.Info("sip: call failed", "sip_status", res.StatusCode)
				return nil, &Error{Status: res.StatusCode, Reason: res.Reason, Kind: ErrAuth}, true
			}
			if err := d.answerChallenge(ctx, res); err != nil {
				return nil, &Error{Status: res.StatusCode, Reason: res.Reason, Kind: ErrAuth, cause: err}, true
			}
			return nil, nil, false
		}
		if d.cancelling {
			return nil, d.cancelError(res.StatusCode, res.Reason), true
		}
		d.log.Info("sip: call failed", "sip_status", res.StatusCode)
		return nil, &Error{Status: res.StatusCode, Reason: res.Reason, Kind: KindForStatus(res.StatusCode)}, true
	}
}

// answerChallenge resends the INVITE with digest credentials for the
// 401/407 challenge in res (RFC 3261 §22.2): a copy of the INVITE with
// Authorization or Proxy-Authorization, CSeq+1 and a new branch, in a new
// client transaction. The old transaction already ACKed the challenge.
func (d *dialing) answerChallenge(ctx context.Context, res *sip.Response) error {
	d.authed++
	// Clone: the old transaction still owns (and may read) d.inv.
	inv := d.inv.Clone()
	if err := d.out.creds.authorize(inv, res); err != nil {
		return err
	}
	inv.CSeq().SeqNo++
	inv.RemoveHeader("Via")
	if err := d.ua.prepare(ctx, inv, d.out.fallback(), d.out.tls); err != nil {
		return err
	}
	tx, err := d.ua.cli.TransactionRequest(ctx, inv, d.ua.finish)
	if err != nil {
		return err
	}
	d.log.Debug("sip: answered auth challenge", "sip_status", res.StatusCode)
	d.inv, d.tx, d.provisional = inv, tx, false
	return nil
}

// startCancel begins tearing down the pending INVITE: CANCEL now if a
// provisional response arrived, else as soon as one does (§9.1). The deadline
// bounds the wait either way.
func (d *dialing) startCancel(kind error) {
	if kind == ErrCanceled {
		d.cancelKind = ErrCanceled
	}
	if d.cancelling {
		return
	}
	d.cancelling = true
	if d.cancelKind == nil {
		d.cancelKind = kind
	}
	d.deadline = time.NewTimer(d.ua.cfg.CancelWait)
	if d.provisional {
		d.sendCancel()
	}
}

// sendCancel sends CANCEL for the INVITE (RFC 3261 §9.1): same Request-URI,
// Call-ID, From, To, CSeq number and the single top Via (so it matches the
// INVITE's transaction at the UAS), method CANCEL. Its own 200 is awaited in
// the background; Dial waits for the INVITE's final response.
func (d *dialing) sendCancel() {
	d.cancelSent = true
	d.deadline.Reset(d.ua.cfg.CancelWait)
	inv := d.inv
	c := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	c.AppendHeader(sip.HeaderClone(inv.Via()))
	maxfwd := sip.MaxForwardsHeader(70)
	c.AppendHeader(&maxfwd)
	c.AppendHeader(sip.HeaderClone(inv.From()))
	c.AppendHeader(sip.HeaderClone(inv.To()))
	c.AppendHeader(sip.HeaderClone(inv.CallID()))
	c.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	for _, h := range inv.GetHeaders("Route") {
		c.AppendHeader(sip.HeaderClone(h))
	}
	c.AppendHeader(sip.NewHeader("User-Agent", d.ua.cfg.UserAgent))
	c.SetBody(nil)
	// Same hop as the INVITE: its transport and resolved destination.
	c.SetTransport(inv.Transport())
	c.SetDestination(inv.Destination())

	ua, log := d.ua, d.log
	ua.mu.Lock()
	defer ua.mu.Unlock()
	if ua.closed {
		return
	}
	ua.wg.Add(1)
	go func() {
		defer ua.wg.Done()
		ctx, cancel := context.WithTimeout(ua.bg, ua.cfg.CancelWait)
		defer cancel()
		res, err := ua.cli.Do(ctx, c, ua.finish)
		if err != nil {
			log.Debug("sip: CANCEL got no response", "error", err)
			return
		}
		log.Debug("sip: CANCEL answered", "sip_status", res.StatusCode)
	}()
	log.Debug("sip: CANCEL sent")
}

// cancelError is the verdict of a call we cancelled and whose INVITE ended
// with status (487 normally; 408 when no final response came).
func (d *dialing) cancelError(status int, reason string) error {
	kind := d.cancelKind
	if kind == ErrNoAnswer && status != 487 && status != 408 {
		// A different final response won the race with our CANCEL.
		if k := KindForStatus(status); k != nil {
			kind = k
		}
	}
	e := &Error{Status: status, Reason: reason, Kind: kind, Canceled: true}
	if kind == ErrCanceled && d.ctxErr != nil {
		return fmt.Errorf("%w: %w", e, d.ctxErr)
	}
	return e
}

func isSDP(m *sip.Response) bool {
	ct := m.ContentType()
	if ct == nil {
		return false
	}
	mt, _, _ := strings.Cut(ct.Value(), ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/sdp")
}
