// Package dispatch is the call queue and scheduler: it decides when each
// queued call is placed, so that a node never has more than a set number of
// calls in progress, nor starts more than a set number per second, nor starts
// one while its CPU is above a set load.
//
// It owns the [Queue] contract, the [Handler] and [Caller] a queue reports to
// and dials through, and the one job runner every queue is built on
// ([Runner]): the call slots, the calls-per-second budget (asked of a
// [RateLimiter]), the admission by CPU load ([Config.MaxCPU], measured by a
// [CPUSampler]), the prepare → call → finish sequence with each call's own
// context, the shutdown drain, and the counters ([Stats]). [Memory] is the
// in-process queue, the default for a single node; package dispatch/streams
// is the durable one on Redis Streams. A queue owns only where its jobs wait
// and what becomes of them at the ends the Runner leaves to it (a [Source]).
//
// It does not own what a call does (package callflow, reached through
// [Caller]), nor the verification a call belongs to: it never sees a code
// until the moment of dialling, when it asks the [Handler] for the
// [callflow.Request], and it never stores, checks or logs one. It knows no
// HTTP and no storage: the rate limiter of a budget that several nodes share
// is given to it.
//
// The life of a job: [Queue.Enqueue] stores it; [Queue.Run] waits for a
// free call slot, takes the job, waits while the CPU load is above MaxCPU,
// waits for a calls-per-second token, creates the call's context and only
// then calls [Handler.Prepare], so a verification that expired or was
// cancelled while its job waited is never dialled. A prepared job is handed
// to the [Caller] on its own goroutine; its events go to [Handler.Event] and
// its result to [Handler.Finish]. A job that is not dialled goes to
// [Handler.Skipped]. Each job ends in exactly one Finish or one Skipped on
// the node that took it. The handler may end a call early, from Prepare on,
// with the stop function Prepare is given.
package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
)

// Errors callers branch on.
var (
	// ErrSkip is what [Handler.Prepare] returns (wrapped or not) when the job's
	// verification no longer wants a call: it expired, was cancelled, was
	// approved, or another node already claimed this dial.
	ErrSkip = errors.New("dispatch: job skipped")
	// ErrQueueFull is returned by Enqueue when QueueSize jobs are waiting;
	// nothing was queued. It is a refusal to try again later.
	ErrQueueFull = errors.New("dispatch: queue full")
	// ErrClosed is returned by Enqueue once the queue has stopped, and passed to
	// [Handler.Skipped] for jobs that were queued but not dialled when it stopped.
	ErrClosed = errors.New("dispatch: queue closed")
	// ErrDeadLetter is wrapped by the error passed to [Handler.Skipped] for a
	// job a durable queue gave up on without dialling it: it was delivered too
	// many times (it kept killing or hanging the nodes that took it). The
	// handler should fail its verification rather than let it wait for a call
	// that will never come.
	ErrDeadLetter = errors.New("dispatch: job dead-lettered after too many deliveries")
)

// Deferred is what [Handler.Prepare] returns (as *Deferred, wrapped or not)
// for a job that must not be dialled now and must not be dropped either:
// a durable queue hands the job back, to be delivered again (to any node)
// no earlier than Until, without counting a delivery and without reporting
// it to the Handler, and frees its call slot meanwhile: for example a job
// whose call was claimed by a node that stopped, deferred until that call
// cannot be live any more. [Memory] never delivers a job twice and treats
// Deferred like any other Prepare error: the job is Skipped.
type Deferred struct {
	// Until is the earliest time the job should be prepared again.
	Until time.Time
	// Reason says why; it is logged, and is what Skipped gets from a queue
	// that cannot defer.
	Reason error
}

func (d *Deferred) Error() string {
	return "dispatch: job deferred until " + d.Until.UTC().Format(time.RFC3339) + ": " + d.Reason.Error()
}

// Unwrap returns the Reason.
func (d *Deferred) Unwrap() error { return d.Reason }

// Job is one call to place. It carries no code: the code is fetched at dial
// time by [Handler.Prepare], so a queue (in memory or in Redis) never holds
// one. A Job is a plain value that marshals to JSON for a durable queue.
type Job struct {
	// VerificationID is the verification the call belongs to.
	VerificationID string `json:"verification_id"`
	// CallID names this call within its verification (the handler's call
	// record, not the SIP Call-ID, which exists only once the INVITE has left).
	CallID string `json:"call_id"`
	// To is the number to call in E.164, for logs and limits; the number that
	// is dialled is the one Prepare returns.
	To string `json:"to"`
	// EnqueuedAt is when the job was queued; set by Enqueue when zero.
	EnqueuedAt time.Time `json:"enqueued_at"`
	// Attempt counts the calls of this verification, from 1. It is set by
	// whoever enqueues and carried unchanged: the queue never retries a call.
	Attempt int `json:"attempt"`
}

// LogAttrs are the stable log keys that identify a job. They never include a code.
func (j Job) LogAttrs() []slog.Attr {
	return []slog.Attr{
		slog.String("verification_id", j.VerificationID),
		slog.String("call_id", j.CallID),
		slog.Int("attempt", j.Attempt),
	}
}

// Caller places one call; *callflow.Runner implements it.
//
// Run blocks until the call has ended and always returns a non-nil result.
// Cancelling ctx must end the call promptly (cancel a ringing call, hang up
// an answered one): the runner relies on it to bound its shutdown, and the
// handler's stop (see [Handler.Prepare]) to end one call. A ctx already done
// must end the call at once without dialling. onEvent is called serially
// for each event of the call.
type Caller interface {
	Run(ctx context.Context, req callflow.Request, onEvent func(callflow.Event)) *callflow.Result
}

var _ Caller = (*callflow.Runner)(nil)

// Handler connects jobs to the verification domain.
//
// Its methods are called from the runner's goroutines, concurrently for
// different jobs, so an implementation must be safe for concurrent use. For
// one job they are called in order: Prepare, then either Skipped, or Event
// for each call event followed by exactly one Finish. None of them may block
// for long: a slow Event delays the call's own state machine.
type Handler interface {
	// Prepare is called after the job has a call slot and a calls-per-second
	// token, right before dialling. It returns the call to place (number, code,
	// trunk), or an error, in which case the job is not dialled, Finish is not
	// called, and Skipped is called with that error.
	//
	// Return ErrSkip, wrapped or not, when the verification no longer wants the
	// call (expired, cancelled, approved). Prepare is also where the dial is
	// claimed: a durable queue may deliver a job again after a node dies, and
	// Prepare must then see the claim and return ErrSkip (or a [Deferred], to
	// look again later), so that no job is ever dialled twice. Prepare's errors
	// are logged, so they must never hold a code.
	//
	// stop cancels the call's context, which the runner creates before Prepare
	// and gives to [Caller.Run]: the handler may keep it and call it at any
	// time, from Prepare on, to end this call early (a cancelled verification:
	// the Caller cancels a ringing call and hangs up an answered one). The
	// cause is the handler's own; the queue does not read it. If stop is called
	// during Prepare and Prepare succeeds, the call is still handed to the
	// Caller, whose context is already done, and ends in Finish as usual. The
	// runner cancels the call's context itself once the Caller has returned or
	// the job is skipped, so calling stop after Finish or Skipped does nothing.
	//
	// ctx is done when stop is called, when the drain timeout cancels the
	// calls, and, for a queue whose jobs die with it ([SkipUndialled]), when
	// the queue is shutting down; Run waits for Prepare to return, so it must
	// return promptly then.
	Prepare(ctx context.Context, j Job, stop context.CancelCauseFunc) (callflow.Request, error)
	// Event reports one event of a dialled call, in order, before Finish. It is
	// called from a goroutine the call owns, never concurrently for one job.
	Event(j Job, e callflow.Event)
	// Finish reports the result of a dialled call, exactly once per dialled job.
	// r is never nil and is the handler's to keep.
	Finish(j Job, r *callflow.Result)
	// Skipped reports, exactly once, a job that was not dialled: err is
	// Prepare's error, or wraps ErrClosed when the queue stopped first, or
	// ErrDeadLetter when a durable queue gave up on it.
	Skipped(j Job, err error)
}

// Queue is the dispatch contract: [Memory] implements it, and so does the
// Redis Streams queue (package dispatch/streams). A queue is built without
// its Caller and Handler, which Run takes, so that whoever implements the
// Handler can enqueue before the queue runs.
type Queue interface {
	// Enqueue stores j for dialling, or returns ErrQueueFull or ErrClosed
	// (wrapped or not) without storing it. It never waits for a free slot.
	// It works before Run: the jobs wait for it.
	Enqueue(ctx context.Context, j Job) error
	// Run dispatches jobs, placing calls with c and reporting to h, until ctx
	// is done; then it stops taking jobs, lets the calls in progress end (for
	// at most the drain timeout, after which their context is cancelled so
	// they hang up) and returns once every call goroutine has returned. What
	// happens to queued jobs that were not dialled depends on the queue:
	// Memory reports them Skipped with ErrClosed, because they die with the
	// process; a durable queue leaves them for another node and reports
	// nothing. Run returns an error at once, without running, if c or h is
	// nil or if it was called before.
	Run(ctx context.Context, c Caller, h Handler) error
	// Stats is a snapshot of the counters, safe to call at any time, before,
	// during and after Run.
	Stats() Stats
}

// RateLimiter keeps calls-per-second budgets by key. TakeToken takes one
// token from the budget named key, which refills at rate tokens per second
// and holds at most burst; ok false means no token is free now and wait
// says how long until one will be (nothing was taken). It must be safe for
// concurrent use, and a done ctx must make it return an error. The memory
// and Redis stores' Counters implement it; every node sharing a budget must
// share its RateLimiter (the Redis one) and key.
type RateLimiter interface {
	TakeToken(ctx context.Context, key string, rate float64, burst int) (ok bool, wait time.Duration, err error)
}

// Stats is a snapshot of a queue's gauges and counters.
type Stats struct {
	// Queued is the number of jobs waiting now.
	Queued int
	// Active is the number of jobs being prepared or called now.
	Active int
	// Enqueued counts jobs accepted by Enqueue.
	Enqueued uint64
	// Rejected counts jobs refused by Enqueue with ErrQueueFull or ErrClosed.
	Rejected uint64
	// Dialled counts jobs handed to the Caller (each ends in one Finish).
	Dialled uint64
	// Skipped counts jobs reported to Handler.Skipped.
	Skipped uint64
	// DrainCanceled counts calls still in progress when the drain timeout
	// expired at shutdown, whose context was therefore cancelled.
	DrainCanceled uint64
	// HeldForCPU counts the times this node stopped starting calls because
	// the CPU load was above Config.MaxCPU (where the next job waited
	// meanwhile is the queue's: see [Source]). One count per hold, however
	// long.
	HeldForCPU uint64
	// HeldForCPUTime is the total time of those holds, the current one
	// included.
	HeldForCPUTime time.Duration
	// CPULoad is the load the sampler reports now (see [CPUSampler]); 0 when
	// MaxCPU is off.
	CPULoad float64
}

// Config sets the limits of a queue's runner. The zero value is usable.
type Config struct {
	// MaxConcurrent is the number of calls in progress at once on this node
	// (prepared or dialled). If zero or negative, 100 is used.
	MaxConcurrent int
	// CPS is the number of new calls per second, enforced by a token bucket
	// with a burst of 1: two calls never start closer than 1/CPS apart, even
	// after an idle period. The token is taken once a job has been taken,
	// never while idle, and a job that Prepare skips still spends its token,
	// so CPS bounds Prepare calls, which is what a trunk sees at most. If zero
	// or negative, 10 is used.
	CPS float64
	// Rate keeps the CPS budget, under RateKey, with a burst of 1. If nil, a
	// private budget of this process is used, on the queue's clock. Nodes
	// that must share one budget share a Rate (and RateKey). If Rate fails,
	// the error is logged and the token asked again every 250 ms; the job
	// keeps its call slot meanwhile.
	Rate RateLimiter
	// RateKey names the CPS budget in Rate. If empty, DefaultRateKey
	// ("calls") is used.
	RateKey string
	// QueueSize is the number of jobs that may wait; Enqueue beyond it returns
	// ErrQueueFull. If zero or negative, 10000 is used.
	QueueSize int
	// DrainTimeout is how long calls in progress may run on after Run's context
	// is done, before their context is cancelled. If zero or negative, 2
	// minutes is used.
	DrainTimeout time.Duration
	// MaxCPU is the CPU load (see [CPUSampler]: by default the process's CPU
	// time over wall time × GOMAXPROCS, or the machine's busy time with
	// CPUSource [CPUSystem]) above which no new call is started, so that an
	// overloaded node delays calls instead of garbling their audio. While the
	// load is above it the runner holds, with its call slot: the next job is
	// not taken further (it waits where its queue keeps it, is not prepared,
	// spends no token) and the load is looked at again every 250 ms. Dials
	// resume once the load is at most MaxCPU − 0.05, or MaxCPU/2 if that is
	// higher: the hysteresis keeps them from flapping around the threshold.
	// The load of the calls started within the last 2 s, which the sampler
	// does not show yet, is projected (at the cost per call learned from the
	// calls in progress), so a surge is let in a little at a time. Calls in
	// progress are never touched, and a job keeps its own expiry: a
	// verification that expired while held is skipped by Prepare, which comes
	// after the hold. If zero, negative or NaN, there is no CPU limit.
	MaxCPU float64
	// CPU measures the load compared with MaxCPU. If nil, the runner builds
	// the sampler CPUSource names and runs it for the time of its Run. Unused
	// when MaxCPU is off.
	CPU CPUSampler
	// CPUSource is what the queue's own sampler measures when CPU is nil:
	// [CPUProcess], this process's CPU time over the cores Go may use
	// ([ProcessCPU]), or [CPUSystem], the whole machine's busy time
	// ([SystemCPU]), for a node that shares its machine. If empty, CPUProcess
	// is used; any other value makes [NewRunner] (and so every queue's
	// constructor) panic, as that is a wiring mistake. Unused when MaxCPU is
	// off or CPU is set.
	CPUSource CPUSource
	// Logger receives one line per skipped job, per hold for CPU and per
	// shutdown; it never sees a code. If nil, logs are discarded.
	Logger *slog.Logger
}

// The defaults of Config.
const (
	DefaultMaxConcurrent = 100
	DefaultCPS           = 10
	DefaultQueueSize     = 10000
	DefaultDrainTimeout  = 2 * time.Minute
	DefaultRateKey       = "calls"
)

// WithDefaults returns c with every zero (or negative) field that has a
// documented default set to it, and a discarding Logger if Logger is nil.
// Rate, CPU and MaxCPU are left as they are: their zero values mean
// something (a private budget, the queue's own sampler, no CPU limit).
func (c Config) WithDefaults() Config {
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.CPS <= 0 {
		c.CPS = DefaultCPS
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.RateKey == "" {
		c.RateKey = DefaultRateKey
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
