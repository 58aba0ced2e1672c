package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/dispatch/internal/cpugate"
	"github.com/voiceotp/voiceotp/internal/gcra"
)

// Runner is the job runner every queue is built on: [Memory] and the Redis
// Streams queue differ only in their [Source], where jobs wait and what
// becomes of them at the ends the Runner leaves to the queue.
//
// For each job, [Runner.Run] waits, in this order, for a free call slot (at
// most Config.MaxConcurrent jobs are prepared or called at once), for the
// Source to take a job (the Source holds for CPU, see [Source.Take]), and for
// a calls-per-second token from Config.Rate; then, on a goroutine of the
// job's own, it creates the call's context (from a context that is not Run's,
// cancelled only at the drain timeout), calls [Handler.Prepare] with that
// context's stop function, and, if Prepare succeeds, [Caller.Run] with the
// call's context, reporting to [Handler.Event] and [Handler.Finish]; a job
// not dialled is reported to [Handler.Skipped], except when its Source takes
// it back (see [Delivery]). The call's context is cancelled once the Caller
// has returned or the job is skipped.
//
// When Run's context is done the Runner takes no more jobs. A job it had
// taken but not prepared is unstarted ([Delivery.Unstarted]); what becomes of
// a job whose Prepare had begun is the Runner's [Shutdown]. The Source is
// told ([Source.Stopped]), the calls in progress run on for up to
// Config.DrainTimeout, then their context is cancelled so they hang up; Run
// returns once every call goroutine has returned.
//
// All the Runner's waits (tokens, CPU holds, the drain) are on one clock.
// Stats and CountEnqueue are safe for concurrent use, before, during and
// after Run; Skip only during Run. Run may be called once.
type Runner struct {
	cfg      Config // defaults applied; read-only
	shutdown Shutdown
	clock    clock
	rate     RateLimiter
	cpu      *cpugate.Gate // nil when MaxCPU is off; Wait and Started only from the Run goroutine
	ownCPU   CPUMeter      // the sampler Run runs, when cfg.CPU was nil; or nil

	running atomic.Bool
	// caller and h are set by Run before its first job and read-only after.
	caller Caller
	h      Handler

	active        atomic.Int64 // jobs being prepared or called
	calling       atomic.Int64 // jobs inside Caller.Run
	enqueued      atomic.Uint64
	rejected      atomic.Uint64
	dialled       atomic.Uint64
	skipped       atomic.Uint64
	drainCanceled atomic.Uint64
}

// Shutdown says what a [Runner] does, when Run's context is done, with a job
// whose Prepare has begun: it is a property of the queue, because it depends
// on whether an undialled job can be run by someone else later.
type Shutdown int

const (
	// SkipUndialled ends Prepare's context with Run's, and reports a job
	// whose Prepare returns after Run's context is done Skipped with an
	// error wrapping ErrClosed (or Prepare's own ErrSkip), never dialled: for
	// a queue whose jobs die with the process anyway ([Memory]).
	SkipUndialled Shutdown = iota
	// DialPrepared gives Prepare the call's context, not Run's, so that a
	// Prepare in progress completes (and claims its dial), and dials a job
	// that Prepare accepted even though Run's context is done: for a durable
	// queue, where a claimed dial that is not placed would never be placed
	// by another node either.
	DialPrepared
)

// Source is the part of a queue that the [Runner] does not own: where jobs
// wait, how one is taken, and what becomes of the jobs the Runner does not
// run to the end. The Runner calls Take and Stopped from the goroutine
// running Run, never at once; Maintain on a goroutine of its own; and a
// [Delivery]'s functions from the job's goroutine or from Run's.
type Source interface {
	// Take waits for the next job and returns it, now the Runner's, with ok
	// true; or returns ok false without a job when ctx is done, or when it
	// has nothing for now (after a read that timed out, or a pause after an
	// error): the Runner then asks again unless ctx is done. The Runner calls
	// Take only once it has a free call slot.
	//
	// Take must call hold, the CPU gate, before it returns a job: hold
	// returns nil at once when the load lets a dial start, and otherwise
	// blocks until it does, or returns ctx's error once ctx is done. Where
	// Take calls it is the queue's choice: before reading, so that a busy
	// node reads nothing and leaves the jobs to others, or after taking the
	// job, so that a held job keeps its place (and counts as waiting). A job
	// returned after ctx is done (taken, or held, as it ended) is not lost:
	// the Runner treats it as unstarted.
	Take(ctx context.Context, hold func(context.Context) error) (d Delivery, ok bool)
	// Stopped is called once, after the last Take, when Run's context is
	// done and before the Runner waits for the calls in progress: what the
	// queue does with the jobs still waiting (report them with
	// [Runner.Skip], or leave them for another node).
	Stopped()
	// Maintain runs on a goroutine of its own for the whole of Run, from
	// before the first Take until every call has ended, and must return
	// once ctx is done: the queue's own periodic work, such as renewing the
	// leases of the jobs it holds.
	Maintain(ctx context.Context)
}

// Delivery is one job a [Source] gave the [Runner], with what its queue does
// at the ends of the job that are the queue's. A nil function takes the
// default.
type Delivery struct {
	// Job is the job to run.
	Job Job
	// Unstarted is called, instead of any report to the Handler, when Run's
	// context was done before the Runner prepared the job (it was held for
	// CPU or waited for its token): a queue hands the job back. If nil, the
	// job is reported Skipped with ErrClosed.
	Unstarted func()
	// Defer is called, instead of a Skipped report, when Prepare returns a
	// *[Deferred] (wrapped or not): a queue keeps the job to deliver it again
	// no earlier than Until. If nil, the job is Skipped with Prepare's error,
	// as for any other.
	Defer func(d *Deferred)
	// Ended is called once the job's Finish or Skipped report has returned
	// (a queue acknowledges the job); it is not called after Unstarted or
	// Defer.
	Ended func()
}

// rateRetry is how long the Runner waits before it asks a RateLimiter that
// failed again.
const rateRetry = 250 * time.Millisecond

// NewRunner returns a Runner with the limits of cfg, whose zero fields take
// their documented defaults, and the given Shutdown. If cfg.Rate is nil the
// Runner keeps a private budget of this process. NewRunner panics if
// cfg.CPUSource is unknown, as that is a wiring mistake.
func NewRunner(cfg Config, s Shutdown) *Runner {
	return newRunner(cfg, s, realClock{})
}

func newRunner(cfg Config, s Shutdown, clk clock) *Runner {
	cfg = cfg.WithDefaults()
	r := &Runner{cfg: cfg, shutdown: s, clock: clk, rate: cfg.Rate}
	if r.rate == nil {
		r.rate = privateRate{gcra.New(clk.Now)}
	}
	if cfg.MaxCPU > 0 {
		sampler := cfg.CPU
		if sampler == nil {
			own, err := NewCPUMeter(cfg.CPUSource)
			if err != nil {
				panic(err)
			}
			r.ownCPU, sampler = own, own
		}
		r.cpu = cpugate.New(cfg.MaxCPU, sampler, clk.Now, clk.SleepUntil, cfg.Logger).
			WithActive(func() int { return int(r.active.Load()) })
	}
	return r
}

// privateRate is the RateLimiter of a Runner given none.
type privateRate struct{ l *gcra.Limiter }

func (p privateRate) TakeToken(ctx context.Context, key string, rate float64, burst int) (bool, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	ok, wait := p.l.Take(key, rate, burst)
	return ok, wait, nil
}

// Run runs jobs from src, placing calls with c and reporting to h, until ctx
// is done, then drains (see [Runner]); it returns nil once every job it took
// has been reported or handed back and every call goroutine has returned. If
// Config.MaxCPU is set and Config.CPU is nil, Run also runs the sampler
// Config.CPUSource names. Run returns an error at once, without running, if
// c, h or src is nil, or if it was called before.
func (r *Runner) Run(ctx context.Context, c Caller, h Handler, src Source) error {
	if c == nil || h == nil || src == nil {
		return errors.New("dispatch: Run needs a Caller, a Handler and a Source")
	}
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("dispatch: Run called twice")
	}
	r.caller, r.h = c, h

	// The calls outlive ctx by the drain timeout; base is their parent.
	base, cancelCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCalls()
	bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	var background sync.WaitGroup
	defer func() {
		stopBg()
		background.Wait()
	}()
	if r.ownCPU != nil {
		background.Go(func() { r.ownCPU.Run(bg) })
	}
	background.Go(func() { src.Maintain(bg) })

	var calls sync.WaitGroup
	r.loop(ctx, base, src, &calls)
	src.Stopped()
	r.drain(&calls, cancelCalls)
	return nil
}

// loop is Run's loop; it returns when ctx is done.
func (r *Runner) loop(ctx, base context.Context, src Source, calls *sync.WaitGroup) {
	// A send takes a slot, a receive gives it back.
	slots := make(chan struct{}, r.cfg.MaxConcurrent)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		d, ok := src.Take(ctx, r.cpu.Wait)
		if !ok {
			<-slots
			if ctx.Err() != nil {
				return
			}
			continue
		}
		// The token is taken after the job, never while idle: with a burst of 1
		// a token taken early would let two calls start back to back.
		if err := r.waitToken(ctx); err != nil {
			<-slots
			r.unstarted(d)
			return
		}
		r.cpu.Started()
		r.active.Add(1)
		calls.Add(1)
		go func() {
			defer calls.Done()
			defer func() { <-slots }()
			defer r.active.Add(-1)
			r.run(ctx, base, d)
		}()
	}
}

// waitToken waits for a calls-per-second token, and returns nil once it has
// one or ctx's error once ctx is done. A failing RateLimiter is logged and
// asked again after rateRetry.
func (r *Runner) waitToken(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ok, wait, err := r.rate.TakeToken(ctx, r.cfg.RateKey, r.cfg.CPS, 1)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			r.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "dispatch: taking a calls-per-second token",
				slog.String("error", err.Error()))
			wait = rateRetry
		case ok:
			return nil
		}
		if err := r.clock.SleepUntil(ctx, r.clock.Now().Add(max(wait, time.Nanosecond))); err != nil {
			return err
		}
	}
}

// run prepares and places one job; it runs on the job's own goroutine. runCtx
// is Run's context, base the parent of the calls' contexts.
func (r *Runner) run(runCtx, base context.Context, d Delivery) {
	j := d.Job
	callCtx, stop := context.WithCancelCause(base)
	defer stop(nil)

	req, err := r.prepare(runCtx, callCtx, j, stop)
	if err != nil {
		var def *Deferred
		if d.Defer != nil && errors.As(err, &def) {
			d.Defer(def)
			return
		}
		r.Skip(j, err)
		d.ended()
		return
	}
	r.dialled.Add(1)
	r.calling.Add(1)
	res := r.caller.Run(callCtx, req, func(e callflow.Event) { r.h.Event(j, e) })
	r.calling.Add(-1)
	stop(nil)
	if res == nil {
		res = &callflow.Result{
			Outcome: callflow.Failed,
			Number:  req.Number,
			Error:   "dispatch: the caller returned no result",
			Events:  []callflow.Event{},
		}
	}
	r.h.Finish(j, res)
	d.ended()
}

// prepare calls the Handler's Prepare with the context the Runner's Shutdown
// calls for, and turns its answer into ErrClosed when a queue that skips
// undialled jobs is shutting down.
func (r *Runner) prepare(runCtx, callCtx context.Context, j Job, stop context.CancelCauseFunc) (callflow.Request, error) {
	if r.shutdown == DialPrepared {
		return r.h.Prepare(callCtx, j, stop)
	}
	prepCtx, cancel := context.WithCancel(callCtx)
	unhook := context.AfterFunc(runCtx, cancel)
	req, err := r.h.Prepare(prepCtx, j, stop)
	unhook()
	cancel()
	if runCtx.Err() != nil {
		// Shutting down: a job not yet dialled stays undialled.
		switch {
		case err == nil:
			err = ErrClosed
		case !errors.Is(err, ErrSkip) && !errors.Is(err, ErrClosed):
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		}
	}
	return req, err
}

// unstarted disposes of a job taken but not prepared when Run stopped.
func (r *Runner) unstarted(d Delivery) {
	if d.Unstarted != nil {
		d.Unstarted()
		return
	}
	r.Skip(d.Job, ErrClosed)
	d.ended()
}

func (d Delivery) ended() {
	if d.Ended != nil {
		d.Ended()
	}
}

// Skip reports j, which will not be dialled, to the Handler's Skipped with
// err, and counts and logs it. It is for a Source that drops a job the
// Runner never had (jobs left in the queue at shutdown, a job given up on),
// and may be called only during Run, from Take, Stopped or Maintain.
func (r *Runner) Skip(j Job, err error) {
	r.skipped.Add(1)
	level := slog.LevelDebug
	if !errors.Is(err, ErrSkip) {
		level = slog.LevelWarn
	}
	attrs := append(j.LogAttrs(), slog.String("error", err.Error()))
	r.cfg.Logger.LogAttrs(context.Background(), level, "dispatch: job not dialled", attrs...)
	r.h.Skipped(j, err)
}

// drain waits for the calls in progress, cancelling them after DrainTimeout.
func (r *Runner) drain(calls *sync.WaitGroup, cancelCalls context.CancelFunc) {
	deadline := r.clock.Now().Add(r.cfg.DrainTimeout)
	idle, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		calls.Wait()
		stop()
	}()
	canceled := int64(0)
	if r.clock.SleepUntil(idle, deadline) == nil {
		canceled = r.calling.Load()
		r.drainCanceled.Add(uint64(canceled))
		cancelCalls()
	}
	calls.Wait()
	r.cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo, "dispatch: stopped",
		slog.Int64("drain_canceled", canceled))
}

// CountEnqueue counts the outcome of one Enqueue in the Stats: a nil err is
// a job accepted (Enqueued), ErrQueueFull or ErrClosed (wrapped or not) a
// job refused (Rejected); other errors (a done context, a store that failed)
// are not counted.
func (r *Runner) CountEnqueue(err error) {
	switch {
	case err == nil:
		r.enqueued.Add(1)
	case errors.Is(err, ErrQueueFull), errors.Is(err, ErrClosed):
		r.rejected.Add(1)
	}
}

// Stats returns a snapshot of the counters, with Queued set to queued, the
// queue's own gauge. It is safe for concurrent use.
func (r *Runner) Stats(queued int) Stats {
	held, heldFor := r.cpu.Held()
	return Stats{
		Queued:         queued,
		Active:         int(r.active.Load()),
		Enqueued:       r.enqueued.Load(),
		Rejected:       r.rejected.Load(),
		Dialled:        r.dialled.Load(),
		Skipped:        r.skipped.Load(),
		DrainCanceled:  r.drainCanceled.Load(),
		HeldForCPU:     held,
		HeldForCPUTime: heldFor,
		CPULoad:        r.cpu.Load(),
	}
}

// clock is the time source of a Runner: its token waits, CPU holds and
// drain; tests inject a fake one.
type clock interface {
	// Now returns the current time; it is safe for concurrent use.
	Now() time.Time
	// SleepUntil blocks until t and returns nil, or returns ctx.Err() as soon
	// as ctx is done. If t is not in the future it returns ctx.Err() at once.
	// Only the goroutine running Run calls it.
	SleepUntil(ctx context.Context, t time.Time) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
