package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/dispatch/internal/cpugate"
)

// Memory is the in-process queue: a bounded buffer of jobs and one
// dispatcher (Run) that places them through a [Caller] within the limits of
// its [Config]. Jobs live only in this process: when Run stops, jobs that
// were queued but not dialled are reported Skipped with ErrClosed, and a
// crash loses them. For several nodes or jobs that survive a crash, use the
// Redis queue.
//
// Enqueue and Stats are safe for concurrent use, before, during and after
// Run. Run may be called once.
type Memory struct {
	caller  Caller
	h       Handler
	cfg     Config // defaults applied; read-only
	clock   clock
	limiter *rate.Limiter // used only by the Run goroutine
	queue   chan Job      // capacity cfg.QueueSize; sent to only with mu held
	cpu     *cpugate.Gate // nil when MaxCPU is off; Wait only from the Run goroutine
	ownCPU  CPUMeter      // the sampler Run runs, when cfg.CPU was nil; or nil

	// mu guards closed and every send on queue, so that no job enters the
	// queue after Run has drained it for the last time.
	mu     sync.Mutex
	closed bool

	running atomic.Bool // Run has been called

	queued        atomic.Int64
	active        atomic.Int64 // jobs being prepared or called
	calling       atomic.Int64 // jobs inside Caller.Run
	enqueued      atomic.Uint64
	rejected      atomic.Uint64
	dialled       atomic.Uint64
	skipped       atomic.Uint64
	drainCanceled atomic.Uint64
}

var _ Queue = (*Memory)(nil)

// NewMemory returns an in-process queue that places calls with c and reports
// to h. Zero fields of cfg take their documented defaults. c and h are
// required; NewMemory panics if either is nil, or if cfg.CPUSource is
// unknown, as that is a wiring mistake.
func NewMemory(c Caller, h Handler, cfg Config) *Memory {
	return newMemory(c, h, cfg, realClock{})
}

func newMemory(c Caller, h Handler, cfg Config, clk clock) *Memory {
	if c == nil || h == nil {
		panic("dispatch: NewMemory needs a Caller and a Handler")
	}
	cfg = cfg.withDefaults()
	m := &Memory{
		caller:  c,
		h:       h,
		cfg:     cfg,
		clock:   clk,
		limiter: rate.NewLimiter(rate.Limit(cfg.CPS), 1),
		queue:   make(chan Job, cfg.QueueSize),
	}
	m.cpu, m.ownCPU = cpuGate(cfg, clk.Now, clk.SleepUntil)
	m.cpu = m.cpu.WithActive(func() int { return int(m.active.Load()) })
	return m
}

// cpuGate builds the CPU admission of cfg, and the sampler the queue must run
// if cfg.CPU is nil; both are nil when MaxCPU is off. It panics on an unknown
// cfg.CPUSource.
func cpuGate(cfg Config, now func() time.Time, sleepUntil func(context.Context, time.Time) error) (*cpugate.Gate, CPUMeter) {
	if !(cfg.MaxCPU > 0) {
		return nil, nil
	}
	var own CPUMeter
	s := cfg.CPU
	if s == nil {
		var err error
		if own, err = NewCPUMeter(cfg.CPUSource); err != nil {
			panic(err)
		}
		s = own
	}
	return cpugate.New(cfg.MaxCPU, s, now, sleepUntil, cfg.Logger), own
}

// Enqueue adds j to the queue without waiting: it returns ErrQueueFull when
// QueueSize jobs are already waiting, ErrClosed once Run has stopped, and
// ctx.Err() if ctx is already done; in each case j was not queued. A zero
// j.EnqueuedAt is set to the current time. Enqueue may be called before Run
// starts; the jobs wait for it.
func (m *Memory) Enqueue(ctx context.Context, j Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if j.EnqueuedAt.IsZero() {
		j.EnqueuedAt = m.clock.Now()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		m.rejected.Add(1)
		return ErrClosed
	}
	m.queued.Add(1)
	select {
	case m.queue <- j:
		m.enqueued.Add(1)
		return nil
	default:
		m.queued.Add(-1)
		m.rejected.Add(1)
		return ErrQueueFull
	}
}

// Run dispatches jobs until ctx is done. For each job it waits, in this
// order, for a free slot (at most MaxConcurrent jobs are prepared or called
// at once), for a job, while the CPU load is above MaxCPU (the job still
// counts as Queued), and for a calls-per-second token; it then calls
// [Handler.Prepare] and, if that succeeds, [Caller.Run] on a goroutine of the
// job's own, which reports to [Handler.Event] and [Handler.Finish]. If
// MaxCPU is set and Config.CPU is nil, Run also runs the sampler
// Config.CPUSource names.
//
// When ctx is done Run stops taking jobs: queued jobs, a job held for CPU or
// waiting for its token, and jobs whose Prepare returns after that point are
// reported to [Handler.Skipped] with ErrClosed and never dialled. Calls
// already dialled run on, with a context that is not ctx, for up to
// DrainTimeout; then their context is cancelled so they hang up. Run returns
// once every call goroutine has returned and every job has been reported;
// after that Enqueue returns ErrClosed. Run returns nil, or an error if it
// was called before.
func (m *Memory) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("dispatch: Run called twice")
	}
	// Calls outlive ctx by the drain timeout; callCtx is theirs.
	callCtx, cancelCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCalls()
	if m.ownCPU != nil {
		stop := runSampler(m.ownCPU)
		defer stop()
	}
	var wg sync.WaitGroup
	m.dispatch(ctx, callCtx, &wg)
	m.drain(&wg, cancelCalls)
	return nil
}

// dispatch is Run's loop; it returns when ctx is done.
func (m *Memory) dispatch(ctx, callCtx context.Context, wg *sync.WaitGroup) {
	// A send takes a slot, a receive gives it back.
	slots := make(chan struct{}, m.cfg.MaxConcurrent)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		var j Job
		select {
		case j = <-m.queue:
		case <-ctx.Done():
			<-slots
			return
		}
		// A job held for CPU is still waiting: it counts as queued, and at
		// shutdown it is skipped like the jobs behind it.
		err := m.cpu.Wait(ctx)
		m.queued.Add(-1)
		if err != nil {
			<-slots
			m.skip(j, ErrClosed)
			return
		}
		m.cpu.Started()
		// The token is taken after the job, never while idle: with a burst of 1
		// a token taken early would let two calls start back to back.
		now := m.clock.Now()
		r := m.limiter.ReserveN(now, 1) // always OK: n never exceeds the burst
		if err := m.clock.SleepUntil(ctx, now.Add(r.DelayFrom(now))); err != nil || ctx.Err() != nil {
			<-slots
			m.skip(j, ErrClosed)
			return
		}
		m.active.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			defer m.active.Add(-1)
			m.call(ctx, callCtx, j)
		}()
	}
}

// call prepares and places one job; it runs on the job's own goroutine.
func (m *Memory) call(ctx, callCtx context.Context, j Job) {
	req, err := m.h.Prepare(ctx, j)
	if ctx.Err() != nil {
		// Shutting down: a job not yet dialled stays undialled.
		switch {
		case err == nil:
			err = ErrClosed
		case !errors.Is(err, ErrSkip) && !errors.Is(err, ErrClosed):
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		}
	}
	if err != nil {
		m.skip(j, err)
		return
	}
	m.dialled.Add(1)
	m.calling.Add(1)
	res := m.caller.Run(callCtx, req, func(e callflow.Event) { m.h.Event(j, e) })
	m.calling.Add(-1)
	if res == nil {
		res = &callflow.Result{
			Outcome: callflow.Failed,
			Number:  req.Number,
			Error:   "dispatch: the caller returned no result",
			Events:  []callflow.Event{},
		}
	}
	m.h.Finish(j, res)
}

func (m *Memory) skip(j Job, err error) {
	m.skipped.Add(1)
	level := slog.LevelDebug
	if !errors.Is(err, ErrSkip) {
		level = slog.LevelWarn
	}
	attrs := append(j.LogAttrs(), slog.String("error", err.Error()))
	m.cfg.Logger.LogAttrs(context.Background(), level, "dispatch: job not dialled", attrs...)
	m.h.Skipped(j, err)
}

// drain closes the queue, reports what is left in it, and waits for the
// calls in progress, cancelling them after DrainTimeout.
func (m *Memory) drain(wg *sync.WaitGroup, cancelCalls context.CancelFunc) {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	left := 0
	for empty := false; !empty; {
		select {
		case j := <-m.queue:
			m.queued.Add(-1)
			left++
			m.skip(j, ErrClosed)
		default:
			empty = true
		}
	}

	deadline := m.clock.Now().Add(m.cfg.DrainTimeout)
	idle, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		wg.Wait()
		stop()
	}()
	canceled := int64(0)
	if m.clock.SleepUntil(idle, deadline) == nil {
		canceled = m.calling.Load()
		m.drainCanceled.Add(uint64(canceled))
		cancelCalls()
	}
	wg.Wait()
	m.cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo, "dispatch: stopped",
		slog.Int("skipped_queued", left),
		slog.Int64("drain_canceled", canceled))
}

// Stats returns a snapshot of the counters. It is safe for concurrent use.
func (m *Memory) Stats() Stats {
	held, heldFor := m.cpu.Held()
	return Stats{
		Queued:         int(m.queued.Load()),
		Active:         int(m.active.Load()),
		Enqueued:       m.enqueued.Load(),
		Rejected:       m.rejected.Load(),
		Dialled:        m.dialled.Load(),
		Skipped:        m.skipped.Load(),
		DrainCanceled:  m.drainCanceled.Load(),
		HeldForCPU:     held,
		HeldForCPUTime: heldFor,
		CPULoad:        m.cpu.Load(),
	}
}

// runSampler runs p on a goroutine of its own until the returned stop is
// called; stop waits for it to return.
func runSampler(p CPUMeter) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}
