package memory_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/internal/testclock"
	"github.com/voiceotp/voiceotp/store/memory"
	"github.com/voiceotp/voiceotp/store/storetest"
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

func TestCountersGuardContract(t *testing.T) {
	storetest.RunGuardCounters(t, func(t *testing.T) storetest.GuardCounters { return memory.NewCounters() })
}

// TestCountersTallySlides walks a tally on the store's clock: an event counts for exactly window after
// it, so events leave one by one, and counting only (add false) adds nothing.
func TestCountersTallySlides(t *testing.T) {
	c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	l := memory.NewCounters(memory.WithClock(c.Now))
	ctx := context.Background()
	steps := []struct {
		name    string
		advance time.Duration // before the step
		add     bool
		want    int
	}{
		{"At0", 0, true, 1},
		{"At10m", 10 * time.Minute, true, 2},
		{"At20m", 10 * time.Minute, true, 3},
		{"CountAt59m", 39 * time.Minute, false, 3},
		{"CountAtFirstPlusWindow", time.Minute, false, 2}, // the first event, 1h old, has left
		{"AddAt1h", 0, true, 3},
		{"CountAt1h10m", 10 * time.Minute, false, 2},
		{"CountAt2h", 50 * time.Minute, false, 0},
		{"CountAfterIdle", 24 * time.Hour, false, 0},
		{"AddAfterIdle", 0, true, 1},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			c.Advance(st.advance)
			n, err := l.Tally(ctx, "prefix:+1555", time.Hour, st.add)
			if err != nil || n != st.want {
				t.Fatalf("Tally(add=%v) = %d, %v; want %d", st.add, n, err, st.want)
			}
		})
	}
}

// TestCountersPauseExpires checks that a pause ends after d on the store's clock: Paused counts down
// to 0, Resume then finds nothing to lift, and the key can be paused newly again.
func TestCountersPauseExpires(t *testing.T) {
	c := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	l := memory.NewCounters(memory.WithClock(c.Now))
	ctx := context.Background()
	const key = "prefix:+1555"
	if newly, err := l.Pause(ctx, key, 30*time.Minute); !newly || err != nil {
		t.Fatalf("Pause = %v, %v", newly, err)
	}
	c.Advance(20 * time.Minute)
	if left, err := l.Paused(ctx, key); left != 10*time.Minute || err != nil {
		t.Fatalf("Paused after 20m = %v, %v; want 10m", left, err)
	}
	if newly, _ := l.Pause(ctx, key, time.Hour); newly {
		t.Fatal("Pause while paused was newly")
	}
	if left, _ := l.Paused(ctx, key); left != 10*time.Minute {
		t.Fatalf("a second Pause moved the end: %v left, want 10m", left)
	}
	c.Advance(10 * time.Minute)
	if left, err := l.Paused(ctx, key); left != 0 || err != nil {
		t.Fatalf("Paused at its end = %v, %v; want 0", left, err)
	}
	if was, err := l.Resume(ctx, key); was || err != nil {
		t.Fatalf("Resume of an ended pause = %v, %v; want false", was, err)
	}
	if newly, err := l.Pause(ctx, key, time.Minute); !newly || err != nil {
		t.Fatalf("Pause after the end = %v, %v; want newly", newly, err)
	}
}
