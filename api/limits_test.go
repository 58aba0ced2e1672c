package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/store/memory"
)

// newLimitedHarness is newHarness with per-number limits (the memory
// store's) and cfg's limit fields.
func newLimitedHarness(t *testing.T, cfg Config) (*harness, *memory.Limits) {
	t.Helper()
	h := newHarness(t)
	lim := memory.NewLimits(memory.WithClock(h.clock.now))
	cfg.APIKeys = []string{testKey}
	srv, err := New(h.svc, cfg, WithLogger(slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		WithClock(h.clock.now), WithLimits(lim))
	if err != nil {
		t.Fatal(err)
	}
	srv.SetQueue(h.queue)
	h.srv, h.h = srv, srv.Handler()
	return h, lim
}

var resultDelivered = callflow.Result{Outcome: callflow.Delivered, SIPStatus: 200, Events: []callflow.Event{}}

func (h *harness) job(i int) dispatch.Job {
	h.t.Helper()
	h.queue.mu.Lock()
	defer h.queue.mu.Unlock()
	return h.queue.jobs[i]
}

func (h *harness) call(id, callID string) otp.Call {
	h.t.Helper()
	v, err := h.svc.Get(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return *v.Call(callID)
}

func TestPrepareClaimsTheDial(t *testing.T) {
	h, _ := newLimitedHarness(t, Config{Node: "node-a", MaxCallLength: time.Minute})
	h.start("+15551234567")
	j := h.job(0)
	req, err := h.srv.Prepare(context.Background(), j)
	if err != nil || req.Number != "+15551234567" || req.Code == "" {
		t.Fatalf("Prepare = %v, %v", req.Number, err)
	}
	c := h.call(j.VerificationID, j.CallID)
	if c.Status != otp.CallDialing || c.Node != "node-a" || c.ClaimedAt == nil {
		t.Fatalf("claimed call = %+v", c)
	}

	// The same job delivered again (its node died) is never dialled: while
	// the call may be live it is deferred, after that it is skipped and
	// recorded lost.
	other, _ := New(h.svc, Config{APIKeys: []string{testKey}, Node: "node-b", MaxCallLength: time.Minute}, WithClock(h.clock.now))
	h.clock.advance(59 * time.Second)
	_, err = other.Prepare(context.Background(), j)
	var d *dispatch.Deferred
	if !errors.As(err, &d) || !d.Until.Equal(c.ClaimedAt.Add(time.Minute)) || !errors.Is(err, errNodeLost) {
		t.Fatalf("Prepare within the call's maximum length = %v, want Deferred until claim + 1m", err)
	}
	h.clock.advance(time.Second)
	_, err = other.Prepare(context.Background(), j)
	if !errors.Is(err, dispatch.ErrSkip) || !errors.Is(err, errNodeLost) || errors.As(err, &d) {
		t.Fatalf("Prepare after it = %v, want ErrSkip (node lost)", err)
	}
	other.Skipped(j, err)
	c = h.call(j.VerificationID, j.CallID)
	if c.Status != otp.CallFailed || c.HangupCause != "node_lost" || c.Node != "node-a" {
		t.Errorf("lost call = %s %s %s, want failed node_lost by node-a", c.Status, c.HangupCause, c.Node)
	}
}

// A call whose node finished it after all is skipped at once and kept.
func TestPrepareOfAnEndedCall(t *testing.T) {
	h, _ := newLimitedHarness(t, Config{Node: "node-a", MaxCallLength: time.Hour})
	h.start("+15551234567")
	j := h.job(0)
	if _, err := h.srv.Prepare(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.UpdateCall(context.Background(), j.VerificationID, j.CallID, func(c *otp.Call) { c.Status = otp.CallDelivered }); err != nil {
		t.Fatal(err)
	}
	_, err := h.srv.Prepare(context.Background(), j)
	var d *dispatch.Deferred
	if !errors.Is(err, dispatch.ErrSkip) || errors.As(err, &d) {
		t.Fatalf("Prepare of a delivered call = %v, want ErrSkip", err)
	}
	h.srv.Skipped(j, err)
	if c := h.call(j.VerificationID, j.CallID); c.Status != otp.CallDelivered {
		t.Errorf("call = %s, want delivered kept", c.Status)
	}
}

func TestNumberBusy(t *testing.T) {
	h, lim := newLimitedHarness(t, Config{MaxCallLength: time.Minute})
	first := h.start("+15551234567")
	j := h.job(0)
	if _, err := h.srv.Prepare(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	// While the first call is live its verification is canceled; the number
	// stays busy until the call ends.
	h.do("POST", "/v1/verifications/"+first+"/cancel", "")
	r := h.do("POST", "/v1/verifications", `{"to":"+15551234567"}`)
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != "number_busy" || r.header.Get("Retry-After") != "30" {
		t.Fatalf("start during another verification's call: %d %s Retry-After %q, want 429 number_busy 30",
			r.status, r.body, r.header.Get("Retry-After"))
	}
	if h.queue.count() != 1 {
		t.Errorf("%d jobs queued, want 1", h.queue.count())
	}

	// A job that got past the start check is still never dialled while another call holds the slot.
	h.start("+15557654321")
	if ok, _ := lim.AcquireNumber(context.Background(), "+15557654321", "VEother/CAother", time.Minute); !ok {
		t.Fatal("slot not taken")
	}
	j2 := h.job(1)
	_, err := h.srv.Prepare(context.Background(), j2)
	if !errors.Is(err, dispatch.ErrSkip) || !errors.Is(err, errNumberBusy) {
		t.Fatalf("Prepare on a busy number = %v", err)
	}
	h.srv.Skipped(j2, err)
	if c := h.call(j2.VerificationID, j2.CallID); c.Status != otp.CallFailed || c.HangupCause != "number_busy" {
		t.Errorf("busy call = %s %s", c.Status, c.HangupCause)
	}
	if holder, _, _ := lim.NumberHolder(context.Background(), "+15557654321"); holder != "VEother/CAother" {
		t.Errorf("the skipped job released a slot it did not hold: holder %q", holder)
	}

	// Finish frees the slot; the number can be called again.
	h.srv.Finish(j, &resultDelivered)
	if holder, _, _ := lim.NumberHolder(context.Background(), "+15551234567"); holder != "" {
		t.Errorf("slot still held by %q after Finish", holder)
	}
	if r := h.do("POST", "/v1/verifications", `{"to":"+15551234567"}`); r.status != http.StatusCreated {
		t.Errorf("start after the call ended: %d %s", r.status, r.body)
	}
}

func TestSendsPerNumber(t *testing.T) {
	h, _ := newLimitedHarness(t, Config{SendsPerNumber: 2, SendsWindow: time.Hour})
	id := h.start("+15551234567")
	h.endCalls(id)
	if r := h.do("POST", "/v1/verifications", `{"to":"+15551234567"}`); r.status != http.StatusOK {
		t.Fatalf("second send: %d", r.status)
	}
	h.endCalls(id)
	h.clock.advance(10 * time.Minute)
	r := h.do("POST", "/v1/verifications", `{"to":"+15551234567"}`)
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != "too_many_sends" || r.header.Get("Retry-After") != fmt.Sprint(50*60) {
		t.Fatalf("third send: %d %s Retry-After %q, want 429 too_many_sends 3000", r.status, r.body, r.header.Get("Retry-After"))
	}
	if h.queue.count() != 2 {
		t.Errorf("%d jobs queued, want 2", h.queue.count())
	}
	if r := h.do("POST", "/v1/verifications", `{"to":"+15557654321"}`); r.status != http.StatusCreated {
		t.Errorf("another number: %d", r.status)
	}
}

// A refusal that says "retry later" is not stored under its Idempotency-Key.
func TestIdempotencyDoesNotStoreRetryLater(t *testing.T) {
	h, _ := newLimitedHarness(t, Config{SendsPerNumber: 1})
	h.start("+15551234567")
	body := `{"to":"+15557654321"}`
	h.do("POST", "/v1/verifications", body) // uses the other number's only send
	r := h.do("POST", "/v1/verifications", body, "Idempotency-Key", "k-429")
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("status %d", r.status)
	}
	h.clock.advance(2 * time.Hour)
	r = h.do("POST", "/v1/verifications", body, "Idempotency-Key", "k-429")
	if r.status == http.StatusTooManyRequests || r.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("retry with the same key after the window: %d (replayed %q), want it run again", r.status, r.header.Get("Idempotent-Replayed"))
	}
}

func TestDeadLetterFailsTheVerification(t *testing.T) {
	h := newHarness(t)
	id := h.start("+15551234567")
	j := h.job(0)
	h.srv.Skipped(j, fmt.Errorf("%w: delivered 6 times", dispatch.ErrDeadLetter))
	v, err := h.svc.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != otp.StatusFailed || v.Calls[0].Status != otp.CallFailed || v.Calls[0].HangupCause != "dead_letter" {
		t.Errorf("after dead-lettering: %s, call %s %s", v.Status, v.Calls[0].Status, v.Calls[0].HangupCause)
	}
}
