package memory_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/internal/testclock"
	"github.com/voiceotp/voiceotp/store/memory"
)

// TestCountersTakeToken walks budgets on the store's clock: a burst of 1 spaces grants by 1/rate even
// after an idle period, a larger burst lets that many through at once, keys are independent, and bad
// arguments are refused.
func TestCountersTakeToken(t *testing.T) {
	c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	l := memory.NewCounters(memory.WithClock(c.Now))
	ctx := context.Background()
	steps := []struct {
		name     string
		key      string
		burst    int
		advance  time.Duration // before the step
		wantOK   bool
		wantWait time.Duration
	}{
		{"First", "calls", 1, 0, true, 0},
		{"TooSoon", "calls", 1, 0, false, 100 * time.Millisecond},
		{"OtherKey", "trunk:a", 1, 0, true, 0},
		{"StillTooSoon", "calls", 1, 60 * time.Millisecond, false, 40 * time.Millisecond},
		{"AfterInterval", "calls", 1, 40 * time.Millisecond, true, 0},
		{"AfterIdleOne", "calls", 1, time.Hour, true, 0},
		{"AfterIdleNotTwo", "calls", 1, 0, false, 100 * time.Millisecond},
		{"Burst3a", "burst", 3, 0, true, 0},
		{"Burst3b", "burst", 3, 0, true, 0},
		{"Burst3c", "burst", 3, 0, true, 0},
		{"Burst3Exhausted", "burst", 3, 0, false, 100 * time.Millisecond},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			c.Set(c.Now().Add(st.advance))
			ok, wait, err := l.TakeToken(ctx, st.key, 10, st.burst)
			if err != nil || ok != st.wantOK || wait != st.wantWait {
				t.Fatalf("TakeToken(%s) = %v, %v, %v; want %v, %v", st.key, ok, wait, err, st.wantOK, st.wantWait)
			}
		})
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for name, call := range map[string]func() error{
		"ZeroRate":    func() error { _, _, err := l.TakeToken(ctx, "k", 0, 1); return err },
		"NegRate":     func() error { _, _, err := l.TakeToken(ctx, "k", -1, 1); return err },
		"ContextDone": func() error { _, _, err := l.TakeToken(canceled, "k", 1, 1); return err },
	} {
		t.Run(name, func(t *testing.T) {
			if call() == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestCountersLiveCall(t *testing.T) {
	c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	l := memory.NewCounters(memory.WithClock(c.Now))
	ctx := context.Background()
	const n = "+15550001111"
	steps := []struct {
		name    string
		do      func() (bool, error)
		want    bool
		holder  string
		advance time.Duration
	}{
		{"AFirst", func() (bool, error) { return l.AcquireNumber(ctx, n, "a", time.Minute) }, true, "a", 0},
		{"BRefused", func() (bool, error) { return l.AcquireNumber(ctx, n, "b", time.Minute) }, false, "a", 0},
		{"ARenews", func() (bool, error) { return l.AcquireNumber(ctx, n, "a", time.Minute) }, true, "a", 0},
		{"BReleaseIsANoop", func() (bool, error) { return false, l.ReleaseNumber(ctx, n, "b") }, false, "a", 0},
		{"AReleases", func() (bool, error) { return false, l.ReleaseNumber(ctx, n, "a") }, false, "", 0},
		{"BTakesIt", func() (bool, error) { return l.AcquireNumber(ctx, n, "b", time.Minute) }, true, "b", time.Minute},
		{"AAfterBExpired", func() (bool, error) { return l.AcquireNumber(ctx, n, "a", time.Minute) }, true, "a", 0},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			ok, err := st.do()
			if err != nil || ok != st.want {
				t.Fatalf("= %v, %v; want %v", ok, err, st.want)
			}
			if h, _, _ := l.NumberHolder(ctx, n); h != st.holder {
				t.Errorf("holder %q, want %q", h, st.holder)
			}
			c.Set(c.Now().Add(st.advance))
		})
	}
}

func TestCountersCountSlides(t *testing.T) {
	c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	l := memory.NewCounters(memory.WithClock(c.Now))
	ctx := context.Background()
	for i := range 3 {
		if ok, _, err := l.Count(ctx, "+1555", time.Hour, 3); !ok || err != nil {
			t.Fatalf("send %d refused: %v", i, err)
		}
		c.Set(c.Now().Add(10 * time.Minute))
	}
	ok, wait, err := l.Count(ctx, "+1555", time.Hour, 3)
	if ok || err != nil || wait != 30*time.Minute {
		t.Fatalf("fourth send = %v, %v, %v; want refused for 30m", ok, wait, err)
	}
	if ok, _, _ := l.Count(ctx, "+1666", time.Hour, 3); !ok {
		t.Error("another number was refused")
	}
	c.Set(c.Now().Add(30 * time.Minute))
	if ok, _, _ := l.Count(ctx, "+1555", time.Hour, 3); !ok {
		t.Error("a send once the oldest left the window was refused")
	}
}

func TestCountersAcquireRace(t *testing.T) {
	l := memory.NewCounters()
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range 20 {
		wg.Go(func() {
			ok, _ := l.AcquireNumber(context.Background(), "+1555", string(rune('a'+i)), time.Minute)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				won++
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("%d holders, want 1", won)
	}
}
