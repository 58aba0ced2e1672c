package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
)

// fakeClock is a clock whose time moves only when the dispatcher sleeps:
// a sleep shorter than hold returns at once with the clock advanced to its
// end; a sleep of hold or longer (when hold > 0) signals held and blocks
// until ctx is done, release is closed, or step receives a value (which
// ends that one sleep).
type fakeClock struct {
	hold    time.Duration
	held    chan time.Duration // receives the length of each held sleep
	release chan struct{}
	step    chan struct{}

	mu     sync.Mutex // guards now and sleeps
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock(hold time.Duration) *fakeClock {
	return &fakeClock{
		hold:    hold,
		held:    make(chan time.Duration, 8),
		release: make(chan struct{}),
		step:    make(chan struct{}),
		now:     time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	c.mu.Lock()
	d := t.Sub(c.now)
	if d <= 0 {
		c.mu.Unlock()
		return ctx.Err()
	}
	if c.hold > 0 && d >= c.hold {
		c.mu.Unlock()
		c.held <- d
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.release:
		case <-c.step:
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if t.After(c.now) {
			c.now = t
		}
		return nil
	}
	defer c.mu.Unlock()
	c.now = t
	c.sleeps = append(c.sleeps, d)
	return nil
}

// fakeCaller records calls. Each call emits dialing, runs behave (which
// decides the outcome and may block), then emits hangup.
type fakeCaller struct {
	clock  *fakeClock
	behave func(ctx context.Context, req callflow.Request) callflow.Outcome

	cur, max atomic.Int64
	started  chan string // receives req.Number as each call starts; buffered

	mu    sync.Mutex // guards dials and ctxs
	dials []dialRecord
	ctxs  map[string]context.Context // each call's context, by number
}

type dialRecord struct {
	number string
	at     time.Time
}

func newFakeCaller(clk *fakeClock, behave func(context.Context, callflow.Request) callflow.Outcome) *fakeCaller {
	if behave == nil {
		behave = func(context.Context, callflow.Request) callflow.Outcome { return callflow.Delivered }
	}
	return &fakeCaller{clock: clk, behave: behave, started: make(chan string, 2000), ctxs: map[string]context.Context{}}
}

func (f *fakeCaller) Run(ctx context.Context, req callflow.Request, onEvent func(callflow.Event)) *callflow.Result {
	n := f.cur.Add(1)
	defer f.cur.Add(-1)
	for {
		m := f.max.Load()
		if n <= m || f.max.CompareAndSwap(m, n) {
			break
		}
	}
	f.mu.Lock()
	f.dials = append(f.dials, dialRecord{number: req.Number, at: f.clock.Now()})
	f.ctxs[req.Number] = ctx
	f.mu.Unlock()
	f.started <- req.Number

	onEvent(callflow.Event{Type: callflow.EventDialing})
	out := f.behave(ctx, req)
	onEvent(callflow.Event{Type: callflow.EventHangup})
	return &callflow.Result{Outcome: out, Number: req.Number}
}

// ctx returns the context the call to number was placed with, once it started.
func (f *fakeCaller) ctx(number string) context.Context {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctxs[number]
}

func (f *fakeCaller) dialled() []dialRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]dialRecord(nil), f.dials...)
}

// recorder is a Handler that records everything and checks the per-job
// order contract as it goes.
type recorder struct {
	// prepare decides Prepare's answer; nil means dial j.To.
	prepare func(ctx context.Context, j Job, stop context.CancelCauseFunc) (callflow.Request, error)
	done    chan string // receives j.CallID on each Finish or Skipped

	mu         sync.Mutex // guards the fields below
	prepared   map[string]int
	events     map[string][]callflow.EventType
	finished   map[string][]*callflow.Result
	skipped    map[string][]error
	violations []string
}

func newRecorder(prepare func(context.Context, Job, context.CancelCauseFunc) (callflow.Request, error)) *recorder {
	return &recorder{
		prepare:  prepare,
		done:     make(chan string, 2000),
		prepared: map[string]int{},
		events:   map[string][]callflow.EventType{},
		finished: map[string][]*callflow.Result{},
		skipped:  map[string][]error{},
	}
}

func (r *recorder) Prepare(ctx context.Context, j Job, stop context.CancelCauseFunc) (callflow.Request, error) {
	r.mu.Lock()
	r.prepared[j.CallID]++
	r.mu.Unlock()
	if r.prepare != nil {
		return r.prepare(ctx, j, stop)
	}
	return callflow.Request{Number: j.To, Code: "123456"}, nil
}

func (r *recorder) Event(j Job, e callflow.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.finished[j.CallID]) > 0 || len(r.skipped[j.CallID]) > 0 {
		r.violations = append(r.violations, fmt.Sprintf("%s: event %s after the end", j.CallID, e.Type))
	}
	r.events[j.CallID] = append(r.events[j.CallID], e.Type)
}

func (r *recorder) Finish(j Job, res *callflow.Result) {
	r.mu.Lock()
	if res == nil {
		r.violations = append(r.violations, j.CallID+": nil result")
	}
	r.finished[j.CallID] = append(r.finished[j.CallID], res)
	r.mu.Unlock()
	r.done <- j.CallID
}

func (r *recorder) Skipped(j Job, err error) {
	r.mu.Lock()
	r.skipped[j.CallID] = append(r.skipped[j.CallID], err)
	r.mu.Unlock()
	r.done <- j.CallID
}

// waitDone waits for n Finish or Skipped reports. The deadline only turns a
// hang into a failure; no test depends on how fast anything runs.
func (r *recorder) waitDone(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-r.done:
		case <-deadline:
			t.Fatalf("only %d of %d jobs were reported", i, n)
		}
	}
}

func (r *recorder) snapshot() (finished map[string]int, skipped map[string][]error, violations []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	finished = map[string]int{}
	for id, rs := range r.finished {
		finished[id] = len(rs)
	}
	skipped = map[string][]error{}
	for id, errs := range r.skipped {
		skipped[id] = append([]error(nil), errs...)
	}
	return finished, skipped, append([]string(nil), r.violations...)
}

// job returns the i-th test job; its CallID and To are unique.
func job(i int) Job {
	return Job{
		VerificationID: fmt.Sprintf("VE%04d", i),
		CallID:         fmt.Sprintf("CA%04d", i),
		To:             fmt.Sprintf("+1555000%04d", i),
		Attempt:        1,
	}
}

// harness is a Memory with the Caller and Handler its Run is given.
type harness struct {
	*Memory
	c Caller
	h Handler
}

func newHarness(c Caller, h Handler, cfg Config, clk *fakeClock) *harness {
	return &harness{Memory: newMemory(cfg, clk), c: c, h: h}
}

// run is Run with the harness's Caller and Handler.
func (m *harness) run(ctx context.Context) error { return m.Run(ctx, m.c, m.h) }

// startRun runs m in the background; the returned function cancels it and
// waits for Run to return.
func startRun(t *testing.T, m *harness) (cancel context.CancelFunc, wait func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- m.run(ctx) }()
	var once sync.Once
	var err error
	wait = func() error {
		once.Do(func() {
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return")
			}
		})
		return err
	}
	t.Cleanup(func() {
		cancel()
		_ = wait()
	})
	return cancel, wait
}

func mustEnqueue(t *testing.T, m *harness, jobs ...Job) {
	t.Helper()
	for _, j := range jobs {
		if err := m.Enqueue(context.Background(), j); err != nil {
			t.Fatalf("Enqueue(%s): %v", j.CallID, err)
		}
	}
}

var errBoom = errors.New("store unavailable")

// fakeCPU is a CPUSampler whose load the test sets.
type fakeCPU struct {
	bits atomic.Uint64
}

func newFakeCPU(load float64) *fakeCPU {
	f := &fakeCPU{}
	f.set(load)
	return f
}

func (f *fakeCPU) set(load float64) { f.bits.Store(math.Float64bits(load)) }

func (f *fakeCPU) CPULoad() float64 { return math.Float64frombits(f.bits.Load()) }
