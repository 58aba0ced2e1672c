// Package dispatch is the call queue and scheduler: it decides when each
// queued call is placed, so that a node never has more than a set number of
// calls in progress, nor starts more than a set number per second, nor starts
// one while its CPU is above a set load.
//
// It owns the queue of [Job]s, the concurrency limit, the calls-per-second
// budget, the admission by CPU load ([Config.MaxCPU], measured by a
// [CPUSampler]), and the shutdown drain. It does not own what a call does
// (package callflow, reached through [Caller]), nor the verification a call
// belongs to: it never sees a code until the moment of dialling, when it asks
// the [Handler] for the [callflow.Request], and it never stores, checks or
// logs one. It knows no HTTP and no storage.
//
// [Memory] is the in-process queue, the default for a single node. A durable
// queue (Redis Streams with a consumer group, so that several nodes share the
// work and a dead node's jobs are reclaimed) implements the same [Queue]
// contract with the same [Handler] and [Caller].
//
// The life of a job: [Queue.Enqueue] stores it; the dispatcher waits for a
// free call slot, takes the job, waits while the CPU load is above MaxCPU,
// waits for a calls-per-second token, and only then calls [Handler.Prepare],
// so a verification that expired or was cancelled while its job waited is
// never dialled. A prepared job is handed to the [Caller] on its own
// goroutine; its events go to [Handler.Event] and its result to
// [Handler.Finish]. A job that is not dialled goes to [Handler.Skipped]. Each
// job ends in exactly one Finish or one Skipped on the node that took it.
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
	// ErrQueueFull is returned by Enqueue when QueueSize jobs are waiting. The
	// api answers it with 503 and Retry-After; nothing was queued.
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
// it to the Handler, and frees its call slot meanwhile. The api defers a
// job whose call was claimed by a node that stopped, until that call cannot
// be live any more. [Memory] never delivers a job twice and treats Deferred
// like any other Prepare error: the job is Skipped.
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
	// CallID names this call within its verification (the api's call record,
	// not the SIP Call-ID, which exists only once the INVITE has left).
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
// an answered one): the dispatcher relies on it to bound its shutdown.
// onEvent is called serially for each event of the call.
type Caller interface {
	Run(ctx context.Context, req callflow.Request, onEvent func(callflow.Event)) *callflow.Result
}

var _ Caller = (*callflow.Runner)(nil)

// Handler connects jobs to the verification domain; the api implements it.
//
// Its methods are called from the dispatcher's goroutines, concurrently for
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
	// look again later), so that no job is ever dialled twice. ctx is done when the queue is shutting down; Run
	// waits for Prepare to return, so it must return promptly then. Prepare's
	// errors are logged, so they must never hold a code.
	Prepare(ctx context.Context, j Job) (callflow.Request, error)
	// Event reports one event of a dialled call, in order, before Finish. It is
	// called from a goroutine the call owns, never concurrently for one job.
	Event(j Job, e callflow.Event)
	// Finish reports the result of a dialled call, exactly once per dialled job.
	// r is never nil and is the handler's to keep.
	Finish(j Job, r *callflow.Result)
	// Skipped reports, exactly once, a job that was not dialled: err is
	// Prepare's error, or wraps ErrClosed when the queue stopped first.
	Skipped(j Job, err error)
}

// Queue is the dispatch contract: [Memory] implements it, and so will the
// Redis Streams queue. The api depends on this, not on a concrete queue.
type Queue interface {
	// Enqueue stores j for dialling, or returns ErrQueueFull or ErrClosed
	// (wrapped or not) without storing it. It never waits for a free slot.
	Enqueue(ctx context.Context, j Job) error
	// Run dispatches jobs until ctx is done, then stops taking jobs, lets the
	// calls in progress end (for at most the drain timeout, after which their
	// context is cancelled so they hang up) and returns once every call
	// goroutine has returned. What happens to queued jobs that were not
	// dialled depends on the queue: Memory reports them Skipped with
	// ErrClosed, because they die with the process; a durable queue leaves
	// them for another node and reports nothing.
	Run(ctx context.Context) error
	// Stats is a snapshot of the counters, safe to call at any time.
	Stats() Stats
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
	// the CPU load was above Config.MaxCPU: in [Memory], the job next in line
	// waited; in the Redis Streams queue, the node stopped reading jobs and
	// left them to the other nodes. One count per hold, however long.
	HeldForCPU uint64
	// HeldForCPUTime is the total time of those holds, the current one
	// included.
	HeldForCPUTime time.Duration
	// CPULoad is the load the sampler reports now (see [CPUSampler]); 0 when
	// MaxCPU is off.
	CPULoad float64
}

// Config sets the limits of a dispatcher. The zero value is usable.
type Config struct {
	// MaxConcurrent is the number of calls in progress at once on this node
	// (prepared or dialled). If zero or negative, 100 is used.
	MaxConcurrent int
	// CPS is the number of new calls per second, enforced by a token bucket
	// with a burst of 1: two calls never start closer than 1/CPS apart, even
	// after an idle period. A job that Prepare skips still spends its token,
	// so CPS bounds Prepare calls, which is what a trunk sees at most. If zero
	// or negative, 10 is used.
	CPS float64
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
	// load is above it the dispatcher holds, with its call slot: the next job
	// is not taken further (it stays queued, is not prepared, spends no token)
	// and the load is looked at again every 250 ms. Dials resume once the load
	// is at most MaxCPU − 0.05, or MaxCPU/2 if that is higher: the hysteresis
	// keeps them from flapping around the threshold. Calls in progress are
	// never touched, and a job keeps its own expiry: a verification that
	// expired while held is skipped by Prepare, which comes after the hold.
	// If zero, negative or NaN, there is no CPU limit.
	MaxCPU float64
	// CPU measures the load compared with MaxCPU. If nil, the queue builds
	// the sampler CPUSource names and runs it for the time of its Run. Unused
	// when MaxCPU is off.
	CPU CPUSampler
	// CPUSource is what the queue's own sampler measures when CPU is nil:
	// [CPUProcess], this process's CPU time over the cores Go may use
	// ([ProcessCPU]), or [CPUSystem], the whole machine's busy time
	// ([SystemCPU]), for a node that shares its machine. If empty, CPUProcess
	// is used; any other value makes NewMemory and streams.New panic, as that
	// is a wiring mistake. Unused when MaxCPU is off or CPU is set.
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
)

func (c Config) withDefaults() Config {
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
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// clock is the time source of a dispatcher; tests inject a fake one.
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
