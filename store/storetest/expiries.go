package storetest

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Expiries is the index of expiry times that calls.Expiries names; declared here so that this package
// imports no implementation and no user of it.
type Expiries interface {
	Add(ctx context.Context, id string, at time.Time) error
	Due(ctx context.Context, now time.Time, n int) ([]string, error)
	Take(ctx context.Context, id string) (bool, error)
}

// RunExpiries runs the contract of an expiry index, each check on a fresh, empty index from newIndex.
func RunExpiries(t *testing.T, newIndex func(t *testing.T) Expiries) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Unix(1_900_000_000, 0)
	t.Run("DueInOrderAndBounded", func(t *testing.T) {
		e := newIndex(t)
		for i, id := range []string{"VEc", "VEa", "VEb", "VElater"} {
			at := t0.Add(time.Duration([]int{3, 1, 2, 60}[i]) * time.Second)
			if err := e.Add(ctx, id, at); err != nil {
				t.Fatal(err)
			}
		}
		got, err := e.Due(ctx, t0.Add(10*time.Second), 10)
		if err != nil || !slices.Equal(got, []string{"VEa", "VEb", "VEc"}) {
			t.Fatalf("Due = %v, %v; want [VEa VEb VEc]", got, err)
		}
		if got, _ := e.Due(ctx, t0.Add(10*time.Second), 2); !slices.Equal(got, []string{"VEa", "VEb"}) {
			t.Errorf("Due(n=2) = %v, want the earliest two", got)
		}
		if got, _ := e.Due(ctx, t0, 10); len(got) != 0 {
			t.Errorf("Due before any expiry = %v, want none", got)
		}
	})
	t.Run("TakeRemovesOnce", func(t *testing.T) {
		e := newIndex(t)
		if err := e.Add(ctx, "VEx", t0); err != nil {
			t.Fatal(err)
		}
		if ok, err := e.Take(ctx, "VEx"); !ok || err != nil {
			t.Fatalf("first Take = %v, %v; want true", ok, err)
		}
		if ok, err := e.Take(ctx, "VEx"); ok || err != nil {
			t.Errorf("second Take = %v, %v; want false", ok, err)
		}
		if got, _ := e.Due(ctx, t0.Add(time.Hour), 10); len(got) != 0 {
			t.Errorf("Due after Take = %v, want none", got)
		}
	})
	t.Run("ConcurrentTakeOneWinner", func(t *testing.T) {
		e := newIndex(t)
		if err := e.Add(ctx, "VEy", t0); err != nil {
			t.Fatal(err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if ok, err := e.Take(ctx, "VEy"); ok && err == nil {
					wins.Add(1)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Errorf("%d Takes won, want exactly 1", wins.Load())
		}
	})
	t.Run("LatestAddWins", func(t *testing.T) {
		e := newIndex(t)
		_ = e.Add(ctx, "VEz", t0)
		_ = e.Add(ctx, "VEz", t0.Add(time.Hour))
		if got, _ := e.Due(ctx, t0.Add(time.Minute), 10); len(got) != 0 {
			t.Errorf("Due = %v after the expiry moved later, want none", got)
		}
	})
}
