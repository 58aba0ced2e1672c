package sip

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// digitQueue is how many INFO digits a Call holds for a reader that is
// behind; more are dropped (and logged).
const digitQueue = 32

// InfoDigit is one DTMF digit the far end sent in a SIP INFO request within
// the call's dialog (RFC 6086, with an application/dtmf-relay or
// application/dtmf body).
type InfoDigit struct {
	// Digit is '0'-'9', '*', '#' or 'A'-'D'.
	Digit byte
	// At is when the INFO arrived.
	At time.Time
	// Duration is the tone duration the body states, 0 if none.
	Duration time.Duration
}

// Call is an established outbound call: the dialog created by the 2xx to our
// INVITE, already ACKed. Its methods are safe for concurrent use. The call
// ends when the callee sends BYE (answered 200 by the UA) or when Hangup is
// called; either way Done is closed.
type Call struct {
	ua      *UA
	d       *dialog
	key     dialogKey
	callID  string
	answer  []byte
	early   []byte
	status  int
	ackTmpl *sip.Request // ACK resent on 2xx retransmissions
	done    chan struct{}
	digits  chan InfoDigit
	trunk   *TrunkConfig // the trunk that carried the call, nil for UA.Dial
	onEnd   func()       // called once when the call ends; set before the call is shared

	mu        sync.Mutex // guards hangupBy, localCSeq
	hangupBy  string
	localCSeq uint32
}

func newCall(ua *UA, d *dialog, res *sip.Response, early []byte) *Call {
	return &Call{
		ua:        ua,
		d:         d,
		key:       d.key,
		callID:    d.callID,
		answer:    append([]byte(nil), res.Body()...),
		early:     early,
		status:    res.StatusCode,
		done:      make(chan struct{}),
		digits:    make(chan InfoDigit, digitQueue),
		localCSeq: d.inviteCSeq,
	}
}

// Trunk returns the configuration of the trunk that carried the call when it
// was placed by Trunks.Dial, and nil otherwise (UA.Dial with a plain Trunk,
// or an incoming call). The caller must not modify it.
func (c *Call) Trunk() *TrunkConfig { return c.trunk }

// Digits delivers the DTMF digits the far end sends in SIP INFO requests
// (RFC 6086) during the call, in order of arrival, each answered 200 before
// it is delivered. Up to 32 undelivered digits are held; more are dropped.
// The channel is never closed: stop reading when Done is closed.
func (c *Call) Digits() <-chan InfoDigit { return c.digits }

// deliverDigit queues d for Digits without blocking.
func (c *Call) deliverDigit(d InfoDigit) {
	select {
	case c.digits <- d:
	default:
		c.ua.log.Warn("sip: INFO digit dropped, reader is behind", "call_id", c.callID)
	}
}

// CallID returns the Call-ID of the dialog.
func (c *Call) CallID() string { return c.callID }

// AnswerSDP returns the body of the 2xx that answered the INVITE: the SDP
// answer (RFC 3264). The caller must not modify it.
func (c *Call) AnswerSDP() []byte { return c.answer }

// EarlySDP returns the SDP of the last provisional response that carried one
// (normally 183 Session Progress, early media), or nil.
func (c *Call) EarlySDP() []byte { return c.early }

// Status returns the status code of the answer, normally 200.
func (c *Call) Status() int { return c.status }

// Done is closed when the dialog ends: the callee's BYE, our Hangup, or the
// UA's Close.
func (c *Call) Done() <-chan struct{} { return c.done }

// HangupBy reports who ended the call: "" while it is up, "remote" after the
// callee's BYE, "local" after Hangup (or UA.Close).
func (c *Call) HangupBy() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hangupBy
}

// end marks the call ended by who, once; it reports whether this call did it
// and returns the CSeq number for a BYE.
func (c *Call) end(who string) (uint32, bool) {
	c.mu.Lock()
	if c.hangupBy != "" {
		c.mu.Unlock()
		return 0, false
	}
	c.hangupBy = who
	c.localCSeq++
	cseq := c.localCSeq
	c.mu.Unlock()
	close(c.done)
	c.ua.unregister(c)
	if c.onEnd != nil {
		c.onEnd()
	}
	return cseq, true
}

// Hangup ends the call with BYE (RFC 3261 §15.1.1). As that section says, the
// call is over the moment the BYE is sent: Done is closed before Hangup waits
// for the BYE's final response, which it does until ctx ends or the BYE
// transaction times out (64*T1). It is idempotent, and a no-op returning nil
// once the call has ended (after the callee's BYE, say). A 481 response
// (the callee already forgot the call) is not an error; any other non-2xx
// is returned as an *Error with Kind ErrFailed.
func (c *Call) Hangup(ctx context.Context) error {
	cseq, ok := c.end("local")
	if !ok {
		return nil
	}
	status, err := c.ua.sendBye(ctx, c.d, cseq)
	if err != nil {
		return fmt.Errorf("sip: BYE for call %s: %w", c.callID, err)
	}
	if status >= 300 && status != 481 {
		return &Error{Status: status, Reason: "BYE rejected", Kind: ErrFailed}
	}
	c.ua.log.Info("sip: hung up", "call_id", c.callID, "sip_status", status)
	return nil
}

// onRetransmission handles a 2xx retransmission (or a 2xx from another fork)
// reaching the INVITE transaction after the answer: resend our ACK for our
// dialog (RFC 3261 §13.2.2.4), ACK and BYE any other.
func (c *Call) onRetransmission(inv *sip.Request, res *sip.Response) {
	if res.StatusCode < 200 || res.StatusCode >= 300 {
		return
	}
	tag := ""
	if to := res.To(); to != nil {
		tag, _ = to.Params.Get("tag")
	}
	if tag == c.key.remoteTag {
		if err := c.ua.cli.WriteRequest(c.ackTmpl.Clone(), c.ua.finish); err != nil {
			c.ua.log.Debug("sip: ACK retransmission failed", "call_id", c.callID, "error", err)
		}
		return
	}
	c.ua.goEndStray(inv, res)
}
