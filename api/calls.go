package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/voiceotp/voiceotp/webhook"
	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/otp"
)

// This file is the Server's side of dispatch.Handler: it turns call events
// into the stored call record, metrics and webhooks.

var _ dispatch.Handler = (*Server)(nil)

// storeTimeout bounds a store write made on behalf of a running call.
const storeTimeout = 5 * time.Second

// Reasons a job is not dialled, passed to Skipped wrapped in dispatch.ErrSkip.
var (
	// errNumberBusy: another call holds the number's live-call slot.
	errNumberBusy = errors.New("api: another call to this number is live")
	// errNodeLost: the call had been claimed by a node that stopped reporting
	// (a job delivered again after its node died); it was waited out.
	errNodeLost = errors.New("api: the call was claimed by a node that was lost")
)

// holder names a call in the number's live-call slot.
func holder(j dispatch.Job) string { return j.VerificationID + "/" + j.CallID }

// Prepare claims the call right before the INVITE and hands it its number
// and code. It refuses (dispatch.ErrSkip) a verification that stopped being
// pending while the job waited (an expired or canceled one is never
// dialled), and a number whose live-call slot another call holds.
//
// The claim (otp.Service.ClaimCall) moves the call from queued to dialing
// with this node's name and the time, atomically in the store, so a job
// that a durable queue delivers again (its node died) finds the call
// claimed and is never dialled twice. That call may even be live still, on
// a node that lost Redis rather than died, so it is waited out: until
// Config.MaxCallLength after the claim Prepare returns a *dispatch.Deferred,
// and the queue brings the job back later without holding a call slot;
// after it, or once the call is recorded ended, dispatch.ErrSkip, and
// Skipped records a call still unfinished as failed with the cause
// node_lost. Meanwhile the job keeps the number's live-call slot.
func (s *Server) Prepare(ctx context.Context, j dispatch.Job) (callflow.Request, error) {
	if s.limits != nil {
		ok, err := s.limits.AcquireNumber(ctx, j.To, holder(j), s.cfg.MaxCallLength)
		if err != nil {
			return callflow.Request{}, fmt.Errorf("api: claiming the number's live-call slot: %w", err)
		}
		if !ok {
			return callflow.Request{}, fmt.Errorf("%w: %w", dispatch.ErrSkip, errNumberBusy)
		}
	}
	v, code, err := s.svc.ClaimCall(ctx, j.VerificationID, j.CallID, s.cfg.Node)
	switch {
	case errors.Is(err, otp.ErrCallClaimed):
		return callflow.Request{}, s.lostCall(j, v.Call(j.CallID))
	case errors.Is(err, otp.ErrGone), errors.Is(err, otp.ErrNotFound), errors.Is(err, otp.ErrCallNotFound):
		return callflow.Request{}, fmt.Errorf("%w: %w", dispatch.ErrSkip, err)
	case err != nil:
		return callflow.Request{}, err
	}
	s.m.active.Inc()
	s.m.queueWait.Observe(s.now().Sub(j.EnqueuedAt).Seconds())
	return callflow.Request{Number: j.To, Code: code}, nil
}

// lostCall decides about a job delivered again whose call c another node
// claimed: defer it while the call may still be live (Config.MaxCallLength
// from the claim, by the claimer's clock), skip it after.
func (s *Server) lostCall(j dispatch.Job, c *otp.Call) error {
	from := s.now()
	node := ""
	if c != nil {
		node = c.Node
		if c.ClaimedAt != nil {
			from = *c.ClaimedAt
		}
	}
	if until := from.Add(s.cfg.MaxCallLength); s.now().Before(until) {
		s.log.Warn("call claimed by a node that stopped; waiting it out, it is never dialled again",
			slog.String("verification_id", j.VerificationID), slog.String("call_id", j.CallID),
			slog.String("claimed_by", node), slog.Time("until", until))
		return &dispatch.Deferred{Until: until, Reason: errNodeLost}
	}
	return fmt.Errorf("%w: %w", dispatch.ErrSkip, errNodeLost)
}

// Event records one call event and forwards it as a webhook.
func (s *Server) Event(j dispatch.Job, e callflow.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	v, err := s.svc.UpdateCall(ctx, j.VerificationID, j.CallID, func(c *otp.Call) { applyEvent(c, e) })
	if err != nil {
		s.log.Warn("call event not stored", slog.String("verification_id", j.VerificationID),
			slog.String("call_id", j.CallID), slog.String("event", string(e.Type)), slog.String("error", err.Error()))
		return
	}
	s.webhook(v, "call."+string(e.Type), callData(j, e))
}

// applyEvent moves a call record forward by one event.
func applyEvent(c *otp.Call, e callflow.Event) {
	at := e.At
	c.Events = append(c.Events, otp.Event{
		Type: string(e.Type), At: e.At, SIPStatus: e.SIPStatus, Reason: e.Reason, N: e.N,
		Digit: e.Digit, Accepted: e.Accepted, By: e.By, Cause: e.Cause, Source: e.Source, Trunk: e.Trunk,
	})
	switch e.Type {
	case callflow.EventDialing:
		c.Status, c.DialedAt = otp.CallDialing, &at
	case callflow.EventProvisional:
		if e.SIPStatus > 100 && c.RingingAt == nil {
			c.Status, c.RingingAt = otp.CallRinging, &at
		}
	case callflow.EventAnswered:
		c.Status, c.AnsweredAt, c.SIPStatus, c.Trunk = otp.CallAnswered, &at, e.SIPStatus, e.Trunk
	case callflow.EventGatePassed:
		c.GatePassedAt, c.ChallengeDigitOK = &at, true
	case callflow.EventCodePlayed:
		c.CodePlays = e.N
	}
}

// Finish stores the call's verdict and timings.
func (s *Server) Finish(j dispatch.Job, r *callflow.Result) {
	s.m.active.Dec()
	s.m.calls.WithLabelValues(string(r.Outcome)).Inc()
	if !r.AnsweredAt.IsZero() && !r.DialedAt.IsZero() {
		s.m.setup.Observe(r.AnsweredAt.Sub(r.DialedAt).Seconds())
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	v, err := s.svc.UpdateCall(ctx, j.VerificationID, j.CallID, func(c *otp.Call) {
		c.Status = otp.CallStatus(r.Outcome)
		c.SIPStatus = r.SIPStatus
		c.HangupBy, c.HangupCause = r.HangupBy, r.HangupCause
		c.Trunk = r.Trunk
		c.DialedAt = timePtr(r.DialedAt)
		c.RingingAt = timePtr(r.RingingAt)
		c.AnsweredAt = timePtr(r.AnsweredAt)
		c.GatePassedAt = timePtr(r.GatePassedAt)
		c.EndedAt = timePtr(r.EndedAt)
		c.RingMS = r.RingDuration().Milliseconds()
		c.TalkMS = r.TalkDuration().Milliseconds()
		c.ChallengeDigitOK = r.ChallengeDigitOK
		c.CodePlays = r.CodePlays
	})
	log := s.log.With(slog.String("verification_id", j.VerificationID), slog.String("call_id", j.CallID))
	s.releaseNumber(ctx, j)
	if err != nil {
		log.Warn("call result not stored", slog.String("error", err.Error()))
		return
	}
	log.Info("call finished", slog.String("outcome", string(r.Outcome)), slog.Int("sip_status", r.SIPStatus))
	if r.Outcome == callflow.InvalidNumber {
		// No later call to this number can succeed.
		if fv, err := s.svc.Fail(ctx, j.VerificationID); err == nil {
			v = fv
			s.webhook(v, "verification.failed", statusData(v))
		}
	}
	c := findCall(v, j.CallID)
	s.webhook(v, "call.completed", map[string]any{"verification_id": v.ID, "call": c})
}

// Skipped records a job that was never dialled, and frees the number's
// live-call slot if the job held it. A job dead-lettered by a durable queue
// (dispatch.ErrDeadLetter) fails its verification: nobody will call.
func (s *Server) Skipped(j dispatch.Job, reason error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	defer s.releaseNumber(ctx, j)
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
	v, err := s.svc.UpdateCall(ctx, j.VerificationID, j.CallID, func(c *otp.Call) {
		changed = false
		if c.Status.Terminal() {
			return
		}
		changed = true
		t := s.now()
		c.Status, c.HangupCause, c.EndedAt = status, cause, &t
	})
	if err != nil {
		s.log.Warn("skipped call not stored", slog.String("verification_id", j.VerificationID),
			slog.String("call_id", j.CallID), slog.String("reason", cause), slog.String("error", err.Error()))
		return
	}
	if errors.Is(reason, dispatch.ErrDeadLetter) {
		if fv, err := s.svc.Fail(ctx, j.VerificationID); err == nil {
			v = fv
			s.webhook(v, "verification.failed", statusData(v))
		}
	}
	if !changed {
		return // already ended (by its own node, or an earlier report)
	}
	s.m.calls.WithLabelValues(string(status)).Inc()
	s.log.Info("call not dialled", slog.String("verification_id", j.VerificationID),
		slog.String("call_id", j.CallID), slog.String("reason", cause))
	s.webhook(v, "call.completed", map[string]any{"verification_id": v.ID, "call": findCall(v, j.CallID)})
}

// releaseNumber frees the number's live-call slot if this job's call holds it.
func (s *Server) releaseNumber(ctx context.Context, j dispatch.Job) {
	if s.limits == nil {
		return
	}
	if err := s.limits.ReleaseNumber(ctx, j.To, holder(j)); err != nil {
		// The slot expires by itself after MaxCallLength.
		s.log.Warn("number's live-call slot not released", slog.String("verification_id", j.VerificationID),
			slog.String("call_id", j.CallID), slog.String("error", err.Error()))
	}
}

func findCall(v *otp.Verification, id string) *otp.Call {
	for i := range v.Calls {
		if v.Calls[i].ID == id {
			return &v.Calls[i]
		}
	}
	return nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func statusData(v *otp.Verification) map[string]any {
	return map[string]any{"verification_id": v.ID, "to": v.To, "status": v.Status, "attempts_left": v.AttemptsLeft()}
}

func callData(j dispatch.Job, e callflow.Event) map[string]any {
	return map[string]any{"verification_id": j.VerificationID, "call_id": j.CallID, "event": e}
}

// webhook queues an event for the verification's callback URL, if any.
func (s *Server) webhook(v *otp.Verification, typ string, data any) {
	if s.hooks == nil || v == nil || v.CallbackURL == "" {
		return
	}
	b, err := json.Marshal(data)
	if err != nil {
		return
	}
	ev := webhook.Event{ID: webhook.NewEventID(), Type: typ, CreatedAt: s.now().UTC(), Data: b}
	if err := s.hooks.Send(v.CallbackURL, ev); err != nil {
		s.log.Warn("webhook not queued", slog.String("verification_id", v.ID), slog.String("type", typ),
			slog.String("error", err.Error()))
	}
}
