package storetest

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// GuardCounters are the tallies and pauses of the Counters of a store, the part a conversion guard
// uses; declared here so that this package imports no implementation and no user of it.
type GuardCounters interface {
	Tally(ctx context.Context, key string, window time.Duration, add bool) (int, error)
	Pause(ctx context.Context, key string, d time.Duration) (newly bool, err error)
	Paused(ctx context.Context, key string) (time.Duration, error)
	Resume(ctx context.Context, key string) (wasPaused bool, err error)
}

// RunGuardCounters runs the contract of tallies and pauses, each check on fresh, empty counters from
// newCounters. No check lets time pass (the windows and pauses are long): what happens when a window
// or a pause runs out depends on the store's clock, and each store tests it with its own.
func RunGuardCounters(t *testing.T, newCounters func(t *testing.T) GuardCounters) {
	t.Helper()
	ctx := context.Background()
	t.Run("TallyCounts", func(t *testing.T) {
		g := newCounters(t)
		steps := []struct {
			name string
			key  string
			add  bool
			want int
		}{
			{"EmptyKey", "prefix:+1555", false, 0},
			{"First", "prefix:+1555", true, 1},
			{"Second", "prefix:+1555", true, 2},
			{"OnlyCountDoesNotAdd", "prefix:+1555", false, 2},
			{"OnlyCountAgain", "prefix:+1555", false, 2},
			{"Third", "prefix:+1555", true, 3},
			{"OtherKeyIsIndependent", "prefix:+1666", true, 1},
			{"FirstKeyUnchanged", "prefix:+1555", false, 3},
		}
		for _, st := range steps {
			n, err := g.Tally(ctx, st.key, time.Hour, st.add)
			if err != nil || n != st.want {
				t.Fatalf("%s: Tally(%s, add=%v) = %d, %v; want %d", st.name, st.key, st.add, n, err, st.want)
			}
		}
	})
	t.Run("ConcurrentTallyCountsEach", func(t *testing.T) {
		g := newCounters(t)
		const n = 16
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			got []int
		)
		for range n {
			wg.Go(func() {
				c, err := g.Tally(ctx, "prefix:+1555", time.Hour, true)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
				got = append(got, c)
			})
		}
		wg.Wait()
		// Each add is atomic: the counts returned are 1..n, each once.
		slices.Sort(got)
		want := make([]int, n)
		for i := range want {
			want[i] = i + 1
		}
		if !slices.Equal(got, want) {
			t.Errorf("%d concurrent adds returned %v, want 1..%d each once", n, got, n)
		}
		if c, err := g.Tally(ctx, "prefix:+1555", time.Hour, false); c != n || err != nil {
			t.Errorf("count after %d adds = %d, %v", n, c, err)
		}
	})
	t.Run("PauseOnce", func(t *testing.T) {
		g := newCounters(t)
		if newly, err := g.Pause(ctx, "prefix:+1555", time.Hour); !newly || err != nil {
			t.Fatalf("first Pause = %v, %v; want newly", newly, err)
		}
		if newly, err := g.Pause(ctx, "prefix:+1555", 2*time.Hour); newly || err != nil {
			t.Errorf("Pause while paused = %v, %v; want not newly", newly, err)
		}
		if left, err := g.Paused(ctx, "prefix:+1555"); left <= 59*time.Minute || left > time.Hour || err != nil {
			t.Errorf("Paused = %v, %v; want the first pause's hour, neither extended nor lost", left, err)
		}
		if newly, err := g.Pause(ctx, "prefix:+1666", time.Hour); !newly || err != nil {
			t.Errorf("Pause of another key = %v, %v; want newly", newly, err)
		}
	})
	t.Run("PausedThenResumed", func(t *testing.T) {
		g := newCounters(t)
		const key = "prefix:+1555"
		steps := []struct {
			name string
			do   func() (bool, error)
			want bool
			// paused is whether Paused must report time left after the step.
			paused bool
		}{
			{"ResumeUnpaused", func() (bool, error) { return g.Resume(ctx, key) }, false, false},
			{"Pause", func() (bool, error) { return g.Pause(ctx, key, time.Hour) }, true, true},
			{"Resume", func() (bool, error) { return g.Resume(ctx, key) }, true, false},
			{"ResumeAgain", func() (bool, error) { return g.Resume(ctx, key) }, false, false},
			{"PauseAfterResume", func() (bool, error) { return g.Pause(ctx, key, time.Hour) }, true, true},
		}
		for _, st := range steps {
			got, err := st.do()
			if err != nil || got != st.want {
				t.Fatalf("%s = %v, %v; want %v", st.name, got, err, st.want)
			}
			left, err := g.Paused(ctx, key)
			if err != nil || (left > 0) != st.paused || left > time.Hour {
				t.Fatalf("after %s: Paused = %v, %v; want paused %v", st.name, left, err, st.paused)
			}
		}
	})
	t.Run("ConcurrentPauseOneNewly", func(t *testing.T) {
		g := newCounters(t)
		var (
			wg   sync.WaitGroup
			wins atomic.Int32
		)
		for range 16 {
			wg.Go(func() {
				newly, err := g.Pause(ctx, "prefix:+1555", time.Hour)
				if err != nil {
					t.Error(err)
				} else if newly {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Errorf("%d of 16 concurrent Pauses were newly, want exactly 1", wins.Load())
		}
	})
	t.Run("RefusesBadArguments", func(t *testing.T) {
		g := newCounters(t)
		canceled, cancel := context.WithCancel(ctx)
		cancel()
		tests := []struct {
			name string
			call func() error
		}{
			{"TallyZeroWindow", func() error { _, err := g.Tally(ctx, "k", 0, true); return err }},
			{"TallyNegativeWindow", func() error { _, err := g.Tally(ctx, "k", -time.Second, false); return err }},
			{"PauseZero", func() error { _, err := g.Pause(ctx, "k", 0); return err }},
			{"PauseNegative", func() error { _, err := g.Pause(ctx, "k", -time.Second); return err }},
			{"TallyCanceled", func() error { _, err := g.Tally(canceled, "k", time.Hour, true); return err }},
			{"PauseCanceled", func() error { _, err := g.Pause(canceled, "k", time.Hour); return err }},
			{"PausedCanceled", func() error { _, err := g.Paused(canceled, "k"); return err }},
			{"ResumeCanceled", func() error { _, err := g.Resume(canceled, "k"); return err }},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if tc.call() == nil {
					t.Error("accepted")
				}
			})
		}
		// Nothing refused was recorded.
		if n, _ := g.Tally(ctx, "k", time.Hour, false); n != 0 {
			t.Errorf("refused tallies left %d events", n)
		}
		if left, _ := g.Paused(ctx, "k"); left != 0 {
			t.Errorf("refused pauses left the key paused for %v", left)
		}
	})
}
