package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Retransmission timers of a UAS's 2xx to INVITE (RFC 3261 §13.3.1.4,
// §17.1.1.1): the 2xx is resent at T1, 2·T1, 4·T1 … capped at T2, until the
// ACK arrives or 64·T1 has passed. They are constants here: sipgo's sip.T1
// and sip.T2 are mutable package globals, which this package never reads or
// writes.
const (
	uasT1      = 500 * time.Millisecond
	uasT2      = 4 * time.Second
	uasAckWait = 64 * uasT1
)

// Errors of an incoming call.
var (
	// ErrCallerCanceled: the caller cancelled the INVITE (RFC 3261 §9.2)
	// before it was answered.
	ErrCallerCanceled = errors.New("sip: caller cancelled")
	// ErrNoAck: the caller never acknowledged our 2xx (RFC 3261
	// §13.3.1.4); the dialog was ended with BYE.
	ErrNoAck = errors.New("sip: no ACK for 2xx")
	// ErrAlreadyAnswered: Answer or Reject was called after a final response
	// had been sent.
	ErrAlreadyAnswered = errors.New("sip: invite already answered")
)

// Incoming is a call offered to the UA by an initial INVITE (RFC 3261 §13.3):
// the UA has received it, sent nothing but "100 Trying" (sent by the
// transaction layer after 200 ms), and waits for its owner to ring, answer or
// reject it. Its methods are safe for concurrent use, but a call has one
// final response: the first Answer or Reject wins.
//
// Retransmissions of the INVITE are absorbed by its server transaction and
// never produce a second Incoming. The UA keeps the transaction open until a
// final response is sent, the caller cancels, or the UA closes.
type Incoming struct {
	ua       *UA
	req      *sip.Request
	tx       sip.ServerTransaction
	log      *slog.Logger
	callID   string
	number   string
	from     string
	offer    []byte
	localTag string // our To tag, the same in every response (RFC 3261 §8.2.6.2)

	done     chan struct{} // closed when the INVITE can no longer be answered
	doneOnce sync.Once
	final    chan struct{} // closed once a final response has been sent

	mu        sync.Mutex // guards responded, cancelled
	responded bool
	cancelled bool
}

// CallID returns the Call-ID of the INVITE.
func (in *Incoming) CallID() string { return in.callID }

// Number returns the called number: the user part of the Request-URI, or of
// the To URI when the Request-URI has none (RFC 3261 §8.2.2.1 routes on the
// Request-URI).
func (in *Incoming) Number() string { return in.number }

// From returns the caller: the user part of the From URI, or the whole URI
// when it has no user part.
func (in *Incoming) From() string { return in.from }

// OfferSDP returns the INVITE's body, the caller's SDP offer (RFC 3264 §5),
// or nil for an INVITE without a body. The caller must not modify it.
func (in *Incoming) OfferSDP() []byte { return in.offer }

// Done is closed when the INVITE can no longer be answered before a final
// response was sent: the caller sent CANCEL (answered 200, and the INVITE
// 487, by the transaction layer as RFC 3261 §9.2 requires), the transaction
// failed, or the UA closed. It is not closed by Answer or Reject.
func (in *Incoming) Done() <-chan struct{} { return in.done }

// Canceled reports whether the caller cancelled the INVITE.
func (in *Incoming) Canceled() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.cancelled
}

func (in *Incoming) end(cancelled bool) {
	in.mu.Lock()
	if cancelled {
		in.cancelled = true
	}
	in.mu.Unlock()
	in.doneOnce.Do(func() { close(in.done) })
}

// response builds a response to the INVITE carrying our To tag.
func (in *Incoming) response(status int, reason string, body []byte) *sip.Response {
	res := sip.NewResponseFromRequest(in.req, status, reason, body)
	if to := res.To(); to != nil && status != 100 {
		to.Params.Add("tag", in.localTag)
	}
	res.AppendHeader(sip.NewHeader("User-Agent", in.ua.cfg.UserAgent))
	if status > 100 && status < 300 {
		res.AppendHeader(in.ua.contact.Clone())
	}
	if status >= 200 && status < 300 {
		res.AppendHeader(sip.NewHeader("Allow", allowed))
	}
	if len(body) > 0 {
		ct := sip.ContentTypeHeader("application/sdp")
		res.AppendHeader(&ct)
	}
	return res
}

// Ringing sends "180 Ringing" (RFC 3261 §13.3.1.1). It fails once a final
// response was sent or the caller cancelled.
func (in *Incoming) Ringing() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.responded {
		return ErrAlreadyAnswered
	}
	if in.cancelled {
		return ErrCallerCanceled
	}
	if err := in.tx.Respond(in.response(180, "Ringing", nil)); err != nil {
		return fmt.Errorf("sip: 180 for call %s: %w", in.callID, err)
	}
	return nil
}

// claim reserves the one final response; it fails if one was sent already or
// the caller cancelled.
func (in *Incoming) claim() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.responded {
		return ErrAlreadyAnswered
	}
	if in.cancelled {
		return ErrCallerCanceled
	}
	select {
	case <-in.done:
		return ErrClosed
	default:
	}
	in.responded = true
	return nil
}

// Reject sends a final non-2xx response: 486 Busy Here, 480 Temporarily
// Unavailable, 603 Decline and so on (status 300-699; an empty reason takes
// the standard phrase). The transaction layer retransmits it until the
// caller's ACK (RFC 3261 §17.2.1).
func (in *Incoming) Reject(status int, reason string) error {
	if status < 300 || status > 699 {
		return fmt.Errorf("sip: reject status %d is not 300-699", status)
	}
	if reason == "" {
		reason = reasonPhrase(status)
	}
	if !validToken(reason) {
		return fmt.Errorf("sip: invalid reason phrase %q", reason)
	}
	if err := in.claim(); err != nil {
		return err
	}
	defer close(in.final)
	if err := in.tx.Respond(in.response(status, reason, nil)); err != nil {
		return fmt.Errorf("sip: %d for call %s: %w", status, in.callID, err)
	}
	in.log.Info("sip: incoming call rejected", "sip_status", status)
	return nil
}

// Answer sends "200 OK" with sdp as the answer (RFC 3264 §6) and returns the
// established Call once the caller's ACK arrives. Until then the 2xx is
// retransmitted at T1, 2·T1 … T2 (RFC 3261 §13.3.1.4); the transaction layer
// does not do it for a 2xx (RFC 6026 §7.1). The call is usable, and a BYE
// from the caller ends it, from the moment the 200 is sent.
//
// If no ACK arrives within 64·T1 (32 s), or ctx ends first, Answer ends the
// dialog with BYE, as §13.3.1.4 says, and returns an error wrapping ErrNoAck
// (or ctx's error). If the caller's CANCEL won the race with our 200, the
// error wraps ErrCallerCanceled. A BYE that arrives before the ACK (the ACK
// was lost) still returns the Call, already ended.
//
// The returned Call is the same type Dial returns, seen from the callee: its
// AnswerSDP is the answer we sent, and Hangup sends BYE from us with From and
// To swapped relative to the INVITE and the caller's Contact as Request-URI
// (RFC 3261 §12.2.1.1).
func (in *Incoming) Answer(ctx context.Context, sdp []byte) (*Call, error) {
	if err := in.claim(); err != nil {
		return nil, err
	}
	res := in.response(200, "OK", sdp)
	d := newUASDialog(in.req, in.localTag)
	d.transport = Transport(strings.ToLower(in.req.Transport()))
	c := newIncomingCall(in.ua, d, sdp)
	acked := make(chan struct{})
	if !in.ua.registerIncoming(c, acked) {
		close(in.final)
		return nil, ErrClosed
	}
	err := in.tx.Respond(res)
	close(in.final)
	if err != nil {
		in.ua.unregisterIncoming(c)
		c.end("local")
		return nil, fmt.Errorf("sip: 200 for call %s: %w", in.callID, err)
	}
	in.log.Info("sip: incoming call answered")

	every := uasT1
	retransmit := time.NewTimer(every)
	defer retransmit.Stop()
	giveUp := time.NewTimer(uasAckWait)
	defer giveUp.Stop()
	for {
		select {
		case <-acked:
			return c, nil
		case <-c.done:
			in.ua.unregisterIncoming(c)
			return c, nil
		case <-in.done:
			// CANCEL reached the transaction before our 200 did: it
			// answered 487, and the caller will never ACK the 200.
			in.ua.unregisterIncoming(c)
			c.end("remote")
			if in.Canceled() {
				return nil, ErrCallerCanceled
			}
			return nil, ErrClosed
		case <-retransmit.C:
			if err := in.tx.Respond(res); err != nil {
				in.log.Debug("sip: 2xx retransmission failed", "error", err)
			}
			every = min(2*every, uasT2)
			retransmit.Reset(every)
		case <-giveUp.C:
			return nil, in.abandon(c, ErrNoAck)
		case <-ctx.Done():
			return nil, in.abandon(c, fmt.Errorf("%w: %w", ErrNoAck, context.Cause(ctx)))
		}
	}
}

// abandon ends an answered call that was never ACKed: BYE (RFC 3261
// §13.3.1.4), bounded by CancelWait.
func (in *Incoming) abandon(c *Call, err error) error {
	in.ua.unregisterIncoming(c)
	bctx, cancel := context.WithTimeout(in.ua.bg, in.ua.cfg.CancelWait)
	defer cancel()
	if herr := c.Hangup(bctx); herr != nil {
		in.log.Debug("sip: BYE after missing ACK failed", "error", herr)
	}
	return fmt.Errorf("sip: call %s: %w", in.callID, err)
}

// newUASDialog builds the callee's side of the dialog an INVITE creates
// (RFC 3261 §12.1.1): the local URI and tag are the INVITE's To plus our tag,
// the remote ones its From, the remote target its Contact (or the From URI
// when it has none), and the route set its Record-Route in order. Our CSeq
// numbering starts at 1 with the first request we send.
func newUASDialog(inv *sip.Request, localTag string) *dialog {
	to, from := inv.To(), inv.From()
	d := &dialog{
		callID: inv.CallID().Value(),
		from: &sip.FromHeader{
			DisplayName: to.DisplayName,
			Address:     *to.Address.Clone(),
			Params:      to.Params.Clone(),
		},
		to: &sip.ToHeader{
			DisplayName: from.DisplayName,
			Address:     *from.Address.Clone(),
			Params:      from.Params.Clone(),
		},
		target: *from.Address.Clone(),
	}
	d.from.Params.Add("tag", localTag)
	if c := inv.Contact(); c != nil && (c.Address.Scheme == "sip" || c.Address.Scheme == "") && c.Address.Host != "" {
		d.target = *c.Address.Clone()
		d.target.Scheme = "sip"
	}
	for _, h := range inv.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			d.routes = append(d.routes, &sip.RouteHeader{Address: *rr.Address.Clone()})
		}
	}
	remote, _ := d.to.Params.Get("tag")
	d.key = dialogKey{callID: d.callID, localTag: localTag, remoteTag: remote}
	return d
}

func newIncomingCall(ua *UA, d *dialog, answer []byte) *Call {
	return &Call{
		ua:     ua,
		d:      d,
		key:    d.key,
		callID: d.callID,
		answer: append([]byte(nil), answer...),
		status: 200,
		done:   make(chan struct{}),
		digits: make(chan InfoDigit, digitQueue),
	}
}

// registerIncoming records an answered call, so that the caller's ACK and
// BYE find it; acked is closed when the ACK arrives.
func (ua *UA) registerIncoming(c *Call, acked chan struct{}) bool {
	ua.mu.Lock()
	defer ua.mu.Unlock()
	if ua.closed {
		return false
	}
	ua.calls[c.key] = c
	ua.acks[c.key] = acked
	return true
}

func (ua *UA) unregisterIncoming(c *Call) {
	ua.mu.Lock()
	defer ua.mu.Unlock()
	delete(ua.acks, c.key)
}

// onAck takes the ACK of a 2xx we sent (a request of its own, RFC 3261
// §17.1.1.3, so no transaction matches it). ACKs of non-2xx responses are
// absorbed by their INVITE server transaction and never reach here.
func (ua *UA) onAck(req *sip.Request, _ sip.ServerTransaction) {
	k, ok := dialogKeyUAC(req)
	if !ok {
		return
	}
	ua.mu.Lock()
	acked := ua.acks[k]
	delete(ua.acks, k)
	ua.mu.Unlock()
	if acked != nil {
		close(acked)
	}
}

// onIncoming hands a new INVITE to Config.OnInvite and holds its server
// transaction open until a final response is sent, the caller cancels, or
// the UA closes: sipgo terminates an INVITE transaction without a final
// response as soon as its handler returns.
func (ua *UA) onIncoming(req *sip.Request, tx sip.ServerTransaction) {
	callID, from, to := req.CallID(), req.From(), req.To()
	if callID == nil || from == nil || to == nil {
		ua.respond(req, tx, 400, "Bad Request")
		return
	}
	in := &Incoming{
		ua:       ua,
		req:      req,
		tx:       tx,
		callID:   callID.Value(),
		number:   req.Recipient.User,
		from:     from.Address.User,
		offer:    append([]byte(nil), req.Body()...),
		localTag: randToken(),
		done:     make(chan struct{}),
		final:    make(chan struct{}),
	}
	if in.number == "" {
		in.number = to.Address.User
	}
	if in.from == "" {
		in.from = from.Address.String()
	}
	if len(in.offer) == 0 {
		in.offer = nil
	}
	in.log = ua.log.With("call_id", in.callID)
	if !tx.OnCancel(func(*sip.Request) { in.end(true) }) {
		return // already cancelled
	}
	in.log.Info("sip: incoming call", "to", in.number)
	ua.cfg.OnInvite(in)
	select {
	case <-in.final:
	case <-in.done:
	case <-tx.Done():
		in.end(false)
	case <-ua.bg.Done():
		in.end(false)
	}
}

// reasonPhrase is the RFC 3261 §21 reason phrase of the statuses a callee
// typically rejects with, and a generic one for the rest.
func reasonPhrase(status int) string {
	switch status {
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 480:
		return "Temporarily Unavailable"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 500:
		return "Server Internal Error"
	case 503:
		return "Service Unavailable"
	case 600:
		return "Busy Everywhere"
	case 603:
		return "Decline"
	}
	return "Rejected"
}
