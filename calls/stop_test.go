package calls

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/otp"
)

func stopCauseOf(err error) string {
	var s *callflow.Stop
	if errors.As(err, &s) {
		return s.Cause
	}
	return "(not a stop: " + err.Error() + ")"
}

// live prepares the first queued job of h with a recorder of its stop.
func (h *harness) live(c *Calls, i int) *stopRecorder {
	h.t.Helper()
	s := newStop()
	if _, err := c.Prepare(context.Background(), h.job(i), s.stop); err != nil {
		h.t.Fatal(err)
	}
	return s
}

// Every way a verification stops being pending stops its live call with its own cause, frees the
// number's slot at once, and the next Confirm refuses the code.
func TestEndOfVerificationStopsTheLiveCall(t *testing.T) {
	for _, tc := range []struct {
		name  string
		end   func(h *harness, v *otp.Verification, code string)
		cause string
	}{
		{"cancel", func(h *harness, v *otp.Verification, _ string) {
			if _, err := h.c.Cancel(context.Background(), v.ID); err != nil {
				h.t.Fatal(err)
			}
		}, "canceled"},
		{"approved", func(h *harness, v *otp.Verification, code string) {
			if _, err := h.c.Check(context.Background(), v.ID, code); err != nil {
				h.t.Fatal(err)
			}
		}, "approved"},
		{"locked", func(h *harness, v *otp.Verification, code string) {
			wrong := []byte(code)
			wrong[0] = '0' + (wrong[0]-'0'+1)%10
			for range v.MaxChecks {
				h.c.Check(context.Background(), v.ID, string(wrong))
			}
		}, "locked"},
		{"expired", func(h *harness, v *otp.Verification, _ string) {
			h.clock.Advance(11 * time.Minute)
			h.c.expire(v.ID) // what the sweeper or the call's timer does
		}, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			v := h.start("+15551234567")
			s := newStop()
			req, err := h.c.Prepare(context.Background(), h.job(0), s.stop)
			if err != nil {
				t.Fatal(err)
			}
			if err := req.Confirm(context.Background()); err != nil {
				t.Fatalf("Confirm while pending = %v", err)
			}
			tc.end(h, v, req.Code)
			if got := s.cause(); got != tc.cause {
				t.Errorf("the live call was stopped with %q, want %q", got, tc.cause)
			}
			if err := req.Confirm(context.Background()); stopCauseOf(err) != tc.cause {
				t.Errorf("Confirm after the end = %v, want a stop with %q", err, tc.cause)
			}
			if holder, _, _ := h.counters.NumberHolder(context.Background(), "+15551234567"); holder != "" {
				t.Errorf("the number's slot is still held by %q", holder)
			}
			// The number is free for a new verification at once, though the call has not finished.
			if _, created, err := h.c.Start(context.Background(), StartRequest{To: "+15551234567"}); err != nil || !created {
				t.Errorf("a new start right after the end: %v, created %v", err, created)
			}
			h.c.Finish(h.job(0), &callflow.Result{Outcome: callflow.Canceled, HangupBy: "local", HangupCause: tc.cause})
			if c := h.call(v.ID, h.job(0).CallID); c.Status != otp.CallCanceled || c.HangupCause != tc.cause {
				t.Errorf("call record %s %s, want canceled %s", c.Status, c.HangupCause, tc.cause)
			}
			// The old call's Finish does not free the slot the new verification's call may take.
			h.live(h.c, 1)
			h.c.Finish(h.job(0), &resultDelivered)
			if holder, _, _ := h.counters.NumberHolder(context.Background(), "+15551234567"); holder != holder1(h) {
				t.Errorf("slot holder %q after the old call finished, want the new call's", holder)
			}
		})
	}
}

func holder1(h *harness) string { return holder(h.job(1)) }

// The call's own timer stops it at the verification's expiry, with no request to the API.
func TestExpiryTimerStopsTheCall(t *testing.T) {
	h := newHarness(t, Config{})
	v := h.start("+15551234567")
	// The timer runs on real time, the store on the fake clock: set the fake clock 500 ms before the
	// expiry for Prepare, then past it for the store when the timer fires.
	h.clock.Advance(v.ExpiresAt.Sub(h.clock.Now()) - 500*time.Millisecond)
	s := h.live(h.c, 0)
	h.clock.Advance(time.Minute)
	select {
	case <-s.ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the call was not stopped at its verification's expiry")
	}
	if got := s.cause(); got != "expired" {
		t.Errorf("cause %q, want expired", got)
	}
	if got := h.verification(v.ID).Status; got != otp.StatusExpired {
		t.Errorf("status %s, want expired", got)
	}
	if ok, _ := h.expiries.Take(context.Background(), v.ID); ok {
		t.Error("the expiry is still in the index: it would be announced twice")
	}
	if n := expiredCount(h.c); n != 1 {
		t.Errorf("announced %d times, want 1", n)
	}
}

// fakeSignals connects the nodes of one test, as Redis pub/sub does.
type fakeSignals struct {
	mu   sync.Mutex // guards subs
	subs []func(id, status string)
	sub  chan struct{} // receives once per subscription
}

func (f *fakeSignals) Publish(_ context.Context, id, status string) error {
	f.mu.Lock()
	subs := append([]func(string, string){}, f.subs...)
	f.mu.Unlock()
	for _, fn := range subs {
		fn(id, status)
	}
	return nil
}

func (f *fakeSignals) Subscribe(ctx context.Context, fn func(id, status string)) error {
	f.mu.Lock()
	f.subs = append(f.subs, fn)
	f.mu.Unlock()
	f.sub <- struct{}{}
	<-ctx.Done()
	return nil
}

// A cancel taken by one node stops the call that another node holds.
func TestCancelReachesAnotherNode(t *testing.T) {
	sig := &fakeSignals{sub: make(chan struct{}, 2)}
	h := newHarness(t, Config{Node: "a", WatchInterval: -1}, WithSignals(sig))
	b := h.node(Config{Node: "b", WatchInterval: -1}, WithSignals(sig))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.subscribe(ctx)
	<-sig.sub
	v := h.start("+15551234567")
	s := h.live(b, 0) // node b holds the call
	if _, err := h.c.Cancel(context.Background(), v.ID); err != nil {
		t.Fatal(err)
	}
	if got := s.cause(); got != "canceled" {
		t.Errorf("node b's call stopped with %q, want canceled", got)
	}
}

// With the news lost, node b's watch stops its call.
func TestWatchStopsACallWhoseEndWasMissed(t *testing.T) {
	h := newHarness(t, Config{})
	b := h.node(Config{Node: "b", WatchInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.watchLive(ctx)
	v := h.start("+15551234567")
	s := h.live(b, 0)
	if _, err := h.svc.Cancel(context.Background(), v.ID); err != nil { // behind calls' back: no signal
		t.Fatal(err)
	}
	select {
	case <-s.ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not stop the call")
	}
	if got := s.cause(); got != "canceled" {
		t.Errorf("cause %q, want canceled", got)
	}
}

// The sweeper applies due expiries and announces each once, whichever node takes it.
func TestSweeperExpiresOnce(t *testing.T) {
	h := newHarness(t, Config{ExpiryInterval: 5 * time.Millisecond})
	b := h.node(Config{Node: "b", ExpiryInterval: 5 * time.Millisecond})
	v := h.start("+15551234567")
	h.clock.Advance(11 * time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.c.sweepExpiries(ctx)
	go b.sweepExpiries(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for h.expiries.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polls the condition, bounded by the deadline
	}
	if h.expiries.Len() != 0 {
		t.Fatal("the sweepers did not take the due expiry")
	}
	if got := h.verification(v.ID).Status; got != otp.StatusExpired {
		t.Errorf("status %s, want expired", got)
	}
	expiredA, expiredB := expiredCount(h.c), expiredCount(b)
	if expiredA+expiredB != 1 {
		t.Errorf("announced %d times (a %d, b %d), want once", expiredA+expiredB, expiredA, expiredB)
	}
}

func expiredCount(c *Calls) int { return int(testutil.ToFloat64(c.m.expired)) }
