package calls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/otp"
)

// This file is the dispatch.Handler: the claim before the INVITE, call events into the stored record,
// metrics and webhooks, the result, and jobs that are not dialled.

// Reasons a job is not dialled, passed to Skipped wrapped in dispatch.ErrSkip.
var (
	// errNumberBusy: another call holds the number's live-call slot.
	errNumberBusy = errors.New("calls: another call to this number is live")
	// errNodeLost: the call had been claimed by a node that stopped reporting (a job delivered again
	// after its node died); it was waited out.
	errNodeLost = errors.New("calls: the call was claimed by a node that was lost")
)

// holder names a call in the number's live-call slot.
func holder(j dispatch.Job) string { return j.VerificationID + "/" + j.CallID }

// Prepare claims the call right before the INVITE and hands it its number and code. It refuses
// (dispatch.ErrSkip) a verification that stopped being pending while the job waited (an expired or
// canceled one is never dialled), and a number whose live-call slot another call holds.
//
// The claim (otp.Service.ClaimCall) moves the call from queued to dialing with this node's name and the
// time, atomically in the store, so a job that a durable queue delivers again (its node died) finds the
// call claimed and is never dialled twice. That call may even be live still, on a node that lost Redis
// rather than died, so it is waited out: until Config.MaxCallLength after the claim Prepare returns a
// *dispatch.Deferred, and the queue brings the job back later without holding a call slot; after it, or
// once the call is recorded ended, dispatch.ErrSkip, and Skipped records a call still unfinished as
// failed with the cause node_lost. Meanwhile the job keeps the number's live-call slot.
//
// The call is registered live, with stop, before the claim: an end of the verification that lands after
// the claim stops it (see the package documentation), one that lands before makes the claim fail.
func (c *Calls) Prepare(ctx context.Context, j dispatch.Job, stop context.CancelCauseFunc) (callflow.Request, error) {
	if c.slots != nil {
		ok, err := c.slots.AcquireNumber(ctx, j.To, holder(j), c.cfg.MaxCallLength)
		if err != nil {
			return callflow.Request{}, fmt.Errorf("calls: claiming the number's live-call slot: %w", err)
		}
		if !ok {
			return callflow.Request{}, fmt.Errorf("%w: %w", dispatch.ErrSkip, errNumberBusy)
		}
	}
	c.live.add(j, stop)
	v, code, err := c.svc.ClaimCall(ctx, j.VerificationID, j.CallID, c.cfg.Node)
	if err != nil {
		c.live.remove(j)
	}
	switch {
	case errors.Is(err, otp.ErrCallClaimed):
		return callflow.Request{}, c.lostCall(j, v.Call(j.CallID))
	case errors.Is(err, otp.ErrGone), errors.Is(err, otp.ErrNotFound), errors.Is(err, otp.ErrCallNotFound):
		return callflow.Request{}, fmt.Errorf("%w: %w", dispatch.ErrSkip, err)
	case err != nil:
		return callflow.Request{}, err
	}
	c.live.expireAt(j, v.ExpiresAt.Sub(c.now()), func() { c.expire(j.VerificationID) })
	c.m.active.Inc()
	c.m.queueWait.Observe(c.now().Sub(j.EnqueuedAt).Seconds())
	return callflow.Request{Number: j.To, Code: code, CallerID: v.CallerID, Confirm: c.confirm(j.VerificationID)}, nil
}

// lostCall decides about a job delivered again whose call cl another node claimed: defer it while the
// call may still be live (Config.MaxCallLength from the claim, by the claimer's clock), skip it after.
func (c *Calls) lostCall(j dispatch.Job, cl *otp.Call) error {
	from := c.now()
	node := ""
	if cl != nil {
		node = cl.Node
		if cl.ClaimedAt != nil {
			from = *cl.ClaimedAt
		}
	}
	if until := from.Add(c.cfg.MaxCallLength); c.now().Before(until) {
		c.log.Warn("call claimed by a node that stopped; waiting it out, it is never dialled again",
			slog.String("verification_id", j.VerificationID), slog.String("call_id", j.CallID),
			slog.String("claimed_by", node), slog.Time("until", until))
		return &dispatch.Deferred{Until: until, Reason: errNodeLost}
	}
	return fmt.Errorf("%w: %w", dispatch.ErrSkip, errNodeLost)
}

// Event records one call event and forwards it as a webhook.
func (c *Calls) Event(j dispatch.Job, e callflow.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	v, err := c.svc.UpdateCall(ctx, j.VerificationID, j.CallID, func(cl *otp.Call) { applyEvent(cl, e) })
	if err != nil {
		c.log.Warn("call event not stored", slog.String("verification_id", j.VerificationID),
			slog.String("call_id", j.CallID), slog.String("event", string(e.Type)), slog.String("error", err.Error()))
		return
	}
	c.webhook(v, "call."+string(e.Type), callData(j, e))
}

// applyEvent moves a call record forward by one event.
func applyEvent(cl *otp.Call, e callflow.Event) {
	at := e.At
	cl.Events = append(cl.Events, otp.Event{
		Type: string(e.Type), At: e.At, SIPStatus: e.SIPStatus, Reason: e.Reason, N: e.N,
		Digit: e.Digit, Accepted: e.Accepted, By: e.By, Cause: e.Cause, Source: e.Source, Trunk: e.Trunk,
	})
	switch e.Type {
	case callflow.EventDialing:
		cl.Status, cl.DialedAt = otp.CallDialing, &at
	case callflow.EventProvisional:
		if e.SIPStatus > 100 && cl.RingingAt == nil {
			cl.Status, cl.RingingAt = otp.CallRinging, &at
		}
	case callflow.EventAnswered:
		cl.Status, cl.AnsweredAt, cl.SIPStatus, cl.Trunk = otp.CallAnswered, &at, e.SIPStatus, e.Trunk
	case callflow.EventGatePassed:
		cl.GatePassedAt, cl.ChallengeDigitOK = &at, true
	case callflow.EventCodePlayed:
		cl.CodePlays = e.N
	}
}

// Finish stores the call's verdict and timings, and frees the number's live-call slot.
func (c *Calls) Finish(j dispatch.Job, r *callflow.Result) {
	stopped := c.live.remove(j)
	c.m.active.Dec()
	status := callStatus(r.Outcome)
	c.m.calls.WithLabelValues(string(status)).Inc()
	if !r.AnsweredAt.IsZero() && !r.DialedAt.IsZero() {
		c.m.setup.Observe(r.AnsweredAt.Sub(r.DialedAt).Seconds())
	}
	if stopped != "" {
		c.m.stopped.WithLabelValues(stopped).Inc()
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	v, err := c.svc.UpdateCall(ctx, j.VerificationID, j.CallID, func(cl *otp.Call) {
		cl.Status = status
		cl.SIPStatus = r.SIPStatus
		cl.HangupBy, cl.HangupCause = r.HangupBy, r.HangupCause
		cl.Trunk = r.Trunk
		cl.DialedAt = timePtr(r.DialedAt)
		cl.RingingAt = timePtr(r.RingingAt)
		cl.AnsweredAt = timePtr(r.AnsweredAt)
		cl.GatePassedAt = timePtr(r.GatePassedAt)
		cl.EndedAt = timePtr(r.EndedAt)
		cl.RingMS = r.RingDuration().Milliseconds()
		cl.TalkMS = r.TalkDuration().Milliseconds()
		cl.ChallengeDigitOK = r.ChallengeDigitOK
		cl.CodePlays = r.CodePlays
	})
	log := c.log.With(slog.String("verification_id", j.VerificationID), slog.String("call_id", j.CallID))
	c.releaseNumber(ctx, j)
	if err != nil {
		log.Warn("call result not stored", slog.String("error", err.Error()))
		return
	}
	log.Info("call finished", slog.String("outcome", string(status)), slog.Int("sip_status", r.SIPStatus),
		slog.String("hangup_cause", r.HangupCause))
	if r.Outcome == callflow.InvalidNumber {
		// No later call to this number can succeed.
		if fv, err := c.svc.Fail(ctx, j.VerificationID); err == nil {
			v = fv
			c.webhook(v, "verification.failed", statusData(v))
			c.ended(ctx, v)
			c.recordEnd(ctx, v)
		}
	}
	c.webhook(v, "call.completed", map[string]any{"verification_id": v.ID, "call": v.Call(j.CallID)})
}

// Skipped records a job that was never dialled, and frees the number's live-call slot if the job held
// it. A job dead-lettered by a durable queue (dispatch.ErrDeadLetter) fails its verification: nobody
// will call.
func (c *Calls) Skipped(j dispatch.Job, reason error) {
	c.live.remove(j)
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	defer c.releaseNumber(ctx, j)
	status, cause := otp.CallFailed, "not_dialled"
	switch {
	case errors.Is(reason, otp.ErrGone), errors.Is(reason, dispatch.ErrClosed):
		status, cause = otp.CallCanceled, "verification_not_pending"
		if errors.Is(reason, dispatch.ErrClosed) {
			cause = "shutdown"
		}
	case errors.Is(reason, errNumberBusy):
		cause = "number_busy"
	case errors.Is(reason, errNodeLost):
		cause = "node_lost"
	case errors.Is(reason, dispatch.ErrDeadLetter):
		cause = "dead_letter"
	}
	changed := false
	v, err := c.svc.UpdateCall(ctx, j.VerificationID, j.CallID, func(cl *otp.Call) {
		changed = false
		if cl.Status.Terminal() {
			return
		}
		changed = true
		t := c.now()
		cl.Status, cl.HangupCause, cl.EndedAt = status, cause, &t
	})
	if err != nil {
		c.log.Warn("skipped call not stored", slog.String("verification_id", j.VerificationID),
			slog.String("call_id", j.CallID), slog.String("reason", cause), slog.String("error", err.Error()))
		return
	}
	if errors.Is(reason, dispatch.ErrDeadLetter) {
		if fv, err := c.svc.Fail(ctx, j.VerificationID); err == nil {
			v = fv
			c.webhook(v, "verification.failed", statusData(v))
			c.ended(ctx, v)
			c.recordEnd(ctx, v)
		}
	}
	if !changed {
		return // already ended (by its own node, or an earlier report)
	}
	c.m.calls.WithLabelValues(string(status)).Inc()
	c.log.Info("call not dialled", slog.String("verification_id", j.VerificationID),
		slog.String("call_id", j.CallID), slog.String("reason", cause))
	c.webhook(v, "call.completed", map[string]any{"verification_id": v.ID, "call": v.Call(j.CallID)})
}

// releaseNumber frees the number's live-call slot if this job's call holds it.
func (c *Calls) releaseNumber(ctx context.Context, j dispatch.Job) {
	if c.slots == nil {
		return
	}
	if err := c.slots.ReleaseNumber(ctx, j.To, holder(j)); err != nil {
		// The slot expires by itself after MaxCallLength.
		c.log.Warn("number's live-call slot not released", slog.String("verification_id", j.VerificationID),
			slog.String("call_id", j.CallID), slog.String("error", err.Error()))
	}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
