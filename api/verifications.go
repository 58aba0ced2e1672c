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

	"github.com/voiceotp/voiceotp/calls"
	"github.com/voiceotp/voiceotp/otp"
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
	if err := calls.ValidNumber(req.To); err != nil {
		return badRequest("invalid_number", "to must be an E.164 number: '+' and 8 to 15 digits")
	}
	if req.Channel != "" && req.Channel != "call" {
		return badRequest("invalid_channel", "channel must be \"call\"")
	}
	if req.CallerID != "" && calls.ValidNumber(req.CallerID) != nil {
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
	switch err := s.v.CheckCallback(raw); {
	case errors.Is(err, calls.ErrNoWebhooks):
		return badRequest("invalid_callback_url", "this server sends no webhooks (no webhook secret is configured)")
	case errors.Is(err, calls.ErrPrivateCallback):
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
	// The destination is screened before anything is stored, the idempotency record included: a
	// refused number costs microseconds and leaves no trace but the audit line.
	req, rp, ok := s.decodeStart(r.Context(), body)
	if !ok {
		rp.write(w)
		return
	}
	screened, err := s.v.Screen(req)
	if err != nil {
		startError(err).write(w)
		return
	}
	do := func(ctx context.Context, _ []byte) reply { return s.doStart(ctx, screened) }
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		do(r.Context(), body).write(w)
		return
	}
	s.idempotent(w, r, key, body, do)
}

// decodeStart decodes and validates the body of a start.
func (s *Server) decodeStart(ctx context.Context, body []byte) (calls.StartRequest, reply, bool) {
	var req startRequest
	if rerr := decodeStrict(body, &req); rerr != nil {
		return calls.StartRequest{}, errorReply(rerr.status, rerr.code, rerr.msg), false
	}
	if rerr := s.validateStart(&req); rerr != nil {
		return calls.StartRequest{}, errorReply(rerr.status, rerr.code, rerr.msg), false
	}
	return calls.StartRequest{
		To: req.To, Locale: req.Locale, CodeLength: req.CodeLength, CustomCode: req.CustomCode,
		CallbackURL: req.CallbackURL, CallerID: req.CallerID, Metadata: req.Metadata, APIKeyID: apiKeyID(ctx),
	}, reply{}, true
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

// doStart starts a screened request; the refusals of the verifications become statuses.
func (s *Server) doStart(ctx context.Context, screened calls.Screened) reply {
	v, created, err := s.v.StartScreened(ctx, screened)
	if err != nil {
		return startError(err)
	}
	if created {
		return reply{status: http.StatusCreated, body: view(v)}
	}
	return reply{status: http.StatusOK, body: view(v)}
}

// startError maps a refused start to its status, error code and Retry-After.
func startError(err error) reply {
	var retry *calls.RetryError
	after := time.Duration(0)
	if errors.As(err, &retry) {
		after = retry.After
	}
	var refusal *calls.Refusal
	switch {
	case errors.As(err, &refusal) && refusal.RetryAfter > 0:
		return reply{status: http.StatusTooManyRequests, retryAfter: refusal.RetryAfter,
			body: errorBody(refusal.Code, refusal.Reason)}
	case errors.As(err, &refusal):
		return errorReply(http.StatusBadRequest, refusal.Code, refusal.Reason)
	case errors.Is(err, calls.ErrInvalidNumber):
		return errorReply(http.StatusBadRequest, "invalid_number", "to must be an E.164 number: '+' and 8 to 15 digits")
	case errors.Is(err, otp.ErrInvalidRequest):
		return errorReply(http.StatusBadRequest, "invalid_request", err.Error())
	case errors.Is(err, otp.ErrTooManyCalls):
		return errorReply(http.StatusTooManyRequests, "too_many_calls", "this verification has placed its maximum number of calls")
	case errors.Is(err, calls.ErrNumberBusy):
		return reply{status: http.StatusTooManyRequests, retryAfter: after,
			body: errorBody("number_busy", "a call to this number is in progress; retry later")}
	case errors.Is(err, calls.ErrTooManySends):
		return reply{status: http.StatusTooManyRequests, retryAfter: after,
			body: errorBody("too_many_sends", "this number has been sent too many codes; retry later")}
	case errors.Is(err, calls.ErrQueueFull):
		return reply{status: http.StatusServiceUnavailable, retryAfter: after,
			body: errorBody("unavailable", "the call queue is full; retry later")}
	default:
		return reply{status: http.StatusServiceUnavailable, retryAfter: max(after, time.Second),
			body: errorBody("unavailable", "the verification could not be started; retry later")}
	}
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
	prev, err := s.idem.ClaimIdempotency(r.Context(), skey, rec, s.cfg.IdempotencyTTL)
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
	if err := s.idem.CompleteIdempotency(context.WithoutCancel(r.Context()), skey, rec, ttl); err != nil {
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
	v, err := s.v.Get(r.Context(), r.PathValue("id"))
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
	v, err := s.v.Check(r.Context(), r.PathValue("id"), code)
	switch {
	case err == nil, errors.Is(err, otp.ErrWrongCode):
		writeJSON(w, http.StatusOK, checkResponse{ID: v.ID, Status: v.Status, AttemptsLeft: v.AttemptsLeft()})
	case errors.Is(err, otp.ErrMaxAttempts):
		writeError(w, http.StatusTooManyRequests, "max_attempts_reached", "too many wrong codes; start a new verification")
	default:
		s.domainError(w, err, v)
	}
}

// cancel handles POST /v1/verifications/{id}/cancel.
func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	v, err := s.v.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		s.domainError(w, err, v)
		return
	}
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
