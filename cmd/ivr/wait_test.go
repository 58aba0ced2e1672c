package main

import (
	"testing"
	"time"
)

// eventuallyTick is how often eventually tries its condition again.
const eventuallyTick = 50 * time.Millisecond

// eventually polls cond every 50 ms until it returns nil, and fails the test
// if it has not within the given time, with what (the condition waited for,
// "the call of v_1 to end") and cond's last error. It is for conditions that
// nothing signals to the test; the caller says in a comment what it polls.
// Prefer a channel, a process exit or a report where one exists.
func eventually(t testing.TB, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(eventuallyTick)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("waiting for %s: not within %v; last: %v", what, within, err)
		}
	}
}
