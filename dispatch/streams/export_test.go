package streams

import "time"

// SetTokenHook makes q call f with Redis's time of each calls-per-second token it takes, so tests can
// check the shared budget by the limiter's own clock. Call it before Run.
func SetTokenHook(q *Queue, f func(at time.Time)) { q.onToken = f }
