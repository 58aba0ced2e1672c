package memory

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Expiries is an index of verifications by expiry time for one process: a map under a mutex. Due scans
// every entry, which is cheap at the sizes one process holds (the verifications within their TTL). It
// is safe for concurrent use, and Take gives an id to exactly one caller.
type Expiries struct {
	mu sync.Mutex // guards at
	at map[string]time.Time
}

// NewExpiries returns an empty index.
func NewExpiries() *Expiries { return &Expiries{at: map[string]time.Time{}} }

// Add records that verification id expires at at (again: the latest Add wins).
func (e *Expiries) Add(ctx context.Context, id string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.at[id] = at
	return nil
}

// Due returns up to n ids whose expiry is at or before now, earliest first; they stay until taken.
func (e *Expiries) Due(ctx context.Context, now time.Time, n int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	type due struct {
		id string
		at time.Time
	}
	var ds []due
	for id, at := range e.at {
		if !at.After(now) {
			ds = append(ds, due{id, at})
		}
	}
	e.mu.Unlock()
	slices.SortFunc(ds, func(a, b due) int { return a.at.Compare(b.at) })
	out := make([]string, 0, min(n, len(ds)))
	for _, d := range ds[:min(n, len(ds))] {
		out = append(out, d.id)
	}
	return out, nil
}

// Take removes id and reports whether this call removed it.
func (e *Expiries) Take(ctx context.Context, id string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.at[id]
	delete(e.at, id)
	return ok, nil
}

// Len returns the number of ids in the index.
func (e *Expiries) Len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.at)
}
