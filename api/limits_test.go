package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/calls"
	"github.com/voiceotp/voiceotp/policy"
)

func TestNumberBusy(t *testing.T) {
	h := newHarnessWith(t, calls.Config{MaxCallLength: time.Minute})
	first := h.start("+15551234567")
	j := h.queue.Job(0)
	if _, err := h.calls.Prepare(context.Background(), j, func(error) {}); err != nil {
		t.Fatal(err)
	}
	// While the first call is live, another verification for the number is refused.
	h.endCalls(first)
	if _, err := h.svc.Fail(context.Background(), first); err != nil { // not through calls: the slot stays held
		t.Fatal(err)
	}
	r := h.do("POST", "/v1/verifications", `{"to":"+15551234567"}`)
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != "number_busy" || r.header.Get("Retry-After") != "30" {
		t.Fatalf("start during another verification's call: %d %s Retry-After %q, want 429 number_busy 30",
			r.status, r.body, r.header.Get("Retry-After"))
	}
	if h.queue.Len() != 1 {
		t.Errorf("%d jobs queued, want 1", h.queue.Len())
	}
}

// A cancel frees the number at once: the next start is accepted while the canceled call hangs up.
func TestCancelFreesTheNumber(t *testing.T) {
	h := newHarnessWith(t, calls.Config{MaxCallLength: time.Minute})
	first := h.start("+15551234567")
	if _, err := h.calls.Prepare(context.Background(), h.queue.Job(0), func(error) {}); err != nil {
		t.Fatal(err)
	}
	if r := h.do("POST", "/v1/verifications/"+first+"/cancel", ""); r.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if r := h.do("POST", "/v1/verifications", `{"to":"+15551234567"}`); r.status != http.StatusCreated {
		t.Errorf("start right after the cancel: %d %s, want 201", r.status, r.body)
	}
}

func TestSendsPerNumber(t *testing.T) {
	h := newHarnessWith(t, calls.Config{SendsPerNumber: 2, SendsWindow: time.Hour})
	id := h.start("+15551234567")
	h.endCalls(id)
	if r := h.do("POST", "/v1/verifications", `{"to":"+15551234567"}`); r.status != http.StatusOK {
		t.Fatalf("second send: %d", r.status)
	}
	h.endCalls(id)
	h.clock.Advance(10 * time.Minute)
	r := h.do("POST", "/v1/verifications", `{"to":"+15551234567"}`)
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != "too_many_sends" || r.header.Get("Retry-After") != fmt.Sprint(50*60) {
		t.Fatalf("third send: %d %s Retry-After %q, want 429 too_many_sends 3000", r.status, r.body, r.header.Get("Retry-After"))
	}
	if h.queue.Len() != 2 {
		t.Errorf("%d jobs queued, want 2", h.queue.Len())
	}
	if r := h.do("POST", "/v1/verifications", `{"to":"+15557654321"}`); r.status != http.StatusCreated {
		t.Errorf("another number: %d", r.status)
	}
}

// A refusal that says "retry later" is not stored under its Idempotency-Key.
func TestIdempotencyDoesNotStoreRetryLater(t *testing.T) {
	h := newHarnessWith(t, calls.Config{SendsPerNumber: 1})
	h.start("+15551234567")
	body := `{"to":"+15557654321"}`
	h.do("POST", "/v1/verifications", body) // uses the other number's only send
	r := h.do("POST", "/v1/verifications", body, "Idempotency-Key", "k-429")
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("status %d", r.status)
	}
	h.clock.Advance(2 * time.Hour)
	r = h.do("POST", "/v1/verifications", body, "Idempotency-Key", "k-429")
	if r.status == http.StatusTooManyRequests || r.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("retry with the same key after the window: %d (replayed %q), want it run again", r.status, r.header.Get("Idempotent-Replayed"))
	}
}

// The velocity limits answer 429 too_many_starts with Retry-After; a refused destination answers 400
// with its code, stores nothing, and leaves its audit line with the number masked.
func TestPolicyOnStart(t *testing.T) {
	pol, err := policy.New(policy.Config{Countries: []string{"US"}, Limits: []policy.Limit{
		{Scope: policy.ScopeAPIKey, Max: 2, Window: time.Hour},
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessPolicy(t, calls.Config{}, pol)
	for _, n := range []string{"+12015550101", "+12015550102"} {
		if r := h.do("POST", "/v1/verifications", `{"to":"`+n+`"}`); r.status != http.StatusCreated {
			t.Fatalf("start %s: %d %s", n, r.status, r.body)
		}
	}
	r := h.do("POST", "/v1/verifications", `{"to":"+12015550103"}`)
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != "too_many_starts" || r.header.Get("Retry-After") != "3600" {
		t.Errorf("third start by the key: %d %s Retry-After %q, want 429 too_many_starts 3600", r.status, r.body, r.header.Get("Retry-After"))
	}
	r = h.do("POST", "/v1/verifications", `{"to":"+19005551234"}`, "Idempotency-Key", "k1")
	if r.status != http.StatusBadRequest || r.errorCode(t) != "number_type_not_allowed" {
		t.Errorf("premium number: %d %s, want 400 number_type_not_allowed", r.status, r.body)
	}
	if h.queue.Len() != 2 {
		t.Errorf("%d jobs queued, want 2", h.queue.Len())
	}
	// The refused start left no idempotency record: the key is free for another body (else 422).
	h2 := newHarnessPolicy(t, calls.Config{}, pol)
	h2.do("POST", "/v1/verifications", `{"to":"+19005551234"}`, "Idempotency-Key", "k1")
	if r := h2.do("POST", "/v1/verifications", `{"to":"+12015550104"}`, "Idempotency-Key", "k1"); r.status != http.StatusCreated {
		t.Errorf("the key after a refused start: %d %s, want 201", r.status, r.body)
	}
	if !strings.Contains(h.logs.String(), `msg="start refused" code=number_type_not_allowed rule=number_types to=+1900***1234`) {
		t.Errorf("no masked audit line:\n%s", h.logs.String())
	}
}
