package media

import (
	"context"
	"time"
)

// Clock is the time source of a [Sender] or [Receiver]. Tests inject a fake one; nil in a config means
// the real clock. A Clock is used by one Run goroutine at a time.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// SleepUntil blocks until t, returning nil, or returns at once if t is not in the future. It returns
	// ctx.Err() as soon as ctx is done.
	SleepUntil(ctx context.Context, t time.Time) error
}

// timerClock is the real clock. It reuses one time.Timer so that SleepUntil allocates nothing per call,
// and is therefore not safe for concurrent use: each Run makes its own.
type timerClock struct {
	timer *time.Timer
}

func (c *timerClock) Now() time.Time { return time.Now() }

func (c *timerClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		// Since Go 1.23 Reset on an expired or stopped timer leaves no stale tick in C.
		c.timer.Reset(d)
	}
	select {
	case <-ctx.Done():
		c.timer.Stop()
		return ctx.Err()
	case <-c.timer.C:
		return nil
	}
}
