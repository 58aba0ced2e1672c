package calls

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/dispatch/dispatchtest"
	"github.com/voiceotp/voiceotp/internal/testclock"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/store/memory"
)

// harness is one node: a Calls on the memory store with a recording queue and the memory counters.
type harness struct {
	t        *testing.T
	c        *Calls
	svc      *otp.Service
	queue    *dispatchtest.Recorder
	clock    *testclock.Clock
	counters *memory.Counters
	expiries *memory.Expiries
	logs     *bytes.Buffer
}

func newHarness(t *testing.T, cfg Config, opts ...Option) *harness {
	t.Helper()
	clock := testclock.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	st := memory.New(memory.WithClock(clock.Now))
	svc, err := otp.NewService(st, otp.Config{}, otp.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, svc: svc, queue: &dispatchtest.Recorder{}, clock: clock, logs: &bytes.Buffer{},
		counters: memory.NewCounters(memory.WithClock(clock.Now)), expiries: memory.NewExpiries()}
	h.c = h.node(cfg, opts...)
	return h
}

// node returns another Calls on the same store, counters and index: another node of the deployment.
func (h *harness) node(cfg Config, opts ...Option) *Calls {
	h.t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(&lockedWriter{b: h.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts = append([]Option{WithClock(h.clock.Now), WithNumberSlots(h.counters), WithExpiries(h.expiries)}, opts...)
	c, err := New(h.svc, h.queue, cfg, opts...)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// lockedWriter lets several goroutines log into one buffer.
type lockedWriter struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (h *harness) start(to string) *otp.Verification {
	h.t.Helper()
	v, _, err := h.c.Start(context.Background(), StartRequest{To: to})
	if err != nil {
		h.t.Fatalf("start %s: %v", to, err)
	}
	return v
}

func (h *harness) job(i int) dispatch.Job {
	h.t.Helper()
	return h.queue.Job(i)
}

func (h *harness) call(id, callID string) otp.Call {
	h.t.Helper()
	v, err := h.svc.Get(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return *v.Call(callID)
}

func (h *harness) verification(id string) *otp.Verification {
	h.t.Helper()
	v, err := h.svc.Get(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return v
}

// endCalls ends the calls of verification id still in progress (no_answer), so that the next start for
// its number queues a new call.
func (h *harness) endCalls(id string) {
	h.t.Helper()
	for _, cl := range h.verification(id).Calls {
		if !cl.Status.Terminal() {
			if _, err := h.svc.UpdateCall(context.Background(), id, cl.ID, func(c *otp.Call) { c.Status = otp.CallNoAnswer }); err != nil {
				h.t.Fatal(err)
			}
		}
	}
}

// stopRecorder records the cause a call's context was cancelled with.
type stopRecorder struct {
	ctx  context.Context
	stop context.CancelCauseFunc
}

func newStop() *stopRecorder {
	ctx, stop := context.WithCancelCause(context.Background())
	return &stopRecorder{ctx: ctx, stop: stop}
}

// cause returns the *callflow.Stop cause, or "" while not stopped.
func (s *stopRecorder) cause() string {
	if s.ctx.Err() == nil {
		return ""
	}
	return stopCauseOf(context.Cause(s.ctx))
}
