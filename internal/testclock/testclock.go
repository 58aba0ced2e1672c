// Package testclock is a settable clock for tests: what a package under test takes as its
// `now func() time.Time` (pass Clock.Now), moved by the test.
//
// It owns only the clock; it is imported by _test.go files only.
package testclock

import (
	"sync"
	"time"
)

// Clock is a settable time, safe for concurrent use. It moves only when the test moves it.
type Clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

// New returns a clock that reads t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}
