package calls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/policy"
	"github.com/voiceotp/voiceotp/sip"
	"github.com/voiceotp/voiceotp/webhook"
)

// Errors callers branch on. The otp errors (otp.ErrInvalidRequest, otp.ErrTooManyCalls, otp.ErrNotFound,
// otp.ErrGone, otp.ErrMaxAttempts, otp.ErrWrongCode) pass through unchanged.
var (
	// ErrInvalidNumber: a number is not E.164; nothing was stored.
	ErrInvalidNumber = errors.New("calls: not an E.164 number")
	// ErrNumberBusy: another verification's call to the number is live; nothing was stored. The error
	// is a *RetryError that says how long to wait.
	ErrNumberBusy = errors.New("calls: a call to this number is in progress")
	// ErrTooManySends: the number got Config.SendsPerNumber starts within the window; nothing was
	// stored. The error is a *RetryError.
	ErrTooManySends = errors.New("calls: this number has been sent too many codes")
	// ErrQueueFull: the verification was stored but its call could not be queued because the queue is
	// full; the call is recorded failed (queue_full). The error is a *RetryError.
	ErrQueueFull = errors.New("calls: the call queue is full")
	// ErrUnavailable: the store, the limits or the queue could not be reached; what was asked may or may
	// not have happened. The error is a *RetryError.
	ErrUnavailable = errors.New("calls: unavailable")
	// ErrNoWebhooks: this server sends no webhooks (it has no webhook secret), so a callback URL is refused.
	ErrNoWebhooks = webhook.ErrNoSecret
	// ErrPrivateCallback: the callback URL points to an address the webhook sender refuses (not public).
	ErrPrivateCallback = webhook.ErrPrivateAddress
)

// Refusal is a start refused by the policy (package policy): its Code is the API error code
// (invalid_number, country_not_allowed, number_type_not_allowed, prefix_denied, caller_id_not_allowed,
// too_many_starts), its Rule the rule for the audit log, RetryAfter set for too_many_starts. It never
// holds more of the number than a masked log line.
type Refusal = policy.Refusal

// RetryError is a refusal that a retry may cure, after After.
type RetryError struct {
	Err   error         // one of the sentinels above, wrapped
	After time.Duration // how long to wait before retrying
	Cause error         // what failed below, for logs; never a code
}

func (e *RetryError) Error() string {
	if e.Cause != nil {
		return e.Err.Error() + ": " + e.Cause.Error()
	}
	return e.Err.Error()
}

// Unwrap returns the sentinel.
func (e *RetryError) Unwrap() error { return e.Err }

// Retry-After of the refusals.
const (
	// busyRetryAfter caps the wait of ErrNumberBusy: the slot lasts up to MaxCallLength, but calls end sooner.
	busyRetryAfter = 30 * time.Second
	// unavailableRetryAfter is the wait of ErrUnavailable and ErrQueueFull.
	unavailableRetryAfter = 2 * time.Second
)

// ValidNumber reports whether s is an E.164 number ('+' and 8 to 15 digits), the rule every number on
// the call path obeys (sip.ValidateE164); the error wraps ErrInvalidNumber and never echoes s raw.
func ValidNumber(s string) error {
	if err := sip.ValidateE164(s); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidNumber, err)
	}
	return nil
}

// CheckCallback reports whether webhooks can be delivered to rawURL: an error wrapping ErrNoWebhooks
// when this server sends none, ErrPrivateCallback when the URL points to an address the sender refuses,
// another error for a URL it cannot use.
func (c *Calls) CheckCallback(rawURL string) error {
	if c.hooks == nil {
		return fmt.Errorf("calls: this server sends no webhooks: %w", ErrNoWebhooks)
	}
	return c.hooks.Accepts(rawURL)
}

// StartRequest asks for a code to be delivered to a number by phone call.
type StartRequest struct {
	// To is the number to call, E.164.
	To string
	// Locale, CodeLength, CustomCode, CallbackURL, CallerID and Metadata are as in otp.StartRequest.
	Locale      string
	CodeLength  int
	CustomCode  string
	CallbackURL string
	CallerID    string
	Metadata    json.RawMessage
	// APIKeyID names the API key that asked (a hash prefix, never the key), for the per-key velocity
	// limit and the audit log; "" without authentication.
	APIKeyID string
}

// Start screens the request (Screen), applies the number's limits and the velocity limits, creates the
// verification (or joins the one pending for the number) and queues a call on it, unless it joined a
// call in progress. created says whether the verification is new. Errors: ErrInvalidNumber, a
// *Refusal, otp's (ErrInvalidRequest, ErrTooManyCalls), ErrNumberBusy, ErrTooManySends, ErrQueueFull
// and ErrUnavailable (as *RetryError).
func (c *Calls) Start(ctx context.Context, req StartRequest) (v *otp.Verification, created bool, err error) {
	s, err := c.Screen(req)
	if err != nil {
		return nil, false, err
	}
	return c.StartScreened(ctx, s)
}

// StartScreened is Start for a request that Screen has let through (the screening is not repeated).
func (c *Calls) StartScreened(ctx context.Context, s Screened) (v *otp.Verification, created bool, err error) {
	req, d := s.req, s.d
	if req.To == "" {
		return nil, false, fmt.Errorf("%w: not screened", ErrInvalidNumber)
	}
	if err := c.checkPaused(ctx, d, req); err != nil {
		return nil, false, err
	}
	if err := c.checkNumber(ctx, req.To); err != nil {
		return nil, false, err
	}
	if err := c.countStart(ctx, d, req); err != nil {
		return nil, false, err
	}
	v, callID, created, err := c.svc.Start(ctx, otp.StartRequest{
		To: req.To, Locale: req.Locale, CodeLength: req.CodeLength, CustomCode: req.CustomCode,
		CallbackURL: req.CallbackURL, CallerID: req.CallerID, Metadata: req.Metadata,
	})
	switch {
	case errors.Is(err, otp.ErrInvalidRequest), errors.Is(err, otp.ErrTooManyCalls):
		return v, false, err
	case err != nil:
		c.log.Error("start failed", slog.String("error", err.Error()))
		return nil, false, &RetryError{Err: ErrUnavailable, After: unavailableRetryAfter, Cause: err}
	}
	log := c.log.With(slog.String("verification_id", v.ID), slog.String("call_id", callID))
	if created && c.expiries != nil {
		if err := c.expiries.Add(ctx, v.ID, v.ExpiresAt); err != nil {
			// It still expires when read, and by its call's timer; only the webhook may be missed.
			log.Warn("expiry not indexed", slog.String("error", err.Error()))
		}
	}
	if callID == "" {
		// Joined a verification whose call is in progress: that call delivers the code.
		c.m.verifications.WithLabelValues("joined").Inc()
		log.Info("verification joined; its call is in progress", slog.String("to", c.number(v.To)))
		return v, false, nil
	}
	job := dispatch.Job{VerificationID: v.ID, CallID: callID, To: v.To, EnqueuedAt: c.now(), Attempt: len(v.Calls)}
	if err := c.queue.Enqueue(ctx, job); err != nil {
		log.Warn("call not queued", slog.String("error", err.Error()))
		if uv, uerr := c.svc.UpdateCall(context.WithoutCancel(ctx), v.ID, callID, func(call *otp.Call) {
			t := c.now()
			call.Status, call.HangupCause, call.EndedAt = otp.CallFailed, "queue_full", &t
		}); uerr == nil {
			v = uv
		}
		if errors.Is(err, dispatch.ErrQueueFull) {
			return v, created, &RetryError{Err: ErrQueueFull, After: unavailableRetryAfter, Cause: err}
		}
		return v, created, &RetryError{Err: ErrUnavailable, After: unavailableRetryAfter, Cause: err}
	}
	kind := "joined"
	if created {
		kind = "new"
	}
	c.m.verifications.WithLabelValues(kind).Inc()
	log.Info("verification started", slog.Bool("created", created), slog.String("to", c.number(v.To)),
		slog.String("api_key_id", req.APIKeyID))
	if created {
		c.webhook(v, "verification.created", statusData(v))
	}
	return v, created, nil
}

// checkNumber applies the per-number limits to a start for number, before anything is stored: a live
// call of another verification to the number refuses it (ErrNumberBusy), and so does SendsPerNumber
// (ErrTooManySends). A start for the verification that holds the live call passes, to join it. When
// the limits cannot be read the start is refused (ErrUnavailable): a limit is never assumed free.
func (c *Calls) checkNumber(ctx context.Context, number string) error {
	if c.slots == nil {
		return nil
	}
	unavailable := func(err error) error {
		c.log.Error("start refused: limits unavailable", slog.String("error", err.Error()))
		return &RetryError{Err: ErrUnavailable, After: unavailableRetryAfter, Cause: err}
	}
	h, left, err := c.slots.NumberHolder(ctx, number)
	if err != nil {
		return unavailable(err)
	}
	if h != "" {
		vid, _, _ := strings.Cut(h, "/")
		v, err := c.svc.Get(ctx, vid)
		switch {
		case err == nil && v.Status == otp.StatusPending:
			// Start joins this verification and its live call.
		case err == nil || errors.Is(err, otp.ErrNotFound):
			return &RetryError{Err: ErrNumberBusy, After: max(time.Second, min(left, busyRetryAfter))}
		default:
			return unavailable(err)
		}
	}
	if c.cfg.SendsPerNumber > 0 {
		ok, wait, err := c.slots.Count(ctx, "number:"+number, c.cfg.SendsWindow, c.cfg.SendsPerNumber)
		if err != nil {
			return unavailable(err)
		}
		if !ok {
			return &RetryError{Err: ErrTooManySends, After: max(time.Second, wait)}
		}
	}
	return nil
}

// Get returns the verification with that id, or otp.ErrNotFound. A pending verification past its
// expiry is stored as expired, and its live call stopped.
func (c *Calls) Get(ctx context.Context, id string) (*otp.Verification, error) {
	v, err := c.svc.Get(ctx, id)
	if err == nil && v.Status == otp.StatusExpired && c.live.has(id) {
		c.ended(ctx, v)
	}
	return v, err
}

// Check checks code against verification id (see otp.Service.Check for the results). An approval or a
// lockout ends the verification: its live call is stopped wherever it is, the number's slot freed, and
// a webhook sent.
func (c *Calls) Check(ctx context.Context, id, code string) (*otp.Verification, error) {
	v, err := c.svc.Check(ctx, id, code)
	switch {
	case err == nil:
		c.m.checks.WithLabelValues("approved").Inc()
		c.log.Info("verification approved", slog.String("verification_id", id))
		c.webhook(v, "verification.approved", statusData(v))
		c.ended(ctx, v)
		c.recordEnd(ctx, v)
	case errors.Is(err, otp.ErrWrongCode):
		c.m.checks.WithLabelValues("wrong").Inc()
	case errors.Is(err, otp.ErrMaxAttempts):
		c.m.checks.WithLabelValues("locked").Inc()
		if v != nil && v.FailedChecks == v.MaxChecks {
			// This check locked it.
			c.log.Info("verification locked", slog.String("verification_id", id))
			c.webhook(v, "verification.max_attempts_reached", statusData(v))
			c.ended(ctx, v)
			c.recordEnd(ctx, v)
		}
	default:
		c.m.checks.WithLabelValues("refused").Inc()
	}
	return v, err
}

// Cancel cancels a pending verification: its queued calls are never dialled, its live call is stopped
// wherever it is (CANCEL while ringing, BYE once answered), the number's slot is freed, and
// verification.canceled is sent. A verification that is not pending returns (v, otp.ErrGone).
func (c *Calls) Cancel(ctx context.Context, id string) (*otp.Verification, error) {
	v, err := c.svc.Cancel(ctx, id)
	if err != nil {
		return v, err
	}
	c.log.Info("verification canceled", slog.String("verification_id", id))
	c.webhook(v, "verification.canceled", statusData(v))
	c.ended(ctx, v)
	return v, nil
}

// ended makes the end of v (no longer pending) reach its calls: this node's live calls of v stop now,
// the other nodes are told, and the number's live-call slot is freed if one of v's calls holds it.
func (c *Calls) ended(ctx context.Context, v *otp.Verification) {
	c.live.stop(v.ID, stopCause(v.Status))
	ctx = context.WithoutCancel(ctx)
	if c.signals != nil {
		if err := c.signals.Publish(ctx, v.ID, string(v.Status)); err != nil {
			// The node holding the call still stops it before the code (Confirm) and at its next watch.
			c.log.Warn("end of verification not published", slog.String("verification_id", v.ID), slog.String("error", err.Error()))
		}
	}
	c.freeSlot(ctx, v)
}

// freeSlot releases the number's live-call slot if a call of v holds it.
func (c *Calls) freeSlot(ctx context.Context, v *otp.Verification) {
	if c.slots == nil {
		return
	}
	h, _, err := c.slots.NumberHolder(ctx, v.To)
	if err != nil || !strings.HasPrefix(h, v.ID+"/") {
		return // free, another's, or unknown: the call's own Finish releases it
	}
	if err := c.slots.ReleaseNumber(ctx, v.To, h); err != nil {
		c.log.Warn("number's live-call slot not released", slog.String("verification_id", v.ID), slog.String("error", err.Error()))
	}
}

// Screen decides, with no I/O, whether the request's number may be called and its caller ID presented:
// both must be E.164 (ErrInvalidNumber), and the policy must allow them (a *Refusal). It costs tens of
// microseconds, so the API calls it before anything else is done for a start, then StartScreened.
// Every refusal is logged at info with its rule, the API key's id and the number masked.
func (c *Calls) Screen(req StartRequest) (Screened, error) {
	d, err := c.screen(req)
	if err != nil {
		return Screened{}, err
	}
	return Screened{req: req, d: d}, nil
}

// Screened is a start request that Screen let through, for StartScreened; its zero value is refused.
type Screened struct {
	req StartRequest
	d   policy.Destination
}

// screen checks req and returns what the policy learned about its number.
func (c *Calls) screen(req StartRequest) (policy.Destination, error) {
	d := policy.Destination{Number: req.To}
	err := ValidNumber(req.To)
	if err == nil && req.CallerID != "" {
		err = ValidNumber(req.CallerID)
	}
	if err == nil && c.policy != nil {
		if d, err = c.policy.Check(req.To); err == nil {
			err = c.policy.CallerID(req.CallerID)
		}
	}
	if err != nil {
		c.refused(req, d, err)
	}
	return d, err
}

// checkPaused refuses a start to a number range or country the conversion guard paused.
func (c *Calls) checkPaused(ctx context.Context, d policy.Destination, req StartRequest) error {
	if c.policy == nil || c.guard == nil {
		return nil
	}
	return c.policyVerdict(req, d, "the guard's pauses", c.policy.CheckPaused(ctx, c.guard, d))
}

// countStart counts the start against the policy's velocity limits.
func (c *Calls) countStart(ctx context.Context, d policy.Destination, req StartRequest) error {
	if c.policy == nil || c.slots == nil {
		return nil
	}
	return c.policyVerdict(req, d, "the limits", c.policy.CountStart(ctx, c.slots, d, req.APIKeyID))
}

// policyVerdict turns the error of a policy decision that reads shared state into Start's: a refusal
// is audited and returned; any other error means what could not be read (what) refuses the start
// with ErrUnavailable, as a limit is never assumed free.
func (c *Calls) policyVerdict(req StartRequest, d policy.Destination, what string, err error) error {
	var r *Refusal
	switch {
	case errors.As(err, &r):
		c.refused(req, d, err)
		return err
	case err != nil:
		c.log.Error("start refused: "+what+" unavailable", slog.String("error", err.Error()))
		return &RetryError{Err: ErrUnavailable, After: unavailableRetryAfter, Cause: err}
	}
	return nil
}

// refused writes the audit line of a start the policy refused.
func (c *Calls) refused(req StartRequest, d policy.Destination, err error) {
	rule, code := "format", "invalid_number"
	var r *Refusal
	if errors.As(err, &r) {
		rule, code = r.Rule, r.Code
	}
	c.m.refused.WithLabelValues(code).Inc()
	c.log.Info("start refused", slog.String("code", code), slog.String("rule", rule),
		slog.String("to", c.number(req.To)), slog.String("country", d.Country), slog.String("type", d.Type),
		slog.String("api_key_id", req.APIKeyID))
}

// number is how a phone number appears in log lines: masked unless Config.ShowNumbers.
func (c *Calls) number(n string) string {
	if c.cfg.ShowNumbers {
		return n
	}
	return policy.MaskNumber(n)
}

// recordEnd counts an ended verification for the conversion guard, and announces the pauses it made:
// a warn line, a metric and the signed policy.prefix_paused webhook. A canceled verification tells
// nothing about fraud and is not counted.
func (c *Calls) recordEnd(ctx context.Context, v *otp.Verification) {
	if c.policy == nil || c.guard == nil || v.Status == otp.StatusCanceled {
		return
	}
	made, err := c.policy.RecordEnd(context.WithoutCancel(ctx), c.guard, v.To, v.Status == otp.StatusApproved)
	if err != nil {
		c.log.Warn("conversion guard not updated", slog.String("verification_id", v.ID), slog.String("error", err.Error()))
	}
	for _, p := range made {
		c.m.pauses.Inc()
		c.log.Warn("number range paused by the conversion guard", slog.String("range", p.Range),
			slog.Int("ended", p.Ended), slog.Int("approved", p.Approved), slog.Duration("for", p.For))
		c.operatorWebhook("policy.prefix_paused", map[string]any{"range": p.Range, "ended": p.Ended, "approved": p.Approved,
			"conversion": p.Conversion(), "paused_for_seconds": int64(p.For / time.Second), "until": c.now().Add(p.For).UTC()})
	}
}

// Resume lifts the conversion guard's pause of a number range ("+155512") or a country ("US") before its
// time; wasPaused reports whether it was paused (a range that is not paused is not an error). A
// malformed range is an error wrapping ErrInvalidRange.
func (c *Calls) Resume(ctx context.Context, r, apiKeyID string) (wasPaused bool, err error) {
	if c.policy == nil || c.guard == nil {
		return false, nil
	}
	was, err := c.policy.Resume(ctx, c.guard, r)
	if err != nil {
		if strings.HasPrefix(err.Error(), "policy: a paused range") {
			return false, fmt.Errorf("%w: %w", ErrInvalidRange, err)
		}
		return false, &RetryError{Err: ErrUnavailable, After: unavailableRetryAfter, Cause: err}
	}
	if was {
		c.m.resumes.Inc()
		c.log.Warn("number range resumed by the operator", slog.String("range", r), slog.String("api_key_id", apiKeyID))
	}
	return was, nil
}

// ErrInvalidRange: a paused range to resume is neither '+' and digits nor a two-letter country code.
var ErrInvalidRange = errors.New("calls: not a number range or a country code")
