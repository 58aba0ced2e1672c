package redis_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/store/redis"
	"github.com/voiceotp/voiceotp/store/redis/redistest"
	"github.com/voiceotp/voiceotp/store/storetest"
)

func TestAcquireNumber(t *testing.T) {
	// Steps run in order on one number, over two nodes.
	steps := []struct {
		name    string
		node    int
		release bool
		holder  string
		wantOK  bool
	}{
		{"AFirst", 0, false, "CA-a", true},
		{"BRefused", 1, false, "CA-b", false},
		{"ARenews", 0, false, "CA-a", true},
		{"BReleaseDoesNotFreeIt", 1, true, "CA-b", false},
		{"BStillRefused", 1, false, "CA-b", false},
		{"AReleases", 0, true, "CA-a", false},
		{"BAfterRelease", 1, false, "CA-b", true},
		{"ARefusedNow", 0, false, "CA-a", false},
	}
	nodes := []*redis.Counters{redis.NewCounters(fresh(t)), redis.NewCounters(srv.Client(t))}
	ctx := context.Background()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			l := nodes[st.node]
			if st.release {
				if err := l.ReleaseNumber(ctx, "+15550001111", st.holder); err != nil {
					t.Fatal(err)
				}
				return
			}
			ok, err := l.AcquireNumber(ctx, "+15550001111", st.holder, time.Minute)
			if err != nil || ok != st.wantOK {
				t.Fatalf("AcquireNumber(%s) = %v, %v; want %v", st.holder, ok, err, st.wantOK)
			}
		})
	}
	t.Run("OtherNumberIsFree", func(t *testing.T) {
		if ok, err := nodes[0].AcquireNumber(ctx, "+15550002222", "CA-a", time.Minute); err != nil || !ok {
			t.Fatalf("AcquireNumber = %v, %v", ok, err)
		}
	})
}

func TestAcquireNumberExpires(t *testing.T) {
	l := redis.NewCounters(fresh(t))
	ctx := context.Background()
	if ok, err := l.AcquireNumber(ctx, "+15550001111", "dead-node-call", 50*time.Millisecond); err != nil || !ok {
		t.Fatalf("AcquireNumber = %v, %v", ok, err)
	}
	// The TTL runs on Redis's clock, so poll until the slot is free; the deadline only turns a hang into
	// a failure.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := l.AcquireNumber(ctx, "+15550001111", "CA-b", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a slot with a 50ms ttl was still held after 5s")
		}
		time.Sleep(10 * time.Millisecond) // the poll's pace
	}
}

func TestAcquireNumberRace(t *testing.T) {
	nodes := []*redis.Counters{redis.NewCounters(fresh(t)), redis.NewCounters(srv.Client(t))}
	const n = 20
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range n {
		wg.Go(func() {
			ok, err := nodes[i%2].AcquireNumber(context.Background(), "+15550001111", fmt.Sprintf("CA%d", i), time.Minute)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
			} else if ok {
				wins++
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d holders raced for one number: %d got it, want 1", n, wins)
	}
}

func TestCount(t *testing.T) {
	tests := []struct {
		name     string
		limit    int
		sends    int
		wantOK   int
		parallel bool
	}{
		{"UnderLimit", 3, 2, 2, false},
		{"AtLimit", 3, 3, 3, false},
		{"OverLimit", 3, 5, 3, false},
		{"ConcurrentOverTwoNodes", 5, 40, 5, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nodes := []*redis.Counters{redis.NewCounters(fresh(t)), redis.NewCounters(srv.Client(t))}
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				ok      int
				refusal []time.Duration
			)
			send := func(i int) {
				allowed, retry, err := nodes[i%2].Count(context.Background(), "+15550001111", time.Hour, tc.limit)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Error(err)
				case allowed:
					ok++
					if retry != 0 {
						t.Errorf("allowed with retryAfter %v", retry)
					}
				default:
					refusal = append(refusal, retry)
				}
			}
			for i := range tc.sends {
				if tc.parallel {
					wg.Go(func() { send(i) })
				} else {
					send(i)
				}
			}
			wg.Wait()
			if ok != tc.wantOK {
				t.Errorf("%d sends with limit %d: %d allowed, want %d", tc.sends, tc.limit, ok, tc.wantOK)
			}
			for _, r := range refusal {
				if r <= 0 || r > time.Hour {
					t.Errorf("refused with retryAfter %v, want within (0, 1h]", r)
				}
			}
			// Another number has its own count.
			if allowed, _, err := nodes[0].Count(context.Background(), "+15550002222", time.Hour, tc.limit); err != nil || !allowed {
				t.Errorf("another number: %v, %v", allowed, err)
			}
		})
	}
}

func TestCountWindowSlides(t *testing.T) {
	l := redis.NewCounters(fresh(t))
	ctx := context.Background()
	const window = 300 * time.Millisecond
	for i := range 2 {
		if ok, _, err := l.Count(ctx, "+15550001111", window, 2); err != nil || !ok {
			t.Fatalf("send %d: %v, %v", i, ok, err)
		}
	}
	ok, retry, err := l.Count(ctx, "+15550001111", window, 2)
	if err != nil || ok || retry <= 0 || retry > window {
		t.Fatalf("third send = %v, %v, %v; want refused with retryAfter in (0, %v]", ok, retry, err, window)
	}
	// Waiting out retryAfter is the point of the test: real time must pass on Redis's clock for the
	// oldest send to leave the window, and retryAfter is the limiter's own word for how much.
	time.Sleep(retry)
	if ok, retry, err := l.Count(ctx, "+15550001111", window, 2); err != nil || !ok {
		t.Fatalf("after waiting retryAfter: %v, %v, %v; want allowed", ok, retry, err)
	}
}

func TestCountersRefuseBadArguments(t *testing.T) {
	l := redis.NewCounters(fresh(t))
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
	}{
		{"AcquireZeroTTL", func() error { _, err := l.AcquireNumber(ctx, "+1555", "h", 0); return err }},
		{"AcquireNoHolder", func() error { _, err := l.AcquireNumber(ctx, "+1555", "", time.Second); return err }},
		{"CountZeroWindow", func() error { _, _, err := l.Count(ctx, "+1555", 0, 1); return err }},
		{"CountZeroLimit", func() error { _, _, err := l.Count(ctx, "+1555", time.Second, 0); return err }},
		{"TokenZeroRate", func() error { _, _, err := l.TakeToken(ctx, "k", 0, 1); return err }},
		{"TokenNaNRate", func() error { _, _, err := l.TakeToken(ctx, "k", nan(), 1); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.call() == nil {
				t.Error("accepted")
			}
		})
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

// TestTakeTokenShared has two nodes with several goroutines each draw from one budget, and checks the
// budget by the limiter's own (Redis) timestamps, not by how fast the test ran: no span of time holds
// more grants than burst + rate × span.
func TestTakeTokenShared(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		burst int
		n     int
	}{
		{"Burst1", 50, 1, 30},
		{"Burst4", 40, 4, 30},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nodes := []*redis.Counters{redis.NewCounters(fresh(t)), redis.NewCounters(srv.Client(t))}
			ctx := context.Background()
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				granted []time.Time
			)
			for w := range 6 {
				wg.Go(func() {
					for {
						mu.Lock()
						enough := len(granted) >= tc.n
						mu.Unlock()
						if enough {
							return
						}
						ok, wait, at, err := nodes[w%2].TakeTokenAt(ctx, "trunk-1", tc.rate, tc.burst)
						if err != nil {
							t.Error(err)
							return
						}
						if !ok {
							if wait <= 0 {
								t.Errorf("refused with wait %v", wait)
								return
							}
							// A client obeying the limiter: the budget refills on Redis's clock, and
							// wait is the limiter's own word for when.
							time.Sleep(wait)
							continue
						}
						mu.Lock()
						granted = append(granted, at)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			slices.SortFunc(granted, func(a, b time.Time) int { return a.Compare(b) })
			interval := time.Duration(float64(time.Second) / tc.rate)
			for i := range granted {
				for j := i + 1; j < len(granted); j++ {
					// Grants i..j inclusive happened within span; GCRA allows burst + span/interval.
					span := granted[j].Sub(granted[i])
					if allowed := tc.burst + int((span+time.Microsecond)/interval); j-i+1 > allowed {
						t.Fatalf("%d grants within %v (grants %d..%d), budget allows %d", j-i+1, span, i, j, allowed)
					}
				}
			}
		})
	}
}

func TestTakeTokenIndependentKeys(t *testing.T) {
	l := redis.NewCounters(fresh(t))
	ctx := context.Background()
	for _, key := range []string{"global", "trunk-a", "trunk-b"} {
		if ok, _, err := l.TakeToken(ctx, key, 1, 1); err != nil || !ok {
			t.Fatalf("first token of %s: %v, %v", key, ok, err)
		}
	}
	ok, wait, err := l.TakeToken(ctx, "global", 1, 1)
	if err != nil || ok || wait <= 0 || wait > time.Second {
		t.Fatalf("second token of a 1/s budget = %v, %v, %v; want refused with wait in (0, 1s]", ok, wait, err)
	}
}

func TestNumberHolder(t *testing.T) {
	l := redis.NewCounters(fresh(t))
	ctx := context.Background()
	if h, left, err := l.NumberHolder(ctx, "+15550001111"); h != "" || left != 0 || err != nil {
		t.Fatalf("free slot: %q %v %v", h, left, err)
	}
	if ok, err := l.AcquireNumber(ctx, "+15550001111", "VE1/CA1", time.Minute); !ok || err != nil {
		t.Fatal(ok, err)
	}
	h, left, err := l.NumberHolder(ctx, "+15550001111")
	if h != "VE1/CA1" || left <= 59*time.Second || left > time.Minute || err != nil {
		t.Errorf("held slot: %q %v %v; want VE1/CA1 with about a minute left", h, left, err)
	}
	if err := l.ReleaseNumber(ctx, "+15550001111", "VE1/CA1"); err != nil {
		t.Fatal(err)
	}
	if h, _, _ := l.NumberHolder(ctx, "+15550001111"); h != "" {
		t.Errorf("released slot still held by %q", h)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := l.NumberHolder(cancelled, "+15550001111"); err == nil {
		t.Error("a done context returned no error")
	}
}

func TestGuardContract(t *testing.T) {
	redistest.Need(t, srv)
	storetest.RunGuardCounters(t, func(t *testing.T) storetest.GuardCounters { return redis.NewCounters(fresh(t)) })
}

// TestGuardSharedByNodes has two nodes on one Redis: a tally and a pause made by one are seen by the
// other.
func TestGuardSharedByNodes(t *testing.T) {
	a, b := redis.NewCounters(fresh(t)), redis.NewCounters(srv.Client(t))
	ctx := context.Background()
	for i, l := range []*redis.Counters{a, b, a} {
		if n, err := l.Tally(ctx, "prefix:+1555", time.Hour, true); n != i+1 || err != nil {
			t.Fatalf("add %d = %d, %v; want %d", i, n, err, i+1)
		}
	}
	if newly, err := a.Pause(ctx, "prefix:+1555", time.Hour); !newly || err != nil {
		t.Fatalf("Pause on a = %v, %v", newly, err)
	}
	if newly, err := b.Pause(ctx, "prefix:+1555", time.Hour); newly || err != nil {
		t.Errorf("Pause on b while a's holds = %v, %v; want not newly", newly, err)
	}
	if was, err := b.Resume(ctx, "prefix:+1555"); !was || err != nil {
		t.Errorf("Resume on b = %v, %v; want a's pause lifted", was, err)
	}
	if left, err := a.Paused(ctx, "prefix:+1555"); left != 0 || err != nil {
		t.Errorf("Paused on a after b resumed = %v, %v; want 0", left, err)
	}
}

// TestGuardKeys checks the key layout of the package comment: the tally and the pause live under the
// prefix, in the key's hash tag, and expire by themselves.
func TestGuardKeys(t *testing.T) {
	tests := []struct {
		name   string
		opts   []redis.Option
		prefix string
	}{
		{"DefaultPrefix", nil, "ivr:"},
		{"OtherPrefix", []redis.Option{redis.WithKeyPrefix("other:")}, "other:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fresh(t)
			l := redis.NewCounters(c, tc.opts...)
			ctx := context.Background()
			if _, err := l.Tally(ctx, "prefix:+1555", time.Minute, true); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Pause(ctx, "prefix:+1555", 90*time.Second); err != nil {
				t.Fatal(err)
			}
			tally := tc.prefix + "tally:{prefix:+1555}"
			if n, err := c.ZCard(ctx, tally).Result(); n != 1 || err != nil {
				t.Errorf("ZCARD %s = %d, %v; want 1", tally, n, err)
			}
			if ttl, err := c.PTTL(ctx, tally).Result(); ttl <= 0 || ttl > time.Minute+time.Millisecond || err != nil {
				t.Errorf("PTTL %s = %v, %v; want within (0, 1m]", tally, ttl, err)
			}
			pause := tc.prefix + "pause:{prefix:+1555}"
			if ttl, err := c.PTTL(ctx, pause).Result(); ttl <= 89*time.Second || ttl > 90*time.Second || err != nil {
				t.Errorf("PTTL %s = %v, %v; want about 90s", pause, ttl, err)
			}
		})
	}
}

// TestTallyWindowSlides lets a short window pass on Redis's clock: the events leave the tally, counting
// only keeps them out, and a new event counts alone.
func TestTallyWindowSlides(t *testing.T) {
	l := redis.NewCounters(fresh(t))
	ctx := context.Background()
	const window = 200 * time.Millisecond
	for i := range 3 {
		if n, err := l.Tally(ctx, "prefix:+1555", window, true); n != i+1 || err != nil {
			t.Fatalf("add %d = %d, %v; want %d", i, n, err, i+1)
		}
	}
	// The window runs on Redis's clock, so poll until it is empty; the deadline only turns a hang into
	// a failure.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := l.Tally(ctx, "prefix:+1555", window, false)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if n > 3 {
			t.Fatalf("counting only reported %d events, want at most 3", n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events of a %v window still counted after 5s", n, window)
		}
		time.Sleep(10 * time.Millisecond) // the poll's pace
	}
	if n, err := l.Tally(ctx, "prefix:+1555", window, true); n != 1 || err != nil {
		t.Errorf("add after the window = %d, %v; want 1", n, err)
	}
}

// TestPauseExpires lets a short pause run out on Redis's clock: Paused reaches 0, Resume then finds
// nothing to lift, and the key can be paused newly again.
func TestPauseExpires(t *testing.T) {
	l := redis.NewCounters(fresh(t))
	ctx := context.Background()
	const d = 100 * time.Millisecond
	if newly, err := l.Pause(ctx, "prefix:+1555", d); !newly || err != nil {
		t.Fatalf("Pause = %v, %v", newly, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		left, err := l.Paused(ctx, "prefix:+1555")
		if err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if left > d {
			t.Fatalf("Paused = %v, want at most %v", left, d)
		}
		if time.Now().After(deadline) {
			t.Fatalf("a %v pause still had %v left after 5s", d, left)
		}
		time.Sleep(10 * time.Millisecond) // the poll's pace
	}
	if was, err := l.Resume(ctx, "prefix:+1555"); was || err != nil {
		t.Errorf("Resume of an ended pause = %v, %v; want false", was, err)
	}
	if newly, err := l.Pause(ctx, "prefix:+1555", time.Minute); !newly || err != nil {
		t.Errorf("Pause after the end = %v, %v; want newly", newly, err)
	}
}
