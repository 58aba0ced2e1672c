package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/voiceotp/voiceotp/api/webhook"
	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/otp"
)

// This file is the Server's side of dispatch.Handler: it turns call events
// into the stored call record, metrics and webhooks.

var _ dispatch.Handler = (*Server)(nil)

// storeTimeout bounds a store write made on behalf of a running call.
const storeTimeout = 5 * time.Second

// Prepare hands the call its number and code right before the INVITE, and
// refuses (dispatch.ErrSkip) when the verification stopped being pending
// while the job waited: an expired or canceled verification is never dialled.
func (s *Server) Prepare(ctx context.Context, j dispatch.Job) (callflow.Request, error) {
	code, err := s.svc.Code(ctx, j.VerificationID)
	if err != nil {
		if errors.Is(err, otp.ErrGone) || errors.Is(err, otp.ErrNotFound) {
			return callflow.Request{}, fmt.Errorf("%w: %w", dispatch.ErrSkip, err)
		}
		return callflow.Request{}, err
	}
	s.m.active.Inc()
	s.m.queueWait.Observe(s.now().Sub(j.EnqueuedAt).Seconds())
	return callflow.Request{Number: j.To, Code: code}, nil
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

// Skipped records a job that was never dialled.
func (s *Server) Skipped(j dispatch.Job, reason error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	status, cause := otp.CallFailed, "not_dialled"
	if errors.Is(reason, otp.ErrGone) || errors.Is(reason, dispatch.ErrClosed) {
		status, cause = otp.CallCanceled, "verification_not_pending"
		if errors.Is(reason, dispatch.ErrClosed) {
			cause = "shutdown"
		}
	}
	s.m.calls.WithLabelValues(string(status)).Inc()
	v, err := s.svc.UpdateCall(ctx, j.VerificationID, j.CallID, func(c *otp.Call) {
		if c.Status.Terminal() {
			return
		}
		t := s.now()
		c.Status, c.HangupCause, c.EndedAt = status, cause, &t
	})
	if err != nil {
		return
	}
	s.log.Info("call not dialled", slog.String("verification_id", j.VerificationID),
		slog.String("call_id", j.CallID), slog.String("reason", cause))
	s.webhook(v, "call.completed", map[string]any{"verification_id": v.ID, "call": findCall(v, j.CallID)})
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
