package memory

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/internal/testclock"
)

// TestCountersSweepGuard checks that tallies and pauses of keys never touched again are dropped by
// the sweep, so that memory stays bounded by the keys in use.
func TestCountersSweepGuard(t *testing.T) {
	c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	l := NewCounters(WithClock(c.Now))
	ctx := context.Background()
	for i := range 100 {
		key := fmt.Sprintf("prefix:+1555%03d", i)
		if _, err := l.Tally(ctx, key, time.Minute, true); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Pause(ctx, key, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(max(time.Minute, DefaultSweepInterval))
	// Any write past the sweep interval sweeps; this one leaves one tally behind.
	if _, err := l.Tally(ctx, "prefix:+1666", time.Minute, true); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.tallies) != 1 || len(l.pauses) != 0 {
		t.Errorf("after the sweep: %d tallies, %d pauses; want 1 and 0", len(l.tallies), len(l.pauses))
	}
}
