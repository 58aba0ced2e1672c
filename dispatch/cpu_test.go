package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
)

// recheck is how long a held dispatcher sleeps before it looks at the load
// again; a fakeClock with this hold blocks each such sleep.
const recheck = 250 * time.Millisecond

// TestCPUThreshold checks when a job is held: only while the load is above
// MaxCPU, and never when MaxCPU is off. A held job is not prepared, still
// counts as queued, and is skipped with ErrClosed if the queue stops.
func TestCPUThreshold(t *testing.T) {
	tests := []struct {
		name     string
		max      float64
		load     float64
		wantHeld bool
	}{
		{"off", 0, 5, false},
		{"negative is off", -0.5, 5, false},
		{"NaN is off", math.NaN(), 5, false},
		{"below", 0.9, 0.5, false},
		{"at the threshold", 0.9, 0.9, false},
		{"above", 0.9, 0.95, true},
		{"above one", 1, 1.02, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock(recheck)
			c := newFakeCaller(clk, nil)
			rec := newRecorder(nil)
			m := newHarness(c, rec, Config{CPS: 1e6, MaxCPU: tt.max, CPU: newFakeCPU(tt.load)}, clk)
			mustEnqueue(t, m, job(0))
			cancel, wait := startRun(t, m)

			if !tt.wantHeld {
				select {
				case d := <-clk.held:
					t.Fatalf("the dispatcher slept %v; want the job dialled at once", d)
				case <-rec.done:
				case <-time.After(30 * time.Second):
					t.Fatal("the job was not reported")
				}
				if st := m.Stats(); st.Dialled != 1 || st.HeldForCPU != 0 || st.HeldForCPUTime != 0 {
					t.Errorf("Stats = %+v, want 1 dialled and no hold", st)
				}
				return
			}

			if d := <-clk.held; d != recheck {
				t.Fatalf("held sleep of %v, want the recheck interval %v", d, recheck)
			}
			st := m.Stats()
			if st.Queued != 1 || st.Active != 0 || st.Dialled != 0 || st.HeldForCPU != 1 || st.CPULoad != tt.load {
				t.Errorf("while held: Stats = %+v, want 1 queued, none active or dialled, 1 hold at load %v", st, tt.load)
			}
			cancel()
			rec.waitDone(t, 1)
			if err := wait(); err != nil {
				t.Errorf("Run = %v", err)
			}
			_, skipped, _ := rec.snapshot()
			if errs := skipped[job(0).CallID]; len(errs) != 1 || !errors.Is(errs[0], ErrClosed) {
				t.Errorf("job held at shutdown: Skipped with %v, want ErrClosed once", errs)
			}
			rec.mu.Lock()
			prepared := rec.prepared[job(0).CallID]
			rec.mu.Unlock()
			if prepared != 0 || len(c.dialled()) != 0 {
				t.Errorf("a job held for CPU was prepared %d times and dialled %d times", prepared, len(c.dialled()))
			}
			if st := m.Stats(); st.Queued != 0 || st.Skipped != 1 || st.HeldForCPUTime != 0 {
				t.Errorf("after shutdown: Stats = %+v, want none queued, 1 skipped, held 0s on the fake clock", st)
			}
		})
	}
}

// TestCPUHoldThenResume holds two jobs while the load is above MaxCPU and
// between MaxCPU and the resume level (the hysteresis), then lets them
// through, in order, once the load is at most the resume level.
func TestCPUHoldThenResume(t *testing.T) {
	tests := []struct {
		name              string
		max               float64
		high, between, ok float64
	}{
		{"0.9 resumes at 0.85", 0.9, 0.95, 0.86, 0.85},
		{"0.06 resumes at 0.03", 0.06, 0.5, 0.04, 0.03},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock(recheck)
			c := newFakeCaller(clk, nil)
			rec := newRecorder(nil)
			cpu := newFakeCPU(tt.high)
			// One slot, so that job 1 is dialled after job 0 has ended.
			m := newHarness(c, rec, Config{MaxConcurrent: 1, CPS: 1e6, MaxCPU: tt.max, CPU: cpu}, clk)
			mustEnqueue(t, m, job(0), job(1))
			_, _ = startRun(t, m)

			<-clk.held
			cpu.set(tt.between)
			clk.step <- struct{}{}
			<-clk.held // looked again, and still holds
			if st := m.Stats(); st.Queued != 2 || st.Dialled != 0 || st.HeldForCPU != 1 || st.HeldForCPUTime != recheck {
				t.Errorf("between the resume level and MaxCPU: Stats = %+v, want both jobs queued and one hold of %v", st, recheck)
			}
			cpu.set(tt.ok)
			clk.step <- struct{}{}
			rec.waitDone(t, 2)

			dials := c.dialled()
			if len(dials) != 2 || dials[0].number != job(0).To || dials[1].number != job(1).To {
				t.Fatalf("dials %v, want job 0 then job 1", dials)
			}
			// The hold ended at the second look, on the fake clock.
			if st := m.Stats(); st.HeldForCPU != 1 || st.HeldForCPUTime != 2*recheck || st.Dialled != 2 || st.Queued != 0 {
				t.Errorf("Stats = %+v, want 2 dialled after one hold of %v", st, 2*recheck)
			}
		})
	}
}

// TestCPUHoldSparesCallsInProgress starts a call, raises the load above
// MaxCPU, and checks that the call runs on to its own end while the next
// job is held.
func TestCPUHoldSparesCallsInProgress(t *testing.T) {
	clk := newFakeClock(recheck)
	end := make(chan struct{})
	c := newFakeCaller(clk, func(ctx context.Context, req callflow.Request) callflow.Outcome {
		if req.Number != job(0).To {
			return callflow.Delivered
		}
		select {
		case <-end:
			return callflow.Delivered
		case <-ctx.Done():
			return callflow.Canceled
		}
	})
	rec := newRecorder(nil)
	cpu := newFakeCPU(0.1)
	m := newHarness(c, rec, Config{CPS: 1e6, MaxCPU: 0.9, CPU: cpu}, clk)
	mustEnqueue(t, m, job(0))
	_, _ = startRun(t, m)
	<-c.started

	cpu.set(0.99)
	mustEnqueue(t, m, job(1))
	<-clk.held
	if st := m.Stats(); st.Active != 1 || st.Queued != 1 || st.HeldForCPU != 1 {
		t.Errorf("while held: Stats = %+v, want the call active and job 1 queued", st)
	}
	close(end)
	rec.waitDone(t, 1)
	rec.mu.Lock()
	res := rec.finished[job(0).CallID]
	rec.mu.Unlock()
	if len(res) != 1 || res[0].Outcome != callflow.Delivered {
		t.Fatalf("the call in progress ended %+v, want delivered", res)
	}
	if d := c.dialled(); len(d) != 1 {
		t.Fatalf("dials %v while held, want only job 0", d)
	}

	cpu.set(0.1)
	clk.step <- struct{}{}
	rec.waitDone(t, 1)
	if finished, _, _ := rec.snapshot(); finished[job(1).CallID] != 1 {
		t.Errorf("finished %v, want job 1 once the load dropped", finished)
	}
}

// TestCPUHoldKeepsExpiry holds a job until its verification has expired:
// the hold comes before Prepare, so Prepare sees the expiry and the job is
// skipped, never dialled.
func TestCPUHoldKeepsExpiry(t *testing.T) {
	const ttl = 100 * time.Millisecond // less than one recheck
	clk := newFakeClock(recheck)
	c := newFakeCaller(clk, nil)
	rec := newRecorder(func(_ context.Context, j Job, _ context.CancelCauseFunc) (callflow.Request, error) {
		if clk.Now().Sub(j.EnqueuedAt) > ttl {
			return callflow.Request{}, fmt.Errorf("verification %s expired: %w", j.VerificationID, ErrSkip)
		}
		return callflow.Request{Number: j.To, Code: "123456"}, nil
	})
	cpu := newFakeCPU(0.95)
	m := newHarness(c, rec, Config{CPS: 1e6, MaxCPU: 0.9, CPU: cpu}, clk)
	mustEnqueue(t, m, job(0))
	_, _ = startRun(t, m)

	<-clk.held
	rec.mu.Lock()
	prepared := rec.prepared[job(0).CallID]
	rec.mu.Unlock()
	if prepared != 0 {
		t.Fatalf("the job was prepared %d times while held, want 0", prepared)
	}
	cpu.set(0.1)
	clk.step <- struct{}{}
	rec.waitDone(t, 1)

	finished, skipped, _ := rec.snapshot()
	if errs := skipped[job(0).CallID]; len(errs) != 1 || !errors.Is(errs[0], ErrSkip) {
		t.Errorf("Skipped with %v, want the expiry (ErrSkip)", errs)
	}
	if len(finished) != 0 || len(c.dialled()) != 0 {
		t.Errorf("an expired job was dialled: finished %v", finished)
	}
}

// TestProcessCPUWindow feeds the sampler CPU times and checks the load of
// the sliding window: CPU time over wall time × GOMAXPROCS.
func TestProcessCPUWindow(t *testing.T) {
	type step struct {
		busy  time.Duration // CPU time used during this step
		procs int
		want  float64
	}
	const s = 250 * time.Millisecond
	tests := []struct {
		name  string
		steps []step
	}{
		{"no window before two samples", []step{{0, 2, 0}}},
		{"one core of two", []step{{0, 2, 0}, {s, 2, 0.5}, {s, 2, 0.5}, {s, 2, 0.5}, {s, 2, 0.5}, {s, 2, 0.5}}},
		{"all cores", []step{{0, 4, 0}, {4 * s, 4, 1}, {4 * s, 4, 1}}},
		{"busy then idle slides out of the window", []step{
			{0, 2, 0}, {2 * s, 2, 1}, {2 * s, 2, 1}, {2 * s, 2, 1}, {2 * s, 2, 1},
			{0, 2, 0.75}, {0, 2, 0.5}, {0, 2, 0.25}, {0, 2, 0}, {0, 2, 0},
		}},
		{"GOMAXPROCS changes", []step{{0, 1, 0}, {s, 1, 1}, {s, 2, 0.5}}},
		{"more than GOMAXPROCS", []step{{0, 1, 0}, {2 * s, 1, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cpu time.Duration
			procs := 1
			p := newProcessCPU(time.Second, s, func() (time.Duration, error) { return cpu, nil }, func() int { return procs })
			now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			for i, st := range tt.steps {
				if i > 0 {
					now = now.Add(s)
				}
				cpu += st.busy
				procs = st.procs
				if !p.sample(now) {
					t.Fatal("sample failed")
				}
				if got := p.CPULoad(); math.Abs(got-st.want) > 1e-9 {
					t.Errorf("step %d: load %v, want %v", i, got, st.want)
				}
			}
			if n := len(p.win.samples); n > 5 {
				t.Errorf("%d samples kept, want at most a window's worth (5)", n)
			}
		})
	}
}

// TestProcessCPUMeasuresThisProcess runs the real sampler, on a short
// window, over a quiet stretch and then while every core Go may use spins.
// It checks only that both loads are sane and that spinning raises it.
func TestProcessCPUMeasuresThisProcess(t *testing.T) {
	const window, step = 300 * time.Millisecond, 50 * time.Millisecond
	p := newProcessCPU(window, step, processCPUTime, func() int { return runtime.GOMAXPROCS(0) })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()

	waitFullWindow(t, &p.mu, &p.win, time.Now()) // a window of (almost) nothing
	quiet := p.CPULoad()

	spinning := time.Now()
	var stop atomic.Bool
	var spinners sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		spinners.Go(func() {
			for n := 0; !stop.Load(); n++ {
				_ = n * n
			}
		})
	}
	waitFullWindow(t, &p.mu, &p.win, spinning) // a window of spinning
	busy := p.CPULoad()
	stop.Store(true)
	spinners.Wait()

	t.Logf("quiet %.3f, busy %.3f with GOMAXPROCS=%d", quiet, busy, runtime.GOMAXPROCS(0))
	for name, load := range map[string]float64{"quiet": quiet, "busy": busy} {
		if load < 0 || load > 1.5 {
			t.Errorf("%s load %v, want within [0, 1.5]", name, load)
		}
	}
	if busy <= quiet {
		t.Errorf("busy load %v is not above the quiet load %v", busy, quiet)
	}
}

// waitFullWindow waits until the load of a sampler measures only time after since: the base of its
// window (the oldest sample kept) was taken at or after since, a full window before its newest sample.
// Real time must pass for that, a window's worth, as the samplers read the real CPU counters; the wait
// is for the samples, however slowly they come.
func waitFullWindow[T any](t *testing.T, mu *sync.Mutex, w *slidingWindow[T], since time.Time) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(w.samples)
		full := n >= 2 && !w.samples[0].at.Before(since) && w.samples[n-1].at.Sub(w.samples[0].at) >= w.window
		mu.Unlock()
		if full {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the sampler did not fill a window")
		}
		time.Sleep(5 * time.Millisecond) // the poll's pace
	}
}
