package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/voiceotp/voiceotp/calls"
	"github.com/voiceotp/voiceotp/dispatch/dispatchtest"
	"github.com/voiceotp/voiceotp/internal/testclock"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/policy"
	"github.com/voiceotp/voiceotp/store/memory"
	"github.com/voiceotp/voiceotp/webhook"
)

const testKey = "test_key_0123456789"

type harness struct {
	t     *testing.T
	srv   *Server
	calls *calls.Calls
	svc   *otp.Service
	store *memory.Store
	queue *dispatchtest.Recorder
	clock *testclock.Clock
	logs  *bytes.Buffer
	h     http.Handler
}

// newHarness serves the API over a real calls.Calls on the memory store, with a queue that records jobs.
func newHarness(t *testing.T, keys ...string) *harness {
	t.Helper()
	return newHarnessWith(t, calls.Config{}, keys...)
}

func newHarnessWith(t *testing.T, ccfg calls.Config, keys ...string) *harness {
	t.Helper()
	return newHarnessPolicy(t, ccfg, nil, keys...)
}

// newHarnessPolicy is newHarnessWith with a destination policy (nil: none).
func newHarnessPolicy(t *testing.T, ccfg calls.Config, pol *policy.Policy, keys ...string) *harness {
	t.Helper()
	if keys == nil {
		keys = []string{testKey}
	}
	clock := testclock.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	st := memory.New(memory.WithClock(clock.Now))
	svc, err := otp.NewService(st, otp.Config{}, otp.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	q := &dispatchtest.Recorder{}
	reg := prometheus.NewRegistry()
	ccfg.Logger, ccfg.Registry = logger, reg
	opts := []calls.Option{calls.WithClock(clock.Now),
		calls.WithNumberSlots(memory.NewCounters(memory.WithClock(clock.Now))),
		calls.WithWebhooks(webhook.NewSender(webhook.Config{Secret: []byte("whsec_test")}))}
	if pol != nil {
		opts = append(opts, calls.WithPolicy(pol))
	}
	c, err := calls.New(svc, q, ccfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(c, st, Config{APIKeys: keys, Logger: logger, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, srv: srv, calls: c, svc: svc, store: st, queue: q, clock: clock, logs: logs, h: srv.Handler()}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, r.body)
	}
	return m
}

func (r response) errorCode(t *testing.T) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func (h *harness) do(method, path, body string, hdr ...string) response {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Authorization", "Bearer "+testKey)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.h.ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// start creates a verification and returns its id.
func (h *harness) start(to string) string {
	h.t.Helper()
	r := h.do("POST", "/v1/verifications", `{"to":"`+to+`"}`)
	if r.status != http.StatusCreated {
		h.t.Fatalf("start: %d %s", r.status, r.body)
	}
	return r.json(h.t)["id"].(string)
}

func (h *harness) code(id string) string {
	h.t.Helper()
	c, err := h.svc.Code(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// endCalls ends the calls of verification id still in progress (no_answer),
// so that the next start for its number queues a new call.
func (h *harness) endCalls(id string) {
	h.t.Helper()
	v, err := h.svc.Get(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, c := range v.Calls {
		if !c.Status.Terminal() {
			if _, err := h.svc.UpdateCall(context.Background(), id, c.ID, func(c *otp.Call) { c.Status = otp.CallNoAnswer }); err != nil {
				h.t.Fatal(err)
			}
		}
	}
}

func wrongCode(c string) string {
	b := []byte(c)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

func TestAuth(t *testing.T) {
	h := newHarness(t)
	for name, auth := range map[string]string{"none": "", "wrong": "Bearer nope", "basic": "Basic " + testKey, "prefix": "Bearer " + testKey[:5]} {
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/v1/verifications/VEx", nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			rec := httptest.NewRecorder()
			h.h.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("status %d, want 401 with WWW-Authenticate", rec.Code)
			}
		})
	}
	if r := h.do("GET", "/healthz", ""); r.status != 200 {
		t.Errorf("healthz %d", r.status)
	}
}

func TestStart(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/v1/verifications", `{"to":"+15551234567","locale":"en","code_length":8,"callback_url":"https://example.com/hook","metadata":{"user":42}}`)
	if r.status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	m := r.json(t)
	for k, want := range map[string]any{"to": "+15551234567", "status": "pending", "locale": "en", "code_length": 8.0, "attempts_left": 5.0, "channel": "call"} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	for _, k := range []string{"id", "created_at", "expires_at", "calls", "metadata"} {
		if _, ok := m[k]; !ok {
			t.Errorf("response has no %s", k)
		}
	}
	calls := m["calls"].([]any)
	if len(calls) != 1 || calls[0].(map[string]any)["status"] != "queued" {
		t.Errorf("calls = %v, want one queued", calls)
	}
	if h.queue.Len() != 1 || h.queue.Job(0).To != "+15551234567" || h.queue.Job(0).VerificationID != m["id"] {
		t.Errorf("job = %+v", h.queue.Job(0))
	}
	if len(h.code(m["id"].(string))) != 8 {
		t.Error("code_length 8 not honoured")
	}
}

func TestStartRefusesBadInputBeforeQueueing(t *testing.T) {
	h := newHarness(t)
	big := `{"to":"+15551234567","metadata":{"x":"` + strings.Repeat("a", 20000) + `"}}`
	tests := []struct {
		name, body string
		status     int
		code       string
	}{
		{"empty", "", 400, "invalid_body"},
		{"not json", "to=+15551234567", 400, "invalid_body"},
		{"array", `[1]`, 400, "invalid_body"},
		{"two objects", `{"to":"+15551234567"}{"to":"+15551234567"}`, 400, "invalid_body"},
		{"unknown field", `{"to":"+15551234567","voice":"x"}`, 400, "unknown_field"},
		{"wrong type", `{"to":15551234567}`, 400, "invalid_body"},
		{"missing to", `{}`, 400, "missing_field"},
		{"not e164", `{"to":"5551234567"}`, 400, "invalid_number"},
		{"header injection", `{"to":"+15551234567\r\nX-Evil: 1"}`, 400, "invalid_number"},
		{"too long", `{"to":"+1555123456789012"}`, 400, "invalid_number"},
		{"bad channel", `{"to":"+15551234567","channel":"sms"}`, 400, "invalid_channel"},
		{"code length 3", `{"to":"+15551234567","code_length":3}`, 400, "invalid_request"},
		{"code length 5", `{"to":"+15551234567","code_length":5}`, 400, "invalid_request"},
		{"code length 11", `{"to":"+15551234567","code_length":11}`, 400, "invalid_code_length"},
		{"custom code letters", `{"to":"+15551234567","custom_code":"12ab56"}`, 400, "invalid_custom_code"},
		{"custom code length mismatch", `{"to":"+15551234567","custom_code":"123456","code_length":8}`, 400, "invalid_custom_code"},
		{"bad locale", `{"to":"+15551234567","locale":"xx"}`, 400, "invalid_request"},
		{"callback ftp", `{"to":"+15551234567","callback_url":"ftp://example.com/x"}`, 400, "invalid_callback_url"},
		{"callback http", `{"to":"+15551234567","callback_url":"http://example.com/x"}`, 400, "invalid_callback_url"},
		{"callback private", `{"to":"+15551234567","callback_url":"https://10.0.0.1/x"}`, 400, "invalid_callback_url"},
		{"callback loopback", `{"to":"+15551234567","callback_url":"https://127.0.0.1:8443/x"}`, 400, "invalid_callback_url"},
		{"callback with credentials", `{"to":"+15551234567","callback_url":"https://u:p@example.com/x"}`, 400, "invalid_callback_url"},
		{"metadata not object", `{"to":"+15551234567","metadata":[1,2]}`, 400, "invalid_metadata"},
		{"caller id", `{"to":"+15551234567","caller_id":"anonymous"}`, 400, "invalid_caller_id"},
		{"body too large", big, 413, "body_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do("POST", "/v1/verifications", tt.body)
			if r.status != tt.status || r.errorCode(t) != tt.code {
				t.Errorf("got %d %s, want %d %s: %s", r.status, r.errorCode(t), tt.status, tt.code, r.body)
			}
		})
	}
	if n := h.queue.Len(); n != 0 {
		t.Errorf("%d jobs queued by refused requests", n)
	}
}

func TestStartQueueFull(t *testing.T) {
	h := newHarness(t)
	h.queue.SetFull(true)
	r := h.do("POST", "/v1/verifications", `{"to":"+15551234567"}`)
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", r.status)
	}
}

func TestSecondStartJoinsPendingVerification(t *testing.T) {
	h := newHarness(t)
	id := h.start("+15551234567")
	code := h.code(id)
	h.do("POST", "/v1/verifications/"+id+"/check", `{"code":"`+wrongCode(code)+`"}`)
	// While the first call is queued (or live), a second start joins it: no second call.
	r := h.do("POST", "/v1/verifications", `{"to":"+15551234567"}`)
	if r.status != http.StatusOK || r.json(t)["id"] != id || len(r.json(t)["calls"].([]any)) != 1 || h.queue.Len() != 1 {
		t.Fatalf("start during the call: %d %s, want 200 with the same id and one call", r.status, r.body)
	}
	h.endCalls(id)
	r = h.do("POST", "/v1/verifications", `{"to":"+15551234567"}`)
	if r.status != http.StatusOK || r.json(t)["id"] != id {
		t.Fatalf("second start: %d %s, want 200 with the same id", r.status, r.body)
	}
	m := r.json(t)
	if m["attempts_left"] != 4.0 || len(m["calls"].([]any)) != 2 {
		t.Errorf("attempts_left %v calls %d: the failed check must not reset, a call must be added", m["attempts_left"], len(m["calls"].([]any)))
	}
	if h.code(id) != code {
		t.Error("the second call has another code")
	}
	for i := 3; i <= 5; i++ {
		h.endCalls(id)
		if r := h.do("POST", "/v1/verifications", `{"to":"+15551234567"}`); r.status != 200 {
			t.Fatalf("start %d: %d", i, r.status)
		}
	}
	h.endCalls(id)
	if r := h.do("POST", "/v1/verifications", `{"to":"+15551234567"}`); r.status != 429 || r.errorCode(t) != "too_many_calls" {
		t.Errorf("sixth start: %d %s, want 429 too_many_calls", r.status, r.body)
	}
	if n := h.queue.Len(); n != 5 {
		t.Errorf("%d calls queued, want 5", n)
	}
}

func TestIdempotency(t *testing.T) {
	h := newHarness(t)
	body := `{"to":"+15551234567"}`
	first := h.do("POST", "/v1/verifications", body, "Idempotency-Key", "k-1")
	second := h.do("POST", "/v1/verifications", body, "Idempotency-Key", "k-1")
	if first.status != 201 || second.status != 201 || !bytes.Equal(first.body, second.body) {
		t.Errorf("replay: %d %d, bodies equal %v", first.status, second.status, bytes.Equal(first.body, second.body))
	}
	if second.header.Get("Idempotent-Replayed") != "true" {
		t.Error("replay not marked")
	}
	if n := h.queue.Len(); n != 1 {
		t.Errorf("%d calls queued, want 1", n)
	}
	if r := h.do("POST", "/v1/verifications", `{"to":"+15557654321"}`, "Idempotency-Key", "k-1"); r.status != 422 || r.errorCode(t) != "idempotency_key_reused" {
		t.Errorf("other body: %d %s, want 422", r.status, r.body)
	}
	if r := h.do("POST", "/v1/verifications", body, "Idempotency-Key", "bad key\x01"); r.status != 400 {
		t.Errorf("bad key: %d", r.status)
	}
}

func TestGet(t *testing.T) {
	h := newHarness(t)
	id := h.start("+15551234567")
	if r := h.do("GET", "/v1/verifications/"+id, ""); r.status != 200 || r.json(t)["id"] != id {
		t.Errorf("get: %d %s", r.status, r.body)
	}
	if r := h.do("GET", "/v1/verifications/VEnope", ""); r.status != 404 || r.errorCode(t) != "not_found" {
		t.Errorf("unknown: %d %s", r.status, r.body)
	}
	h.clock.Advance(11 * time.Minute)
	if r := h.do("GET", "/v1/verifications/"+id, ""); r.json(t)["status"] != "expired" {
		t.Errorf("after the TTL: %s", r.body)
	}
}

func TestCheck(t *testing.T) {
	h := newHarness(t)
	id := h.start("+15551234567")
	code := h.code(id)
	path := "/v1/verifications/" + id + "/check"

	r := h.do("POST", path, `{"code":"`+wrongCode(code)+`"}`)
	if m := r.json(t); r.status != 200 || m["status"] != "pending" || m["attempts_left"] != 4.0 {
		t.Errorf("wrong code: %d %s", r.status, r.body)
	}
	for _, bad := range []string{`{"code":"12ab"}`, `{"code":"123"}`, `{}`, `{"code":123456}`, `{"code":"1","x":1}`} {
		if r := h.do("POST", path, bad); r.status != 400 {
			t.Errorf("%s: %d, want 400", bad, r.status)
		}
	}
	r = h.do("POST", path, `{"code":"`+code+`"}`)
	if r.status != 200 || r.json(t)["status"] != "approved" {
		t.Fatalf("right code: %d %s", r.status, r.body)
	}
	r = h.do("POST", path, `{"code":"`+code+`"}`)
	if r.status != 410 || r.errorCode(t) != "approved" {
		t.Errorf("second use: %d %s, want 410", r.status, r.body)
	}
	if r := h.do("POST", "/v1/verifications/VEnope/check", `{"code":"123456"}`); r.status != 404 {
		t.Errorf("unknown id: %d", r.status)
	}
}

func TestCheckLocksAfterFiveWrong(t *testing.T) {
	h := newHarness(t)
	id := h.start("+15551234567")
	code := h.code(id)
	path := "/v1/verifications/" + id + "/check"
	for i := 1; i <= 4; i++ {
		if r := h.do("POST", path, `{"code":"`+wrongCode(code)+`"}`); r.status != 200 {
			t.Fatalf("wrong %d: %d", i, r.status)
		}
	}
	if r := h.do("POST", path, `{"code":"`+wrongCode(code)+`"}`); r.status != 429 || r.errorCode(t) != "max_attempts_reached" {
		t.Errorf("fifth wrong: %d %s, want 429", r.status, r.body)
	}
	if r := h.do("POST", path, `{"code":"`+code+`"}`); r.status != 429 {
		t.Errorf("right code after lock: %d %s, want 429", r.status, r.body)
	}
	if r := h.do("GET", "/v1/verifications/"+id, ""); r.json(t)["status"] != "max_attempts_reached" {
		t.Errorf("status: %s", r.body)
	}
}

func TestCheckExpired(t *testing.T) {
	h := newHarness(t)
	id := h.start("+15551234567")
	code := h.code(id)
	h.clock.Advance(10*time.Minute + time.Second)
	r := h.do("POST", "/v1/verifications/"+id+"/check", `{"code":"`+code+`"}`)
	if r.status != 410 || r.errorCode(t) != "expired" {
		t.Errorf("expired: %d %s, want 410 expired", r.status, r.body)
	}
}

func TestCancel(t *testing.T) {
	h := newHarness(t)
	id := h.start("+15551234567")
	code := h.code(id)
	r := h.do("POST", "/v1/verifications/"+id+"/cancel", "")
	m := r.json(t)
	if r.status != 200 || m["status"] != "canceled" || m["calls"].([]any)[0].(map[string]any)["status"] != "canceled" {
		t.Errorf("cancel: %d %s", r.status, r.body)
	}
	if r := h.do("POST", "/v1/verifications/"+id+"/check", `{"code":"`+code+`"}`); r.status != 410 || r.errorCode(t) != "canceled" {
		t.Errorf("check after cancel: %d %s", r.status, r.body)
	}
	if r := h.do("POST", "/v1/verifications/"+id+"/cancel", ""); r.status != 410 {
		t.Errorf("second cancel: %d", r.status)
	}
}

func TestNoKeysMeansNoAuth(t *testing.T) {
	h := newHarness(t, []string{}...)
	req := httptest.NewRequest("POST", "/v1/verifications", strings.NewReader(`{"to":"+15551234567"}`))
	rec := httptest.NewRecorder()
	h.h.ServeHTTP(rec, req)
	if rec.Code != 201 {
		t.Errorf("status %d", rec.Code)
	}
	if _, err := New(h.calls, h.store, Config{APIKeys: []string{" "}}); err == nil {
		t.Error("a blank API key was accepted")
	}
}

func TestUnknownEndpoint(t *testing.T) {
	h := newHarness(t)
	if r := h.do("GET", "/v2/nothing", ""); r.status != 404 || r.errorCode(t) != "not_found" {
		t.Errorf("%d %s", r.status, r.body)
	}
	if r := h.do("DELETE", "/v1/verifications/x", ""); r.status != 405 && r.status != 404 {
		t.Errorf("DELETE: %d", r.status)
	}
}

func TestTrunksEndpoint(t *testing.T) {
	h := newHarness(t)
	if r := h.do("GET", "/v1/trunks", ""); r.status != 404 {
		t.Errorf("without trunk status: %d", r.status)
	}
	exp := time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)
	srv, _ := New(h.calls, h.store, Config{APIKeys: []string{testKey}, Trunks: func() []Trunk {
		return []Trunk{
			{Name: "a", URI: "sip:a.example:5060", Transport: "udp", State: "up", RTTMS: 12.5,
				LastProbe: &exp, Register: true, Registered: true, RegisterExpires: &exp, ActiveChannels: 3, LastStatus: 200},
			{Name: "b", URI: "sips:b.example:5061", Transport: "tls", State: "down", LastError: "tls: bad certificate"},
		}
	}})
	h.h = srv.Handler()
	r := h.do("GET", "/v1/trunks", "")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var body struct {
		Trunks []map[string]any `json:"trunks"`
	}
	json.Unmarshal(r.body, &body)
	if len(body.Trunks) != 2 {
		t.Fatalf("%s", r.body)
	}
	a, b := body.Trunks[0], body.Trunks[1]
	if a["state"] != "up" || a["rtt_ms"] != 12.5 || a["registered"] != true || a["active_channels"] != 3.0 || a["register_expires"] == nil {
		t.Errorf("a = %v", a)
	}
	if b["state"] != "down" || b["last_error"] != "tls: bad certificate" || b["transport"] != "tls" {
		t.Errorf("b = %v", b)
	}
}
