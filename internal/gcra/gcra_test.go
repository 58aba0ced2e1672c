package gcra

import (
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/internal/testclock"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestTake(t *testing.T) {
	type step struct {
		at       time.Duration // since t0
		wantOK   bool
		wantWait time.Duration
	}
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{"burst 1 spaces grants by 1/rate", 10, 1, []step{
			{0, true, 0}, {0, false, 100 * time.Millisecond}, {50 * time.Millisecond, false, 50 * time.Millisecond},
			{100 * time.Millisecond, true, 0}, {150 * time.Millisecond, false, 50 * time.Millisecond},
		}},
		{"burst 1 after idle still one at a time", 10, 1, []step{
			{0, true, 0}, {time.Hour, true, 0}, {time.Hour, false, 100 * time.Millisecond},
		}},
		{"burst below 1 counts as 1", 10, 0, []step{{0, true, 0}, {0, false, 100 * time.Millisecond}}},
		{"burst 3", 10, 3, []step{
			{0, true, 0}, {0, true, 0}, {0, true, 0}, {0, false, 100 * time.Millisecond},
			{100 * time.Millisecond, true, 0}, {100 * time.Millisecond, false, 100 * time.Millisecond},
		}},
		{"slow rate", 0.5, 1, []step{{0, true, 0}, {time.Second, false, time.Second}, {2 * time.Second, true, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tat time.Time
			for i, st := range tt.steps {
				next, ok, wait := Take(tat, t0.Add(st.at), tt.rate, tt.burst)
				if ok != st.wantOK || wait != st.wantWait {
					t.Fatalf("step %d at +%v: ok %v wait %v, want %v %v", i, st.at, ok, wait, st.wantOK, st.wantWait)
				}
				if !ok && !next.Equal(tat) && !tat.IsZero() {
					t.Fatalf("step %d: a refusal moved the TAT from %v to %v", i, tat, next)
				}
				if ok {
					tat = next
				}
			}
		})
	}
}

func TestInterval(t *testing.T) {
	tests := []struct {
		rate float64
		want time.Duration
	}{
		{1, time.Second},
		{1e12, time.Nanosecond},
		{1e-30, time.Duration(1<<63 - 1)},
	}
	for _, tt := range tests {
		if got := Interval(tt.rate); got != tt.want {
			t.Errorf("Interval(%v) = %v, want %v", tt.rate, got, tt.want)
		}
	}
}

func TestLimiterKeysAndSweep(t *testing.T) {
	c := testclock.New(t0)
	l := New(c.Now)
	for _, key := range []string{"global", "trunk:a", "trunk:b"} {
		if ok, _ := l.Take(key, 1, 1); !ok {
			t.Fatalf("first token of %s refused", key)
		}
	}
	if ok, wait := l.Take("global", 1, 1); ok || wait != time.Second {
		t.Fatalf("second token of global = %v, %v; want refused for 1s", ok, wait)
	}
	c.Advance(2 * sweepEvery)
	if ok, _ := l.Take("global", 1, 1); !ok {
		t.Fatal("a token after the budget refilled was refused")
	}
	l.mu.Lock()
	n := len(l.tat)
	l.mu.Unlock()
	if n != 1 {
		t.Errorf("%d budgets kept after a sweep, want only the one just used", n)
	}
}

func TestLimiterConcurrent(t *testing.T) {
	c := testclock.New(t0)
	l := New(c.Now)
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for range 50 {
		wg.Go(func() {
			if ok, _ := l.Take("k", 1, 5); ok {
				mu.Lock()
				granted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if granted != 5 {
		t.Errorf("%d tokens granted at one instant, want the burst of 5", granted)
	}
}
