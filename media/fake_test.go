package media

import (
	"context"
	"sync"
	"time"
)

// fakeClock is a hand-driven Clock that records every SleepUntil deadline.
//
// SleepUntil never blocks: it moves now to the deadline (if that is later), then adds lag(i) for the
// i-th sleep to simulate a late wake-up, then runs onSleep(i). step, if set, is added on every Now call
// so a Receiver sees time pass without the test touching the clock.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	step    time.Duration
	lag     func(i int) time.Duration
	onSleep func(i int)
	sleeps  []time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	i := len(c.sleeps)
	c.sleeps = append(c.sleeps, t)
	if t.After(c.now) {
		c.now = t
	}
	if c.lag != nil {
		c.now = c.now.Add(c.lag(i))
	}
	onSleep := c.onSleep
	c.mu.Unlock()
	if onSleep != nil {
		onSleep(i)
	}
	return ctx.Err()
}

func (c *fakeClock) deadlines() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.sleeps...)
}
