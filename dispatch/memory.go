package dispatch

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
)

// Memory is the in-process queue: a bounded buffer of jobs, run by a
// [Runner] within the limits of its [Config]. Jobs live only in this
// process: when Run stops, jobs that were queued but not dialled are
// reported Skipped with ErrClosed, and a crash loses them. For several
// nodes or jobs that survive a crash, use the Redis Streams queue.
//
// A job held for CPU keeps its place: it has been taken from the buffer but
// still counts as Queued, and is not prepared until the load lets it start.
// Without Config.Rate the calls-per-second budget is private to the queue.
//
// Enqueue and Stats are safe for concurrent use, before, during and after
// Run. Run may be called once.
type Memory struct {
	r     *Runner
	queue chan Job // capacity QueueSize; sent to only with mu held

	// mu guards closed and every send on queue, so that no job enters the
	// queue after Run has drained it for the last time.
	mu     sync.Mutex
	closed bool

	queued atomic.Int64 // jobs in queue, or taken and held for CPU
}

var _ Queue = (*Memory)(nil)

// NewMemory returns an in-process queue with the limits of cfg, whose zero
// fields take their documented defaults. It panics if cfg.CPUSource is
// unknown, as that is a wiring mistake.
func NewMemory(cfg Config) *Memory {
	return newMemory(cfg, realClock{})
}

func newMemory(cfg Config, clk clock) *Memory {
	r := newRunner(cfg, SkipUndialled, clk)
	return &Memory{r: r, queue: make(chan Job, r.cfg.QueueSize)}
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
		j.EnqueuedAt = m.r.clock.Now()
	}
	err := m.enqueue(j)
	m.r.CountEnqueue(err)
	return err
}

func (m *Memory) enqueue(j Job) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.queued.Add(1)
	select {
	case m.queue <- j:
		return nil
	default:
		m.queued.Add(-1)
		return ErrQueueFull
	}
}

// Run dispatches jobs, placing calls with c and reporting to h, until ctx is
// done; see [Runner] for the life of a job. Memory's jobs die with it, so its
// Runner skips undialled jobs at shutdown ([SkipUndialled]): when ctx is done
// Run stops taking jobs, and queued jobs, a job held for CPU or waiting for
// its token, and jobs whose Prepare returns after that point are reported to
// [Handler.Skipped] with ErrClosed and never dialled. Calls already dialled
// run on, with a context that is not ctx, for up to DrainTimeout; then their
// context is cancelled so they hang up. Run returns once every call
// goroutine has returned and every job has been reported; after that Enqueue
// returns ErrClosed. Run returns nil, or an error at once if c or h is nil or
// if it was called before.
func (m *Memory) Run(ctx context.Context, c Caller, h Handler) error {
	return m.r.Run(ctx, c, h, memorySource{m})
}

// Stats returns a snapshot of the counters. It is safe for concurrent use.
func (m *Memory) Stats() Stats {
	return m.r.Stats(int(m.queued.Load()))
}

// memorySource is Memory's [Source]: the buffered channel.
type memorySource struct{ m *Memory }

// Take takes the next job, then holds it for CPU: a held job keeps its
// place and counts as queued until it is let through.
func (s memorySource) Take(ctx context.Context, hold func(context.Context) error) (Delivery, bool) {
	select {
	case j := <-s.m.queue:
		// If ctx ends during the hold, the Runner finds it done and reports
		// the job Skipped with ErrClosed, before the jobs behind it.
		_ = hold(ctx)
		s.m.queued.Add(-1)
		return Delivery{Job: j}, true
	case <-ctx.Done():
		return Delivery{}, false
	}
}

// Stopped closes the queue and reports what is left in it.
func (s memorySource) Stopped() {
	m := s.m
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	left := 0
	for empty := false; !empty; {
		select {
		case j := <-m.queue:
			m.queued.Add(-1)
			left++
			m.r.Skip(j, ErrClosed)
		default:
			empty = true
		}
	}
	m.r.cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo, "dispatch: queue closed",
		slog.Int("skipped_queued", left))
}

// Maintain has nothing to do: a job in memory needs no lease.
func (memorySource) Maintain(context.Context) {}
