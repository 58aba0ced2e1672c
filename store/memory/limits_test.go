package memory_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/store/memory"
)

func TestLimitsLiveCall(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	l := memory.NewLimits(memory.WithClock(c.now))
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
			c.set(c.now().Add(st.advance))
		})
	}
}

func TestLimitsCountSendSlides(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	l := memory.NewLimits(memory.WithClock(c.now))
	ctx := context.Background()
	for i := range 3 {
		if ok, _, err := l.CountSend(ctx, "+1555", time.Hour, 3); !ok || err != nil {
			t.Fatalf("send %d refused: %v", i, err)
		}
		c.set(c.now().Add(10 * time.Minute))
	}
	ok, wait, err := l.CountSend(ctx, "+1555", time.Hour, 3)
	if ok || err != nil || wait != 30*time.Minute {
		t.Fatalf("fourth send = %v, %v, %v; want refused for 30m", ok, wait, err)
	}
	if ok, _, _ := l.CountSend(ctx, "+1666", time.Hour, 3); !ok {
		t.Error("another number was refused")
	}
	c.set(c.now().Add(30 * time.Minute))
	if ok, _, _ := l.CountSend(ctx, "+1555", time.Hour, 3); !ok {
		t.Error("a send once the oldest left the window was refused")
	}
}

func TestLimitsAcquireRace(t *testing.T) {
	l := memory.NewLimits()
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
