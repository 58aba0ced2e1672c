package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/voiceotp/voiceotp/internal/gcra"
)

// Counters are the counters and rate limiters of a single process, with the same methods and meaning
// as the Redis store's Counters (store/redis): at most one live call per number, sends per number per
// sliding window, calls-per-second budgets by key, and tallies of events and pauses by key. They hold
// for this process only, which is all there is with the memory store.
//
// They are safe for concurrent use; every method holds one mutex. Expired slots, sends, tallied events
// and pauses are dropped on access and by a sweep every DefaultSweepInterval of writes, and budgets
// once they are full again, so memory stays bounded by the numbers and keys in use. Time is the clock
// of WithClock.
type Counters struct {
	now  func() time.Time
	rate *gcra.Limiter // the budgets of TakeToken; it has its own mutex

	// mu guards the fields below.
	mu sync.Mutex
	// live maps a number to its live call's holder and the slot's expiry.
	live map[string]liveSlot
	// sends maps a key to the times of its events in the current window, oldest first.
	sends map[string][]time.Time
	// window is the longest window Count was called with, for sweeping events.
	window time.Duration
	// tallies maps a key to the times of its Tally events in the current window, oldest first.
	tallies map[string][]time.Time
	// tallyWindow is the longest window Tally was called with, for sweeping tallies.
	tallyWindow time.Duration
	// pauses maps a paused key to the end of its pause.
	pauses    map[string]time.Time
	lastSweep time.Time
}

type liveSlot struct {
	holder  string
	expires time.Time
}

// NewCounters returns empty Counters. Of the options only WithClock applies.
func NewCounters(opts ...Option) *Counters {
	s := &Store{now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return &Counters{
		now: s.now, rate: gcra.New(s.now),
		live: map[string]liveSlot{}, sends: map[string][]time.Time{},
		tallies: map[string][]time.Time{}, pauses: map[string]time.Time{}, lastSweep: s.now(),
	}
}

// AcquireNumber makes holder the one live call to number for ttl and reports whether it is: ok is
// false when another holder has it. Acquiring again with the same holder renews the slot. ttl must be
// positive and holder non-empty.
func (l *Counters) AcquireNumber(ctx context.Context, number, holder string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("memory: acquire number: %w", err)
	}
	if ttl <= 0 || holder == "" {
		return false, errors.New("memory: acquire number: needs a holder and a positive ttl")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.maybeSweepLocked(now)
	if cur, ok := l.live[number]; ok && now.Before(cur.expires) && cur.holder != holder {
		return false, nil
	}
	l.live[number] = liveSlot{holder: holder, expires: now.Add(ttl)}
	return true, nil
}

// ReleaseNumber frees number's live-call slot if holder has it; otherwise it does nothing.
func (l *Counters) ReleaseNumber(ctx context.Context, number, holder string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: release number: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.live[number]; ok && cur.holder == holder {
		delete(l.live, number)
	}
	return nil
}

// NumberHolder returns who holds number's live-call slot and for how much longer; "" when it is free.
func (l *Counters) NumberHolder(ctx context.Context, number string) (string, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return "", 0, fmt.Errorf("memory: number holder: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	cur, ok := l.live[number]
	if !ok || !now.Before(cur.expires) {
		return "", 0, nil
	}
	return cur.holder, cur.expires.Sub(now), nil
}

// Count records one event under key (a number's sends, an API key's starts, …) if fewer than limit
// events were recorded under it in the last window, and reports ok. Otherwise it records nothing and
// returns ok == false with retryAfter, the time until the oldest counted event leaves the window. The
// log holds at most limit events. window and limit must be positive.
func (l *Counters) Count(ctx context.Context, key string, window time.Duration, limit int) (ok bool, retryAfter time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return false, 0, fmt.Errorf("memory: count: %w", err)
	}
	if window <= 0 || limit <= 0 {
		return false, 0, fmt.Errorf("memory: count: window %v and limit %d must be positive", window, limit)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.window = max(l.window, window)
	l.maybeSweepLocked(now)
	sends := dropBefore(l.sends[key], now.Add(-window))
	if len(sends) >= limit {
		l.sends[key] = sends
		return false, max(time.Microsecond, sends[0].Add(window).Sub(now)), nil
	}
	l.sends[key] = append(sends, now)
	return true, 0, nil
}

// TakeToken takes one token from the budget named key, which refills at rate tokens per second and
// holds at most burst (at least 1), by the generic cell rate algorithm: with a burst of 1, two grants
// are never closer than 1/rate, even after an idle period. ok is false when no token is free; then wait
// is how long until one will be, and nothing was taken. rate must be positive; a burst below 1 counts
// as 1. Every caller of one key should pass the same rate and burst.
func (l *Counters) TakeToken(ctx context.Context, key string, rate float64, burst int) (ok bool, wait time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return false, 0, fmt.Errorf("memory: take token: %w", err)
	}
	if !(rate > 0) {
		return false, 0, fmt.Errorf("memory: take token: rate %v is not positive", rate)
	}
	ok, wait = l.rate.Take(key, rate, burst)
	return ok, wait, nil
}

// Tally records one event under key when add is true, forgets the events older than window, and
// returns how many remain within window, the new one included. With add false it only counts. An
// event counts for exactly window after it. window must be positive; every caller of one key should
// pass the same window.
func (l *Counters) Tally(ctx context.Context, key string, window time.Duration, add bool) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory: tally: %w", err)
	}
	if window <= 0 {
		return 0, fmt.Errorf("memory: tally: window %v must be positive", window)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.tallyWindow = max(l.tallyWindow, window)
	l.maybeSweepLocked(now)
	ts := dropBefore(l.tallies[key], now.Add(-window))
	if add {
		ts = append(ts, now)
	}
	if len(ts) == 0 {
		delete(l.tallies, key)
	} else {
		l.tallies[key] = ts
	}
	return len(ts), nil
}

// Pause marks key paused for d unless it is paused already, and reports whether this call paused it:
// of several callers pausing one key at once, exactly one gets newly == true. A pause in force is
// neither extended nor shortened. d must be positive.
func (l *Counters) Pause(ctx context.Context, key string, d time.Duration) (newly bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("memory: pause: %w", err)
	}
	if d <= 0 {
		return false, fmt.Errorf("memory: pause: duration %v must be positive", d)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.maybeSweepLocked(now)
	if until, ok := l.pauses[key]; ok && now.Before(until) {
		return false, nil
	}
	l.pauses[key] = now.Add(d)
	return true, nil
}

// Paused returns how long key stays paused; 0 when it is not paused.
func (l *Counters) Paused(ctx context.Context, key string) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory: paused: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	until, ok := l.pauses[key]
	if !ok {
		return 0, nil
	}
	return max(0, until.Sub(l.now())), nil
}

// Resume lifts the pause of key before its time, and reports whether key was paused.
func (l *Counters) Resume(ctx context.Context, key string) (wasPaused bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("memory: resume: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	until, ok := l.pauses[key]
	if !ok {
		return false, nil
	}
	delete(l.pauses, key)
	return l.now().Before(until), nil
}

// dropBefore removes the times not after cutoff from the front of ts (oldest first).
func dropBefore(ts []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(cutoff) {
		i++
	}
	return ts[i:]
}

// maybeSweepLocked drops expired slots, sends, tallied events and pauses when the last sweep is older than the sweep interval.
func (l *Counters) maybeSweepLocked(now time.Time) {
	if now.Sub(l.lastSweep) < DefaultSweepInterval {
		return
	}
	l.lastSweep = now
	for n, s := range l.live {
		if !now.Before(s.expires) {
			delete(l.live, n)
		}
	}
	for n, ts := range l.sends {
		if ts = dropBefore(ts, now.Add(-l.window)); len(ts) == 0 {
			delete(l.sends, n)
		} else {
			l.sends[n] = ts
		}
	}
	for k, ts := range l.tallies {
		if ts = dropBefore(ts, now.Add(-l.tallyWindow)); len(ts) == 0 {
			delete(l.tallies, k)
		} else {
			l.tallies[k] = ts
		}
	}
	for k, until := range l.pauses {
		if !now.Before(until) {
			delete(l.pauses, k)
		}
	}
}
