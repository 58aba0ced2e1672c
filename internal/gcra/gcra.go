// Package gcra is the generic cell rate algorithm (GCRA) inside one process: a rate budget kept as one
// timestamp, the theoretical arrival time (TAT) of the next request, so that a budget costs one value
// and a decision a few comparisons.
//
// It owns the arithmetic ([Take]) and a set of budgets by key under one mutex ([Limiter]), on a clock it
// is given. It shares nothing between processes: a budget that several nodes must share lives in Redis
// (package store/redis runs the same algorithm there, by Redis's clock).
package gcra

import (
	"math"
	"sync"
	"time"
)

// Take decides one request at now on a budget whose TAT is tat (the zero time for a budget never
// used), refilled at rate tokens per second and holding at most burst tokens (a burst below 1 counts
// as 1). When a token is free it returns ok and the budget's new TAT. Otherwise it returns the TAT
// unchanged and wait, how long until a token is free, always positive. rate must be positive.
//
// With a burst of 1, two grants are never closer than 1/rate, even after the budget was idle.
func Take(tat, now time.Time, rate float64, burst int) (next time.Time, ok bool, wait time.Duration) {
	interval := Interval(rate)
	var tolerance time.Duration
	if burst > 1 {
		tolerance = duration(float64(interval) * float64(burst-1))
	}
	if tat.Before(now) {
		tat = now
	}
	if allowAt := tat.Add(-tolerance); allowAt.After(now) {
		return tat, false, allowAt.Sub(now)
	}
	return tat.Add(interval), true, 0
}

// Interval is the time one token of a budget of rate tokens per second stands for, 1/rate, at least
// 1 ns and at most the longest time.Duration.
func Interval(rate float64) time.Duration {
	return duration(float64(time.Second) / rate)
}

// duration converts ns to a Duration of at least 1 ns, saturating at the longest one.
func duration(ns float64) time.Duration {
	if ns >= math.MaxInt64 { // float64(MaxInt64) is 2^63, one past it
		return math.MaxInt64
	}
	return time.Duration(max(1, ns))
}

// sweepEvery is how often a Limiter drops the budgets that are full again, which are the same as
// budgets never used.
const sweepEvery = time.Minute

// Limiter is a set of budgets by key, each decided by [Take] on one clock. It is safe for concurrent
// use: every call holds one mutex. Budgets that are full again are dropped about once a minute, so
// memory stays bounded by the keys in use.
type Limiter struct {
	now func() time.Time

	mu        sync.Mutex           // guards the fields below
	tat       map[string]time.Time // a budget's TAT, by key
	lastSweep time.Time
}

// New returns a Limiter with no budget used yet, on the clock now.
func New(now func() time.Time) *Limiter {
	return &Limiter{now: now, tat: map[string]time.Time{}, lastSweep: now()}
}

// Take takes one token from the budget named key, as [Take] does, at the Limiter's now. Every caller
// of one key should pass the same rate and burst. rate must be positive.
func (l *Limiter) Take(key string, rate float64, burst int) (ok bool, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.lastSweep) >= sweepEvery {
		l.lastSweep = now
		for k, t := range l.tat {
			if !t.After(now) {
				delete(l.tat, k)
			}
		}
	}
	next, ok, wait := Take(l.tat[key], now, rate, burst)
	if ok {
		l.tat[key] = next
	}
	return ok, wait
}
