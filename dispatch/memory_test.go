package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
)

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{"zero", Config{}, Config{MaxConcurrent: 100, CPS: 10, RateKey: "calls", QueueSize: 10000, DrainTimeout: 2 * time.Minute}},
		{"negative", Config{MaxConcurrent: -1, CPS: -3, QueueSize: -5, DrainTimeout: -time.Second},
			Config{MaxConcurrent: 100, CPS: 10, RateKey: "calls", QueueSize: 10000, DrainTimeout: 2 * time.Minute}},
		{"set", Config{MaxConcurrent: 7, CPS: 0.5, RateKey: "k", QueueSize: 3, DrainTimeout: time.Second, MaxCPU: 0.8},
			Config{MaxConcurrent: 7, CPS: 0.5, RateKey: "k", QueueSize: 3, DrainTimeout: time.Second, MaxCPU: 0.8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.WithDefaults()
			if got.Logger == nil {
				t.Error("Logger is nil")
			}
			got.Logger = nil
			if got != tt.want {
				t.Errorf("WithDefaults() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEnqueue(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		size   int
		ctx    context.Context
		before int  // jobs enqueued first
		closed bool // Run has returned
		want   error
	}{
		{"room", 2, context.Background(), 1, false, nil},
		{"full", 2, context.Background(), 2, false, ErrQueueFull},
		{"closed", 2, context.Background(), 0, true, ErrClosed},
		{"context done", 2, canceled, 0, false, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock(0)
			m := newHarness(newFakeCaller(clk, nil), newRecorder(nil), Config{QueueSize: tt.size}, clk)
			for i := range tt.before {
				mustEnqueue(t, m, job(i))
			}
			if tt.closed {
				ctx, stop := context.WithCancel(context.Background())
				stop()
				if err := m.run(ctx); err != nil {
					t.Fatalf("Run: %v", err)
				}
			}
			err := m.Enqueue(tt.ctx, job(99))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Enqueue = %v, want %v", err, tt.want)
			}
			st := m.Stats()
			wantQueued := tt.before
			if tt.want == nil {
				wantQueued++
			}
			if st.Queued != wantQueued || st.Enqueued != uint64(wantQueued) {
				t.Errorf("Stats = %+v, want %d queued and enqueued", st, wantQueued)
			}
			if tt.want == ErrQueueFull || tt.want == ErrClosed {
				if st.Rejected != 1 {
					t.Errorf("Rejected = %d, want 1", st.Rejected)
				}
			}
		})
	}
}

func TestEnqueueStampsTime(t *testing.T) {
	clk := newFakeClock(0)
	m := newHarness(newFakeCaller(clk, nil), newRecorder(nil), Config{}, clk)
	mustEnqueue(t, m, job(1))
	fixed := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	j := job(2)
	j.EnqueuedAt = fixed
	mustEnqueue(t, m, j)
	if got := (<-m.queue).EnqueuedAt; !got.Equal(clk.Now()) {
		t.Errorf("zero EnqueuedAt became %v, want %v", got, clk.Now())
	}
	if got := (<-m.queue).EnqueuedAt; !got.Equal(fixed) {
		t.Errorf("EnqueuedAt = %v, want it kept as %v", got, fixed)
	}
}

func TestRunTwice(t *testing.T) {
	clk := newFakeClock(0)
	m := newHarness(newFakeCaller(clk, nil), newRecorder(nil), Config{}, clk)
	ctx, stop := context.WithCancel(context.Background())
	stop()
	if err := m.run(ctx); err != nil {
		t.Fatalf("first Run = %v", err)
	}
	if err := m.run(ctx); err == nil {
		t.Error("second Run returned nil")
	}
}

// TestConcurrencyLimit fills every slot with calls that block, checks that
// no more start, then lets them all through.
func TestConcurrencyLimit(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		jobs  int
	}{
		{"one", 1, 10},
		{"three", 3, 40},
		{"eight", 8, 60},
		{"more slots than jobs", 50, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock(0)
			gate := make(chan struct{})
			c := newFakeCaller(clk, func(ctx context.Context, _ callflow.Request) callflow.Outcome {
				select {
				case <-gate:
				case <-ctx.Done():
					return callflow.Canceled
				}
				for range rand.IntN(20) {
					runtime.Gosched()
				}
				return callflow.Delivered
			})
			rec := newRecorder(nil)
			m := newHarness(c, rec, Config{MaxConcurrent: tt.limit, CPS: 1e6}, clk)
			for i := range tt.jobs {
				mustEnqueue(t, m, job(i))
			}
			cancel, wait := startRun(t, m)

			full := min(tt.limit, tt.jobs)
			for range full {
				<-c.started
			}
			// Every slot holds a blocked call, so the dispatcher waits for a slot
			// and takes no further job.
			if st := m.Stats(); st.Active != full || st.Queued != tt.jobs-full {
				t.Errorf("with all slots busy: Stats = %+v, want %d active and %d queued", st, full, tt.jobs-full)
			}
			close(gate)
			rec.waitDone(t, tt.jobs)

			if got := c.max.Load(); got != int64(full) {
				t.Errorf("max concurrent calls = %d, want %d", got, full)
			}
			finished, skipped, violations := rec.snapshot()
			if len(finished) != tt.jobs || len(skipped) != 0 || len(violations) != 0 {
				t.Errorf("finished %d, skipped %d, violations %v; want %d finished", len(finished), len(skipped), violations, tt.jobs)
			}
			cancel()
			_ = wait()
			if st := m.Stats(); st.Dialled != uint64(tt.jobs) || st.Active != 0 || st.Queued != 0 {
				t.Errorf("Stats = %+v", st)
			}
		})
	}
}

// TestCallsPerSecond checks the spacing of dials on the limiter's own clock.
// One slot makes each call end before the next token is asked for, so each
// dial is stamped with the time its token was granted.
func TestCallsPerSecond(t *testing.T) {
	tests := []struct {
		name string
		cps  float64
		jobs int
	}{
		{"5 per second", 5, 10},
		{"50 per second", 50, 20},
		{"one every 2s", 0.5, 4},
		{"default", 0, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock(0)
			c := newFakeCaller(clk, nil)
			rec := newRecorder(nil)
			m := newHarness(c, rec, Config{MaxConcurrent: 1, CPS: tt.cps}, clk)
			interval := time.Duration(float64(time.Second) / m.r.cfg.CPS)
			for i := range tt.jobs {
				mustEnqueue(t, m, job(i))
			}
			start := clk.Now()
			_, _ = startRun(t, m)
			rec.waitDone(t, tt.jobs)

			dials := c.dialled()
			if len(dials) != tt.jobs {
				t.Fatalf("%d dials, want %d", len(dials), tt.jobs)
			}
			if !dials[0].at.Equal(start) {
				t.Errorf("first dial at +%v, want at once", dials[0].at.Sub(start))
			}
			for i := 1; i < len(dials); i++ {
				if gap := dials[i].at.Sub(dials[i-1].at); gap < interval*95/100 {
					t.Errorf("dial %d came %v after dial %d, want ≥ %v", i, gap, i-1, interval)
				}
			}
			// Not slower than the budget either (on the fake clock).
			if total, want := dials[len(dials)-1].at.Sub(start), time.Duration(tt.jobs-1)*interval; total > want*105/100 {
				t.Errorf("%d dials took %v, want about %v", tt.jobs, total, want)
			}
		})
	}
}

// TestCallsPerSecondAfterIdle checks the burst of 1: a long idle period
// does not let two calls start together. One slot stamps each dial with its
// token's time, as in TestCallsPerSecond.
func TestCallsPerSecondAfterIdle(t *testing.T) {
	clk := newFakeClock(0)
	c := newFakeCaller(clk, nil)
	rec := newRecorder(nil)
	m := newHarness(c, rec, Config{MaxConcurrent: 1, CPS: 5}, clk)
	_, _ = startRun(t, m)

	mustEnqueue(t, m, job(0))
	rec.waitDone(t, 1)
	clk.advance(time.Minute)
	mustEnqueue(t, m, job(1), job(2), job(3))
	rec.waitDone(t, 3)

	dials := c.dialled()
	if len(dials) != 4 {
		t.Fatalf("%d dials, want 4", len(dials))
	}
	for i := 2; i < len(dials); i++ {
		if gap := dials[i].at.Sub(dials[i-1].at); gap < 190*time.Millisecond {
			t.Errorf("after idle, dial %d came %v after the previous one, want ≥ 200ms", i, gap)
		}
	}
}

// TestSkip checks that a job Prepare refuses is never dialled and is
// reported once, with Prepare's error.
func TestSkip(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"skip", ErrSkip},
		{"wrapped skip", fmt.Errorf("verification VE1 expired: %w", ErrSkip)},
		{"other error", errBoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock(0)
			c := newFakeCaller(clk, nil)
			rec := newRecorder(func(context.Context, Job, context.CancelCauseFunc) (callflow.Request, error) {
				return callflow.Request{}, tt.err
			})
			m := newHarness(c, rec, Config{}, clk)
			mustEnqueue(t, m, job(1))
			_, _ = startRun(t, m)
			rec.waitDone(t, 1)

			finished, skipped, _ := rec.snapshot()
			if len(c.dialled()) != 0 || len(finished) != 0 {
				t.Errorf("dialled %d, finished %d; want neither", len(c.dialled()), len(finished))
			}
			errs := skipped[job(1).CallID]
			if len(errs) != 1 || !errors.Is(errs[0], tt.err) {
				t.Errorf("Skipped errors = %v, want one %v", errs, tt.err)
			}
			if st := m.Stats(); st.Skipped != 1 || st.Dialled != 0 {
				t.Errorf("Stats = %+v", st)
			}
		})
	}
}

// TestShutdownDrain walks a shutdown on the fake clock: queued jobs are
// skipped with ErrClosed, calls in progress run on, and those still running
// at the drain timeout see their context cancelled.
func TestShutdownDrain(t *testing.T) {
	tests := []struct {
		name         string
		fireTimeout  bool // the drain timeout expires while the stubborn call still runs
		wantCanceled uint64
	}{
		{"calls end within the drain timeout", false, 0},
		{"drain timeout cancels the rest", true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const drain = time.Hour
			clk := newFakeClock(drain)
			finish := make(chan struct{})   // ends the polite call
			stubborn := make(chan struct{}) // ends the stubborn call, if the timeout does not
			ctxDone := make(chan struct{})  // closed when the stubborn call sees its ctx cancelled
			c := newFakeCaller(clk, func(ctx context.Context, req callflow.Request) callflow.Outcome {
				if req.Number == job(0).To {
					<-finish
					return callflow.Delivered
				}
				select {
				case <-ctx.Done():
					close(ctxDone)
					return callflow.Canceled
				case <-stubborn:
					return callflow.Delivered
				}
			})
			rec := newRecorder(nil)
			m := newHarness(c, rec, Config{MaxConcurrent: 2, CPS: 1000, DrainTimeout: drain}, clk)
			mustEnqueue(t, m, job(0), job(1), job(2), job(3), job(4))
			cancel, wait := startRun(t, m)
			<-c.started
			<-c.started
			if st := m.Stats(); st.Active != 2 || st.Queued != 3 {
				t.Fatalf("before shutdown: Stats = %+v, want 2 active, 3 queued", st)
			}

			cancel()
			if d := <-clk.held; d != drain {
				t.Fatalf("held sleep of %v, want the drain timeout %v", d, drain)
			}
			// The queue was emptied before the drain began.
			rec.waitDone(t, 3)
			_, skipped, _ := rec.snapshot()
			for i := 2; i <= 4; i++ {
				if errs := skipped[job(i).CallID]; len(errs) != 1 || !errors.Is(errs[0], ErrClosed) {
					t.Errorf("job %d: Skipped with %v, want ErrClosed once", i, errs)
				}
			}
			if err := m.Enqueue(context.Background(), job(9)); !errors.Is(err, ErrClosed) {
				t.Errorf("Enqueue while draining = %v, want ErrClosed", err)
			}

			close(finish)
			rec.waitDone(t, 1)
			select {
			case <-ctxDone:
				t.Fatal("a call was cancelled before the drain timeout")
			default:
			}
			if tt.fireTimeout {
				close(clk.release)
				<-ctxDone
			} else {
				close(stubborn)
			}
			rec.waitDone(t, 1)
			if err := wait(); err != nil {
				t.Errorf("Run = %v", err)
			}

			finished, skipped, violations := rec.snapshot()
			if finished[job(0).CallID] != 1 || finished[job(1).CallID] != 1 || len(finished) != 2 || len(violations) != 0 {
				t.Errorf("finished %v, violations %v; want jobs 0 and 1 once each", finished, violations)
			}
			if len(skipped) != 3 {
				t.Errorf("skipped %v, want jobs 2, 3, 4", skipped)
			}
			st := m.Stats()
			if st.DrainCanceled != tt.wantCanceled || st.Active != 0 || st.Queued != 0 || st.Dialled != 2 || st.Skipped != 3 {
				t.Errorf("Stats = %+v, want %d drain-canceled", st, tt.wantCanceled)
			}
		})
	}
}

// TestShutdownBeforeDial covers the jobs that were taken from the queue but
// not yet dialled when Run's context ended: neither is ever dialled.
func TestShutdownBeforeDial(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the handler's prepare and the clock; blocked is closed
		// once job 1 is stuck where the test wants it.
		setup   func(blocked chan struct{}) (func(context.Context, Job, context.CancelCauseFunc) (callflow.Request, error), *fakeClock, float64)
		wantErr []error
	}{
		{
			name: "waiting for a token",
			setup: func(blocked chan struct{}) (func(context.Context, Job, context.CancelCauseFunc) (callflow.Request, error), *fakeClock, float64) {
				clk := newFakeClock(time.Minute)
				go func() { <-clk.held; close(blocked) }()
				return nil, clk, 0.001 // the second token is 1000s away
			},
			wantErr: []error{ErrClosed},
		},
		{
			name: "in Prepare, which ignores ctx",
			setup: func(blocked chan struct{}) (func(context.Context, Job, context.CancelCauseFunc) (callflow.Request, error), *fakeClock, float64) {
				return func(ctx context.Context, j Job, _ context.CancelCauseFunc) (callflow.Request, error) {
					if j.CallID == job(1).CallID {
						close(blocked)
						<-ctx.Done()
					}
					return callflow.Request{Number: j.To, Code: "123456"}, nil
				}, newFakeClock(0), 1000
			},
			wantErr: []error{ErrClosed},
		},
		{
			name: "in Prepare, which returns ctx.Err",
			setup: func(blocked chan struct{}) (func(context.Context, Job, context.CancelCauseFunc) (callflow.Request, error), *fakeClock, float64) {
				return func(ctx context.Context, j Job, _ context.CancelCauseFunc) (callflow.Request, error) {
					if j.CallID == job(1).CallID {
						close(blocked)
						<-ctx.Done()
						return callflow.Request{}, fmt.Errorf("loading verification: %w", ctx.Err())
					}
					return callflow.Request{Number: j.To, Code: "123456"}, nil
				}, newFakeClock(0), 1000
			},
			wantErr: []error{ErrClosed, context.Canceled},
		},
		{
			name: "in Prepare, which says skip",
			setup: func(blocked chan struct{}) (func(context.Context, Job, context.CancelCauseFunc) (callflow.Request, error), *fakeClock, float64) {
				return func(ctx context.Context, j Job, _ context.CancelCauseFunc) (callflow.Request, error) {
					if j.CallID == job(1).CallID {
						close(blocked)
						<-ctx.Done()
						return callflow.Request{}, ErrSkip
					}
					return callflow.Request{Number: j.To, Code: "123456"}, nil
				}, newFakeClock(0), 1000
			},
			wantErr: []error{ErrSkip},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blocked := make(chan struct{})
			prepare, clk, cps := tt.setup(blocked)
			c := newFakeCaller(clk, nil)
			rec := newRecorder(prepare)
			m := newHarness(c, rec, Config{CPS: cps}, clk)
			mustEnqueue(t, m, job(0), job(1))
			cancel, wait := startRun(t, m)
			rec.waitDone(t, 1) // job 0 dialled and finished
			<-blocked
			cancel()
			rec.waitDone(t, 1)
			if err := wait(); err != nil {
				t.Errorf("Run = %v", err)
			}

			finished, skipped, _ := rec.snapshot()
			if len(c.dialled()) != 1 || finished[job(0).CallID] != 1 {
				t.Errorf("dials %v, want only job 0", c.dialled())
			}
			errs := skipped[job(1).CallID]
			if len(errs) != 1 {
				t.Fatalf("job 1 Skipped %d times, want once", len(errs))
			}
			for _, want := range tt.wantErr {
				if !errors.Is(errs[0], want) {
					t.Errorf("job 1 Skipped with %v, want it to match %v", errs[0], want)
				}
			}
		})
	}
}

// TestEveryJobReportedOnce is a property test: whatever Prepare and the
// calls do, and whenever the queue stops, every job ends in exactly one
// Finish (if and only if it was dialled) or exactly one Skipped.
func TestEveryJobReportedOnce(t *testing.T) {
	const jobs = 1000
	tests := []struct {
		seed     uint64
		stopAt   int  // cancel Run after this many reports
		hardStop bool // the drain timeout expires at once
	}{
		{1, jobs, false},
		{2, 700, false},
		{3, 300, true},
		{4, 0, true},
		{5, 999, false},
	}
	outcomes := []callflow.Outcome{callflow.Delivered, callflow.NoInput, callflow.Busy, callflow.NoAnswer, callflow.Failed}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("seed %d stop at %d", tt.seed, tt.stopAt), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(tt.seed, 0))
			prepErr := map[string]error{}
			outcome := map[string]callflow.Outcome{}
			spins := map[string]int{}
			for i := range jobs {
				j := job(i)
				switch p := rng.IntN(100); {
				case p < 15:
					prepErr[j.CallID] = fmt.Errorf("expired: %w", ErrSkip)
				case p < 25:
					prepErr[j.CallID] = errBoom
				}
				outcome[j.To] = outcomes[rng.IntN(len(outcomes))]
				spins[j.To] = rng.IntN(50)
			}

			hold := time.Duration(0) // the drain sleep returns at once
			if !tt.hardStop {
				hold = time.Hour // the drain waits for the calls
			}
			clk := newFakeClock(hold)
			c := newFakeCaller(clk, func(ctx context.Context, req callflow.Request) callflow.Outcome {
				for range spins[req.Number] {
					if ctx.Err() != nil {
						return callflow.Canceled
					}
					runtime.Gosched()
				}
				return outcome[req.Number]
			})
			rec := newRecorder(func(_ context.Context, j Job, _ context.CancelCauseFunc) (callflow.Request, error) {
				if err := prepErr[j.CallID]; err != nil {
					return callflow.Request{}, err
				}
				return callflow.Request{Number: j.To, Code: "123456"}, nil
			})
			m := newHarness(c, rec, Config{MaxConcurrent: 16, CPS: 1e6, QueueSize: jobs, DrainTimeout: time.Hour}, clk)
			for i := range jobs {
				mustEnqueue(t, m, job(i))
			}
			cancel, wait := startRun(t, m)
			rec.waitDone(t, tt.stopAt)
			cancel()
			if err := wait(); err != nil {
				t.Fatalf("Run = %v", err)
			}

			finished, skipped, violations := rec.snapshot()
			for _, v := range violations {
				t.Error(v)
			}
			dialled := map[string]bool{}
			for _, d := range c.dialled() {
				dialled[d.number] = true
			}
			for i := range jobs {
				j := job(i)
				f, s := finished[j.CallID], len(skipped[j.CallID])
				if f+s != 1 {
					t.Errorf("%s: %d Finish and %d Skipped, want exactly one report", j.CallID, f, s)
					continue
				}
				if (f == 1) != dialled[j.To] {
					t.Errorf("%s: finished=%v but dialled=%v", j.CallID, f == 1, dialled[j.To])
				}
				if s == 1 {
					err := skipped[j.CallID][0]
					if want := prepErr[j.CallID]; want != nil && !errors.Is(err, want) && !errors.Is(err, ErrClosed) {
						t.Errorf("%s: Skipped with %v, want %v", j.CallID, err, want)
					}
					if prepErr[j.CallID] == nil && !errors.Is(err, ErrClosed) {
						t.Errorf("%s: a job Prepare accepted was Skipped with %v", j.CallID, err)
					}
				}
				if prepErr[j.CallID] != nil && f == 1 {
					t.Errorf("%s: dialled although Prepare said %v", j.CallID, prepErr[j.CallID])
				}
			}
			rec.mu.Lock()
			for id, evs := range rec.events {
				if len(evs) != 2 || evs[0] != callflow.EventDialing || evs[1] != callflow.EventHangup {
					t.Errorf("%s: events %v, want dialing then hangup", id, evs)
				}
			}
			rec.mu.Unlock()

			st := m.Stats()
			if st.Queued != 0 || st.Active != 0 || st.Dialled+st.Skipped != jobs || st.Dialled != uint64(len(dialled)) {
				t.Errorf("Stats = %+v", st)
			}
			if tt.stopAt == jobs && st.Dialled != uint64(jobs-len(prepErr)) {
				t.Errorf("with no early stop, %d dialled, want %d", st.Dialled, jobs-len(prepErr))
			}
			if most := c.max.Load(); most > 16 {
				t.Errorf("max concurrent calls %d > 16", most)
			}
		})
	}
}

// TestRunNeedsCallerAndHandler checks that Run without a Caller or a
// Handler returns an error at once, neither panicking nor running, and
// that the queue can still run once given both.
func TestRunNeedsCallerAndHandler(t *testing.T) {
	clk := newFakeClock(0)
	tests := []struct {
		name string
		c    Caller
		h    Handler
	}{
		{"no caller", nil, newRecorder(nil)},
		{"no handler", newFakeCaller(clk, nil), nil},
		{"neither", nil, nil},
	}
	m := newHarness(newFakeCaller(clk, nil), newRecorder(nil), Config{}, clk)
	mustEnqueue(t, m, job(0))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := m.Run(context.Background(), tt.c, tt.h); err == nil {
				t.Fatal("Run returned nil")
			}
			if st := m.Stats(); st.Queued != 1 || st.Dialled+st.Skipped != 0 {
				t.Errorf("Stats = %+v, want the job still queued", st)
			}
		})
	}
	_, _ = startRun(t, m)
	m.h.(*recorder).waitDone(t, 1)
	if st := m.Stats(); st.Dialled != 1 {
		t.Errorf("Stats = %+v, want the job dialled by the Run with both", st)
	}
}
