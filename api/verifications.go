package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/voiceotp/voiceotp/webhook"
	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/sip"
)

// startRequest is the body of POST /v1/verifications.
type startRequest struct {
	To          string          `json:"to"`
	Channel     string          `json:"channel"`
	Locale      string          `json:"locale"`
	CodeLength  int             `json:"code_length"`
	CustomCode  string          `json:"custom_code"`
	CallbackURL string          `json:"callback_url"`
	CallerID    string          `json:"caller_id"`
	Metadata    json.RawMessage `json:"metadata"`
}

// verificationView is what every endpoint returns for a verification.
type verificationView struct {
	ID           string          `json:"id"`
	To           string          `json:"to"`
	Channel      string          `json:"channel"`
	Status       otp.Status      `json:"status"`
	Locale       string          `json:"locale"`
	CodeLength   int             `json:"code_length"`
	CreatedAt    time.Time       `json:"created_at"`
	ExpiresAt    time.Time       `json:"expires_at"`
	AttemptsLeft int             `json:"attempts_left"`
	CallbackURL  string          `json:"callback_url,omitempty"`
	CallerID     string          `json:"caller_id,omitempty"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	Calls        []otp.Call      `json:"calls"`
}

func view(v *otp.Verification) verificationView {
	calls := v.Calls
	if calls == nil {
		calls = []otp.Call{}
	}
	return verificationView{
		ID: v.ID, To: v.To, Channel: "call", Status: v.Status, Locale: v.Locale, CodeLength: v.CodeLength,
		CreatedAt: v.CreatedAt, ExpiresAt: v.ExpiresAt, AttemptsLeft: v.AttemptsLeft(),
		CallbackURL: v.CallbackURL, CallerID: v.CallerID, Metadata: v.Metadata, Calls: calls,
	}
}

// maxMetadata bounds the metadata object stored with a verification.
const maxMetadata = 4 << 10

func (s *Server) validateStart(req *startRequest) *requestError {
	if req.To == "" {
		return badRequest("missing_field", "to is required (E.164, e.g. +15551234567)")
	}
	if err := sip.ValidateE164(req.To); err != nil {
		return badRequest("invalid_number", "to must be an E.164 number: '+' and 8 to 15 digits")
	}
	if req.Channel != "" && req.Channel != "call" {
		return badRequest("invalid_channel", "channel must be \"call\"")
	}
	if req.CallerID != "" && sip.ValidateE164(req.CallerID) != nil {
		return badRequest("invalid_caller_id", "caller_id must be an E.164 number")
	}
	if req.CodeLength < 0 || req.CodeLength > 10 {
		return badRequest("invalid_code_length", "code_length must be between 4 and 10")
	}
	if req.CustomCode != "" {
		if len(req.CustomCode) < 4 || len(req.CustomCode) > 10 || strings.Trim(req.CustomCode, "0123456789") != "" {
			return badRequest("invalid_custom_code", "custom_code must be 4 to 10 digits")
		}
		if req.CodeLength != 0 && req.CodeLength != len(req.CustomCode) {
			return badRequest("invalid_custom_code", "custom_code does not have code_length digits")
		}
	}
	if req.CallbackURL != "" {
		if err := s.validateCallback(req.CallbackURL); err != nil {
			return err
		}
	}
	if len(req.Metadata) > 0 {
		if len(req.Metadata) > maxMetadata {
			return badRequest("invalid_metadata", "metadata must be at most %d bytes", maxMetadata)
		}
		if t := bytes.TrimSpace(req.Metadata); len(t) == 0 || t[0] != '{' {
			return badRequest("invalid_metadata", "metadata must be a JSON object")
		}
	}
	return nil
}

func (s *Server) validateCallback(raw string) *requestError {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || len(raw) > 2048 {
		return badRequest("invalid_callback_url", "callback_url must be an absolute http(s) URL without credentials")
	}
	if u.Scheme == "http" && !s.cfg.AllowHTTPCallbacks {
		return badRequest("invalid_callback_url", "callback_url must use https")
	}
	if s.hooks == nil {
		return badRequest("invalid_callback_url", "this server sends no webhooks (no webhook secret is configured)")
	}
	switch err := s.hooks.Accepts(raw); {
	case errors.Is(err, webhook.ErrNoSecret):
		return badRequest("invalid_callback_url", "this server sends no webhooks (no webhook secret is configured)")
	case errors.Is(err, webhook.ErrPrivateAddress):
		return badRequest("invalid_callback_url", "callback_url must point to a public address")
	case err != nil:
		return badRequest("invalid_callback_url", "callback_url is not a valid URL")
	}
	return nil
}

// start handles POST /v1/verifications.
func (s *Server) start(w http.ResponseWriter, r *http.Request) {
	body, rerr := readBody(w, r, s.cfg.MaxBodyBytes)
	if rerr != nil {
		writeError(w, rerr.status, rerr.code, rerr.msg)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		s.doStart(r.Context(), body).write(w)
		return
	}
	s.idempotent(w, r, key, body, s.doStart)
}

// reply is one response of a handler that may be replayed (idempotency).
type reply struct {
	status int
	body   any
	// retryAfter, if positive, is sent as Retry-After (whole seconds, rounded up).
	retryAfter time.Duration
}

func errorReply(status int, code, msg string) reply {
	return reply{status: status, body: errorBody(code, msg)}
}

func (rp reply) header(w http.ResponseWriter) {
	if rp.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((rp.retryAfter+time.Second-1)/time.Second), 10))
	}
}

func (rp reply) write(w http.ResponseWriter) {
	rp.header(w)
	writeJSON(w, rp.status, rp.body)
}

// busyRetryAfter caps the Retry-After of a start refused because the number
// has a live call: the slot lasts up to MaxCallLength, but calls end sooner.
const busyRetryAfter = 30 * time.Second

// unavailableRetryAfter is the Retry-After of a 503 (store, Redis or queue).
const unavailableRetryAfter = 2 * time.Second

// doStart validates, applies the number's limits, creates (or joins) the
// verification, and queues a call unless it joined one in progress.
func (s *Server) doStart(ctx context.Context, body []byte) reply {
	var req startRequest
	if rerr := decodeStrict(body, &req); rerr != nil {
		return errorReply(rerr.status, rerr.code, rerr.msg)
	}
	if rerr := s.validateStart(&req); rerr != nil {
		return errorReply(rerr.status, rerr.code, rerr.msg)
	}
	q := s.enqueuer()
	if q == nil {
		return errorReply(http.StatusServiceUnavailable, "unavailable", "the call queue is not running")
	}
	if rp, ok := s.admit(ctx, req.To); !ok {
		return rp
	}
	v, callID, created, err := s.svc.Start(ctx, otp.StartRequest{
		To: req.To, Locale: req.Locale, CodeLength: req.CodeLength, CustomCode: req.CustomCode,
		CallbackURL: req.CallbackURL, CallerID: req.CallerID, Metadata: req.Metadata,
	})
	switch {
	case errors.Is(err, otp.ErrInvalidRequest):
		return errorReply(http.StatusBadRequest, "invalid_request", err.Error())
	case errors.Is(err, otp.ErrTooManyCalls):
		return errorReply(http.StatusTooManyRequests, "too_many_calls", "this verification has placed its maximum number of calls")
	case err != nil:
		s.log.Error("start failed", slog.String("error", err.Error()))
		return reply{status: http.StatusServiceUnavailable, retryAfter: unavailableRetryAfter,
			body: errorBody("unavailable", "the verification could not be stored")}
	}
	log := s.log.With(slog.String("verification_id", v.ID), slog.String("call_id", callID))
	if callID == "" {
		// Joined a verification whose call is in progress: that call delivers the code.
		s.m.verifications.WithLabelValues("joined").Inc()
		log.Info("verification joined; its call is in progress", slog.String("to", v.To))
		return reply{status: http.StatusOK, body: view(v)}
	}
	job := dispatch.Job{VerificationID: v.ID, CallID: callID, To: v.To, EnqueuedAt: s.now()}
	if err := q.Enqueue(ctx, job); err != nil {
		log.Warn("call not queued", slog.String("error", err.Error()))
		if uv, uerr := s.svc.UpdateCall(context.WithoutCancel(ctx), v.ID, callID, func(c *otp.Call) {
			c.Status = otp.CallFailed
			c.HangupCause = "queue_full"
			t := s.now()
			c.EndedAt = &t
		}); uerr == nil {
			v = uv
		}
		msg := "the call queue is full; retry later"
		if !errors.Is(err, dispatch.ErrQueueFull) {
			msg = "the call queue is unavailable; retry later"
		}
		return reply{status: http.StatusServiceUnavailable, retryAfter: unavailableRetryAfter, body: errorBody("unavailable", msg)}
	}
	s.m.verifications.WithLabelValues(boolLabel(created)).Inc()
	log.Info("verification started", slog.Bool("created", created), slog.String("to", v.To))
	if created {
		s.webhook(v, "verification.created", statusData(v))
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	return reply{status: status, body: view(v)}
}

// admit applies the per-number limits to a start for number, before anything
// is stored: a live call of another verification to the number refuses it
// (429 number_busy), and so does SendsPerNumber (429 too_many_sends). A
// start for the verification that holds the live call passes, to join it.
// When Redis (or any Limits backend) fails, the start is refused with 503:
// a limit is never assumed free.
func (s *Server) admit(ctx context.Context, number string) (reply, bool) {
	if s.limits == nil {
		return reply{}, true
	}
	unavailable := func(err error) (reply, bool) {
		s.log.Error("start refused: limits unavailable", slog.String("error", err.Error()))
		return reply{status: http.StatusServiceUnavailable, retryAfter: unavailableRetryAfter,
			body: errorBody("unavailable", "the rate limits could not be checked")}, false
	}
	h, left, err := s.limits.NumberHolder(ctx, number)
	if err != nil {
		return unavailable(err)
	}
	if h != "" {
		vid, _, _ := strings.Cut(h, "/")
		v, err := s.svc.Get(ctx, vid)
		switch {
		case err == nil && v.Status == otp.StatusPending:
			// Start joins this verification and its live call.
		case err == nil || errors.Is(err, otp.ErrNotFound):
			return reply{status: http.StatusTooManyRequests, retryAfter: max(time.Second, min(left, busyRetryAfter)),
				body: errorBody("number_busy", "a call to this number is in progress; retry later")}, false
		default:
			return unavailable(err)
		}
	}
	if s.cfg.SendsPerNumber > 0 {
		ok, wait, err := s.limits.CountSend(ctx, number, s.cfg.SendsWindow, s.cfg.SendsPerNumber)
		if err != nil {
			return unavailable(err)
		}
		if !ok {
			return reply{status: http.StatusTooManyRequests, retryAfter: max(time.Second, wait),
				body: errorBody("too_many_sends", "this number has been sent too many codes; retry later")}, false
		}
	}
	return reply{}, true
}

func boolLabel(b bool) string {
	if b {
		return "new"
	}
	return "joined"
}

func errorBody(code, msg string) apiError {
	var e apiError
	e.Error.Code = code
	e.Error.Message = msg
	return e
}

// idempotent runs do at most once per (API key, Idempotency-Key) within
// the TTL: the same body gets the stored response back, another body 422,
// a concurrent duplicate 409 while the first is in progress. A response
// that says "retry later" (429, 5xx) is not stored: the key is released, so
// the retry runs again rather than replaying the refusal (as Stripe does).
func (s *Server) idempotent(w http.ResponseWriter, r *http.Request, key string, body []byte, do func(context.Context, []byte) reply) {
	if len(key) > 255 || strings.ContainsFunc(key, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
		writeError(w, http.StatusBadRequest, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters")
		return
	}
	scope := sha256.Sum256([]byte(r.Header.Get("Authorization") + "\x00" + key))
	skey := "idem:" + hex.EncodeToString(scope[:])
	sum := sha256.Sum256(body)
	rec := otp.IdempotencyRecord{BodyHash: hex.EncodeToString(sum[:])}
	prev, err := s.svc.Store().ClaimIdempotency(r.Context(), skey, rec, s.cfg.IdempotencyTTL)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the idempotency record could not be stored")
		return
	}
	if prev != nil {
		switch {
		case prev.BodyHash != rec.BodyHash:
			writeError(w, http.StatusUnprocessableEntity, "idempotency_key_reused", "this Idempotency-Key was used with a different body")
		case !prev.Done:
			writeError(w, http.StatusConflict, "request_in_progress", "a request with this Idempotency-Key is in progress")
		default:
			w.Header().Set("Idempotent-Replayed", "true")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(prev.Status)
			w.Write(prev.Body)
		}
		return
	}
	rp := do(r.Context(), body)
	b, err := json.Marshal(rp.body)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "could not encode the response")
		return
	}
	b = append(b, '\n')
	rec.Done, rec.Status, rec.Body = true, rp.status, b
	ttl := s.cfg.IdempotencyTTL
	if rp.status == http.StatusTooManyRequests || rp.status >= 500 {
		ttl = releaseTTL
	}
	if err := s.svc.Store().CompleteIdempotency(context.WithoutCancel(r.Context()), skey, rec, ttl); err != nil {
		s.log.Warn("idempotency record not completed", slog.String("error", err.Error()))
	}
	rp.header(w)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rp.status)
	w.Write(b)
}

// releaseTTL stores a completed idempotency record that must not be
// replayed for so short a time that it is gone at once (the Store has no
// delete): the key is free for the retry.
const releaseTTL = time.Millisecond

// get handles GET /v1/verifications/{id}.
func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	v, err := s.svc.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.domainError(w, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, view(v))
}

type checkRequest struct {
	Code string `json:"code"`
}

type checkResponse struct {
	ID           string     `json:"id"`
	Status       otp.Status `json:"status"`
	AttemptsLeft int        `json:"attempts_left"`
}

// check handles POST /v1/verifications/{id}/check.
func (s *Server) check(w http.ResponseWriter, r *http.Request) {
	body, rerr := readBody(w, r, s.cfg.MaxBodyBytes)
	if rerr == nil {
		var req checkRequest
		if rerr = decodeStrict(body, &req); rerr == nil {
			if len(req.Code) < 4 || len(req.Code) > 10 || strings.Trim(req.Code, "0123456789") != "" {
				rerr = badRequest("invalid_code", "code must be 4 to 10 digits")
			} else {
				s.doCheck(w, r, req.Code)
				return
			}
		}
	}
	writeError(w, rerr.status, rerr.code, rerr.msg)
}

func (s *Server) doCheck(w http.ResponseWriter, r *http.Request, code string) {
	id := r.PathValue("id")
	v, err := s.svc.Check(r.Context(), id, code)
	switch {
	case err == nil:
		s.m.checks.WithLabelValues("approved").Inc()
		s.log.Info("verification approved", slog.String("verification_id", id))
		s.webhook(v, "verification.approved", statusData(v))
		writeJSON(w, http.StatusOK, checkResponse{ID: v.ID, Status: v.Status, AttemptsLeft: v.AttemptsLeft()})
	case errors.Is(err, otp.ErrWrongCode):
		s.m.checks.WithLabelValues("wrong").Inc()
		writeJSON(w, http.StatusOK, checkResponse{ID: v.ID, Status: v.Status, AttemptsLeft: v.AttemptsLeft()})
	case errors.Is(err, otp.ErrMaxAttempts):
		s.m.checks.WithLabelValues("locked").Inc()
		if v != nil && v.FailedChecks == v.MaxChecks {
			s.webhook(v, "verification.max_attempts_reached", statusData(v))
		}
		writeError(w, http.StatusTooManyRequests, "max_attempts_reached", "too many wrong codes; start a new verification")
	default:
		s.m.checks.WithLabelValues("refused").Inc()
		s.domainError(w, err, v)
	}
}

// cancel handles POST /v1/verifications/{id}/cancel.
func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	v, err := s.svc.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		s.domainError(w, err, v)
		return
	}
	s.webhook(v, "verification.canceled", statusData(v))
	writeJSON(w, http.StatusOK, view(v))
}

// domainError maps otp errors to HTTP. v, when known, names the state.
func (s *Server) domainError(w http.ResponseWriter, err error, v *otp.Verification) {
	switch {
	case errors.Is(err, otp.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no verification with this id")
	case errors.Is(err, otp.ErrMaxAttempts):
		writeError(w, http.StatusTooManyRequests, "max_attempts_reached", "too many wrong codes; start a new verification")
	case errors.Is(err, otp.ErrGone):
		code, msg := "gone", "the verification is no longer pending"
		if v != nil {
			code = string(v.Status)
			msg = "the verification is " + strings.ReplaceAll(code, "_", " ")
		}
		writeError(w, http.StatusGone, code, msg)
	default:
		s.log.Error("request failed", slog.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the verification store is unavailable")
	}
}
