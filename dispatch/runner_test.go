package dispatch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
)

var errCancelledByUser = errors.New("verification cancelled")

// TestStopDuringPrepare has Prepare call stop and still succeed: the call
// goes to the Caller with its context already done (cause and all), and the
// job ends in one Finish.
func TestStopDuringPrepare(t *testing.T) {
	clk := newFakeClock(0)
	type seen struct {
		err, cause error
	}
	seenc := make(chan seen, 1)
	c := newFakeCaller(clk, func(ctx context.Context, _ callflow.Request) callflow.Outcome {
		seenc <- seen{ctx.Err(), context.Cause(ctx)}
		if ctx.Err() != nil {
			return callflow.Canceled
		}
		return callflow.Delivered
	})
	rec := newRecorder(func(ctx context.Context, j Job, stop context.CancelCauseFunc) (callflow.Request, error) {
		stop(errCancelledByUser)
		if ctx.Err() == nil {
			t.Error("Prepare's context is not done after stop")
		}
		return callflow.Request{Number: j.To, Code: "123456"}, nil
	})
	m := newHarness(c, rec, Config{}, clk)
	mustEnqueue(t, m, job(0))
	_, _ = startRun(t, m)
	rec.waitDone(t, 1)

	if s := <-seenc; !errors.Is(s.err, context.Canceled) || !errors.Is(s.cause, errCancelledByUser) {
		t.Errorf("the Caller's context: err %v, cause %v; want cancelled by the handler's cause", s.err, s.cause)
	}
	finished, skipped, violations := rec.snapshot()
	if finished[job(0).CallID] != 1 || len(skipped) != 0 || len(violations) != 0 {
		t.Errorf("finished %v, skipped %v, violations %v; want one Finish", finished, skipped, violations)
	}
	rec.mu.Lock()
	res := rec.finished[job(0).CallID][0]
	rec.mu.Unlock()
	if res.Outcome != callflow.Canceled {
		t.Errorf("outcome %s, want canceled", res.Outcome)
	}
	if st := m.Stats(); st.Dialled != 1 || st.Skipped != 0 {
		t.Errorf("Stats = %+v, want the job dialled (and ended at once)", st)
	}
}

// stopper is a Handler that keeps each job's stop function, so a test can
// end a call from outside, and after it ended.
type stopper struct {
	*recorder

	mu    sync.Mutex // guards stops and ctxs
	stops map[string]context.CancelCauseFunc
	ctxs  map[string]context.Context // the context Prepare got
}

func newStopper(prepare func(context.Context, Job, context.CancelCauseFunc) (callflow.Request, error)) *stopper {
	return &stopper{recorder: newRecorder(prepare), stops: map[string]context.CancelCauseFunc{}, ctxs: map[string]context.Context{}}
}

func (s *stopper) Prepare(ctx context.Context, j Job, stop context.CancelCauseFunc) (callflow.Request, error) {
	s.mu.Lock()
	s.stops[j.CallID], s.ctxs[j.CallID] = stop, ctx
	s.mu.Unlock()
	return s.recorder.Prepare(ctx, j, stop)
}

func (s *stopper) stop(id string, cause error) {
	s.mu.Lock()
	stop := s.stops[id]
	s.mu.Unlock()
	stop(cause)
}

func (s *stopper) ctx(id string) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctxs[id]
}

// TestStopDuringCall ends one of two calls in progress with its stop: that
// call's context is cancelled with the handler's cause and it ends in
// Finish; the other call is untouched.
func TestStopDuringCall(t *testing.T) {
	clk := newFakeClock(0)
	end := make(chan struct{})
	causes := make(chan error, 2)
	c := newFakeCaller(clk, func(ctx context.Context, _ callflow.Request) callflow.Outcome {
		select {
		case <-ctx.Done():
			causes <- context.Cause(ctx)
			return callflow.Canceled
		case <-end:
			return callflow.Delivered
		}
	})
	h := newStopper(nil)
	m := newHarness(c, h, Config{CPS: 1e6}, clk)
	mustEnqueue(t, m, job(0), job(1))
	_, _ = startRun(t, m)
	<-c.started
	<-c.started

	h.stop(job(0).CallID, errCancelledByUser)
	h.waitDone(t, 1)
	if cause := <-causes; !errors.Is(cause, errCancelledByUser) {
		t.Errorf("the stopped call's context ended with %v, want the handler's cause", cause)
	}
	if err := c.ctx(job(1).To).Err(); err != nil {
		t.Errorf("the other call's context is done (%v)", err)
	}
	close(end)
	h.waitDone(t, 1)

	h.recorder.mu.Lock()
	defer h.recorder.mu.Unlock()
	for i, want := range []callflow.Outcome{callflow.Canceled, callflow.Delivered} {
		if rs := h.finished[job(i).CallID]; len(rs) != 1 || rs[0].Outcome != want {
			t.Errorf("job %d finished %v, want one %s", i, rs, want)
		}
	}
}

// TestStopAfterTheEnd calls stop after Finish and after Skipped: nothing
// happens, and the call's context was already cancelled by the runner, so
// nothing leaks.
func TestStopAfterTheEnd(t *testing.T) {
	clk := newFakeClock(0)
	c := newFakeCaller(clk, nil)
	h := newStopper(func(_ context.Context, j Job, _ context.CancelCauseFunc) (callflow.Request, error) {
		if j.CallID == job(1).CallID {
			return callflow.Request{}, ErrSkip
		}
		return callflow.Request{Number: j.To, Code: "123456"}, nil
	})
	m := newHarness(c, h, Config{CPS: 1e6}, clk)
	mustEnqueue(t, m, job(0), job(1))
	_, _ = startRun(t, m)
	h.waitDone(t, 2)

	if err := c.ctx(job(0).To).Err(); err == nil {
		t.Error("the finished call's context is still live after Finish")
	}
	if err := h.ctx(job(1).CallID).Err(); err == nil {
		t.Error("the skipped job's context is still live after Skipped")
	}
	for i := range 2 {
		id := job(i).CallID
		h.stop(id, errCancelledByUser)
		h.stop(id, nil)
	}
	finished, skipped, violations := h.snapshot()
	if finished[job(0).CallID] != 1 || len(skipped[job(1).CallID]) != 1 || len(finished)+len(skipped) != 2 || len(violations) != 0 {
		t.Errorf("finished %v, skipped %v, violations %v; want job 0 finished and job 1 skipped, once each", finished, skipped, violations)
	}
	select {
	case id := <-h.done:
		t.Errorf("a stop after the end reported %s again", id)
	default:
	}
}

// sliceSource is a Source over a fixed list of deliveries, which records what
// the Runner did with each; it holds for CPU before it takes, as a durable
// queue does.
type sliceSource struct {
	mu        sync.Mutex // guards the fields below
	next      []Delivery
	stopped   int
	maintain  int
	maintDone bool
}

func (s *sliceSource) Take(ctx context.Context, hold func(context.Context) error) (Delivery, bool) {
	if hold(ctx) != nil {
		return Delivery{}, false
	}
	s.mu.Lock()
	if len(s.next) == 0 {
		s.mu.Unlock()
		<-ctx.Done()
		return Delivery{}, false
	}
	d := s.next[0]
	s.next = s.next[1:]
	s.mu.Unlock()
	return d, true
}

func (s *sliceSource) Stopped() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped++
}

func (s *sliceSource) Maintain(ctx context.Context) {
	s.mu.Lock()
	s.maintain++
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	s.maintDone = true
	s.mu.Unlock()
}

// TestRunnerDeliveryHooks drives a Runner through a Source of its own, as the
// durable queue does: Ended follows each report, Defer replaces the report
// of a deferred job, and Stopped and Maintain run once around the jobs.
func TestRunnerDeliveryHooks(t *testing.T) {
	clk := newFakeClock(0)
	var mu sync.Mutex
	var events []string
	note := func(e string) func() {
		return func() {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}
	}
	until := clk.Now().Add(time.Minute)
	deferred := make(chan *Deferred, 1)
	src := &sliceSource{next: []Delivery{
		{Job: job(0), Ended: note("ended 0")},
		{Job: job(1), Ended: note("ended 1")},
		{Job: job(2), Ended: note("ended 2"), Defer: func(d *Deferred) { deferred <- d }},
	}}
	rec := newRecorder(func(_ context.Context, j Job, _ context.CancelCauseFunc) (callflow.Request, error) {
		switch j.CallID {
		case job(1).CallID:
			return callflow.Request{}, ErrSkip
		case job(2).CallID:
			return callflow.Request{}, &Deferred{Until: until, Reason: errors.New("claimed elsewhere")}
		}
		return callflow.Request{Number: j.To, Code: "123456"}, nil
	})
	r := newRunner(Config{CPS: 1e6}, DialPrepared, clk)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx, newFakeCaller(clk, nil), rec, src) }()
	rec.waitDone(t, 2)
	var d *Deferred
	select {
	case d = <-deferred:
	case <-time.After(30 * time.Second):
		t.Fatal("the deferred job never reached Defer")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v", err)
	}

	if !d.Until.Equal(until) {
		t.Errorf("Defer got %v, want the handler's Deferred", d)
	}
	finished, skipped, _ := rec.snapshot()
	if finished[job(0).CallID] != 1 || len(skipped[job(1).CallID]) != 1 || len(skipped[job(2).CallID]) != 0 {
		t.Errorf("finished %v, skipped %v; want job 0 finished, job 1 skipped, job 2 deferred unreported", finished, skipped)
	}
	mu.Lock()
	got := append([]string(nil), events...)
	mu.Unlock()
	if len(got) != 2 || !contains(got, "ended 0") || !contains(got, "ended 1") {
		t.Errorf("Ended calls %v, want jobs 0 and 1 only", got)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.stopped != 1 || src.maintain != 1 || !src.maintDone {
		t.Errorf("Stopped %d, Maintain %d (returned %v); want each once, Maintain ended", src.stopped, src.maintain, src.maintDone)
	}
	if st := r.Stats(0); st.Dialled != 1 || st.Skipped != 1 || st.Active != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestRunnerShutdown compares the two Shutdown modes on a job whose Prepare
// is in progress when Run's context ends: SkipUndialled ends Prepare's
// context and skips the job; DialPrepared lets Prepare complete and dials.
// A job taken but not prepared goes to Unstarted in both.
func TestRunnerShutdown(t *testing.T) {
	tests := []struct {
		mode       Shutdown
		wantDialed bool
	}{
		{SkipUndialled, false},
		{DialPrepared, true},
	}
	for _, tt := range tests {
		t.Run(map[Shutdown]string{SkipUndialled: "SkipUndialled", DialPrepared: "DialPrepared"}[tt.mode], func(t *testing.T) {
			clk := newFakeClock(time.Minute) // the second token is 1000 s away: job 1 waits for it
			inPrepare := make(chan struct{})
			proceed := make(chan struct{})
			rec := newRecorder(func(ctx context.Context, j Job, _ context.CancelCauseFunc) (callflow.Request, error) {
				close(inPrepare)
				select {
				case <-ctx.Done():
					return callflow.Request{}, ctx.Err()
				case <-proceed:
				}
				return callflow.Request{Number: j.To, Code: "123456"}, nil
			})
			unstarted := make(chan Job, 1)
			src := &sliceSource{next: []Delivery{
				{Job: job(0)},
				{Job: job(1), Unstarted: func() { unstarted <- job(1) }},
			}}
			c := newFakeCaller(clk, nil)
			r := newRunner(Config{CPS: 0.001}, tt.mode, clk)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- r.Run(ctx, c, rec, src) }()
			<-inPrepare
			<-clk.held // job 1 waits for its token
			cancel()
			if tt.mode == DialPrepared {
				close(proceed)
			}
			if err := <-errc; err != nil {
				t.Fatalf("Run = %v", err)
			}

			if j := <-unstarted; j.CallID != job(1).CallID {
				t.Errorf("unstarted %s, want job 1", j.CallID)
			}
			finished, skipped, _ := rec.snapshot()
			if got := len(c.dialled()) == 1 && finished[job(0).CallID] == 1; got != tt.wantDialed {
				t.Errorf("job 0 dialled and finished: %v, want %v", got, tt.wantDialed)
			}
			if !tt.wantDialed {
				if errs := skipped[job(0).CallID]; len(errs) != 1 || !errors.Is(errs[0], ErrClosed) {
					t.Errorf("job 0 skipped with %v, want ErrClosed", errs)
				}
			}
			if len(skipped[job(1).CallID])+finished[job(1).CallID] != 0 {
				t.Error("the unstarted job was reported to the Handler")
			}
		})
	}
}

// TestRunnerRateLimiter checks that a Runner asks the RateLimiter it is
// given for each job, with the configured key, CPS and a burst of 1, and
// rides out a failing one.
func TestRunnerRateLimiter(t *testing.T) {
	clk := newFakeClock(0)
	rl := &fakeRate{fail: 2}
	rec := newRecorder(nil)
	m := newHarness(newFakeCaller(clk, nil), rec, Config{CPS: 7, Rate: rl, RateKey: "trunk-group"}, clk)
	mustEnqueue(t, m, job(0), job(1))
	_, _ = startRun(t, m)
	rec.waitDone(t, 2)

	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.granted != 2 || rl.asked != 4 {
		t.Errorf("asked %d times, granted %d; want 2 failures then 2 grants", rl.asked, rl.granted)
	}
	for _, a := range rl.args {
		if a != (rateArgs{"trunk-group", 7, 1}) {
			t.Errorf("TakeToken%+v, want key trunk-group, rate 7, burst 1", a)
		}
	}
	clk.mu.Lock()
	defer clk.mu.Unlock()
	if len(clk.sleeps) != 2 || clk.sleeps[0] != rateRetry || clk.sleeps[1] != rateRetry {
		t.Errorf("sleeps %v, want a retry pause of %v after each failure", clk.sleeps, rateRetry)
	}
}

type rateArgs struct {
	key   string
	rate  float64
	burst int
}

// fakeRate is a RateLimiter that fails its first fail calls and then grants
// every token.
type fakeRate struct {
	mu      sync.Mutex // guards the fields below
	fail    int
	asked   int
	granted int
	args    []rateArgs
}

func (f *fakeRate) TakeToken(_ context.Context, key string, rate float64, burst int) (bool, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	f.args = append(f.args, rateArgs{key, rate, burst})
	if f.fail > 0 {
		f.fail--
		return false, 0, errBoom
	}
	f.granted++
	return true, 0, nil
}
