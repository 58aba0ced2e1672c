// Package dispatchtest holds test doubles of package dispatch for the tests of the packages above it.
//
// It owns only the doubles; it is imported by _test.go files only.
package dispatchtest

import (
	"context"
	"sync"

	"github.com/voiceotp/voiceotp/dispatch"
)

// Recorder is a dispatch.Queue that records the jobs it is given and never runs them, so a test can
// play the queue's part (Prepare, Event, Finish, Skipped) by hand. It is safe for concurrent use.
type Recorder struct {
	mu   sync.Mutex // guards jobs and full
	jobs []dispatch.Job
	full bool
}

var _ dispatch.Queue = (*Recorder)(nil)

// Enqueue records j, or returns dispatch.ErrQueueFull after SetFull(true).
func (q *Recorder) Enqueue(_ context.Context, j dispatch.Job) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.full {
		return dispatch.ErrQueueFull
	}
	q.jobs = append(q.jobs, j)
	return nil
}

// Run places nothing; it returns nil when ctx is done.
func (q *Recorder) Run(ctx context.Context, _ dispatch.Caller, _ dispatch.Handler) error {
	<-ctx.Done()
	return nil
}

// Stats is zero.
func (q *Recorder) Stats() dispatch.Stats { return dispatch.Stats{} }

// SetFull makes Enqueue refuse (true) or record (false).
func (q *Recorder) SetFull(full bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.full = full
}

// Len returns the number of jobs recorded.
func (q *Recorder) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.jobs)
}

// Job returns the i-th job recorded, from 0.
func (q *Recorder) Job(i int) dispatch.Job {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.jobs[i]
}
