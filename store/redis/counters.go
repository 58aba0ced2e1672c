package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Counters are the counters and rate limiters that every node sharing one Redis must agree on, so that
// a limit holds for the deployment and not per process: at most one live call per destination number
// ([Counters.AcquireNumber]), sends per number per window ([Counters.Count]), and calls-per-second
// budgets, global or per key such as a trunk or the call queue ([Counters.TakeToken]), tallies of
// events per key over a window ([Counters.Tally]), and pauses by key ([Counters.Pause]). They have the
// same methods and meaning as the memory store's Counters, which hold for one process.
//
// Each method is one Lua script or one command on one key, so it is atomic and Cluster-safe, and keeps
// time by Redis's clock (TIME, PX), never by the calling node's. It is safe for concurrent use and holds nothing but the
// client, which the caller closes. A done ctx returns an error wrapping ctx's error; an unreachable
// Redis returns an error within the client's timeouts and never reports a limit as free.
type Counters struct {
	c goredis.UniversalClient
	o options
}

// NewCounters returns Counters on c. Of the options only WithKeyPrefix applies; every node must use the
// same prefix. c is required (NewCounters panics if it is nil); Counters does not close it.
func NewCounters(c goredis.UniversalClient, opts ...Option) *Counters {
	if c == nil {
		panic("redis: NewCounters needs a client")
	}
	return &Counters{c: c, o: buildOptions(opts)}
}

func (l *Counters) liveKey(number string) string { return l.o.prefix + "live:{" + number + "}" }
func (l *Counters) countKey(key string) string   { return l.o.prefix + "count:{" + key + "}" }
func (l *Counters) rateKey(key string) string    { return l.o.prefix + "rate:{" + key + "}" }
func (l *Counters) tallyKey(key string) string   { return l.o.prefix + "tally:{" + key + "}" }
func (l *Counters) pauseKey(key string) string   { return l.o.prefix + "pause:{" + key + "}" }

// acquireLive takes or renews the live-call slot of a number.
//
//	KEYS[1] the number's live-call key
//	ARGV[1] the holder, ARGV[2] the TTL in ms
//	returns 1 if ARGV[1] holds the slot now (newly, or renewed), 0 if someone else does
var acquireLive = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// releaseLive deletes the live-call slot only if the caller holds it (compare and delete).
//
//	KEYS[1] the number's live-call key
//	ARGV[1] the holder
//	returns 1 if released, 0 if the slot was free or held by someone else
var releaseLive = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// AcquireNumber makes holder (for example a call id) the one live call to number for ttl, and reports
// whether it is: ok is false when another holder has it. Acquiring again with the same holder renews the
// TTL, so a long call can keep its slot. The slot frees itself after ttl if its holder dies; a live call
// should therefore use a ttl above its maximum length, or renew. ttl must be positive.
func (l *Counters) AcquireNumber(ctx context.Context, number, holder string, ttl time.Duration) (ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("redis: acquire number: %w", err)
	}
	if ttl <= 0 || holder == "" {
		return false, errors.New("redis: acquire number: needs a holder and a positive ttl")
	}
	n, err := acquireLive.Run(ctx, l.c, []string{l.liveKey(number)}, holder, ttlMillis(ttl)).Int()
	if err != nil {
		return false, fmt.Errorf("redis: acquire number: %w", err)
	}
	return n == 1, nil
}

// ReleaseNumber frees number's live-call slot if holder has it; if the slot expired or passed to another
// holder, it leaves it alone and returns nil.
func (l *Counters) ReleaseNumber(ctx context.Context, number, holder string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis: release number: %w", err)
	}
	if err := releaseLive.Run(ctx, l.c, []string{l.liveKey(number)}, holder).Err(); err != nil {
		return fmt.Errorf("redis: release number: %w", err)
	}
	return nil
}

// NumberHolder returns who holds number's live-call slot and for how much longer; holder is "" when
// the slot is free. It only reads, so it is advice (the slot may change hands right after): use it to
// refuse early, and AcquireNumber to decide.
func (l *Counters) NumberHolder(ctx context.Context, number string) (holder string, left time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return "", 0, fmt.Errorf("redis: number holder: %w", err)
	}
	pipe := l.c.Pipeline()
	get := pipe.Get(ctx, l.liveKey(number))
	ttl := pipe.PTTL(ctx, l.liveKey(number))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return "", 0, fmt.Errorf("redis: number holder: %w", err)
	}
	holder = get.Val()
	if holder == "" {
		return "", 0, nil
	}
	return holder, max(0, ttl.Val()), nil
}

// countEvents is a sliding-window log: one sorted-set member per event, scored by its time.
//
//	KEYS[1] the key's event log
//	ARGV[1] the window in µs, ARGV[2] the limit, ARGV[3] a random member suffix
//	returns {1, 0} after recording the event, or {0, µs until the oldest event leaves the window}
var countEvents = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, math.max(1, tonumber(oldest[2]) + window - now)}
end
local at = string.format('%.0f', now)
redis.call('ZADD', KEYS[1], at, at .. '-' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1)
return {1, 0}
`)

// Count records one event under key (a number's sends, an API key's starts, …) if fewer than limit
// events were recorded under it in the last window, and reports ok. Otherwise it records nothing and
// returns ok == false with retryAfter, the time until the oldest counted event leaves the window (for a
// Retry-After header). The window slides: an event counts for exactly window after it, by Redis's
// clock; the log holds at most limit events. window and limit must be positive; every caller of one
// key should pass the same window and limit.
func (l *Counters) Count(ctx context.Context, key string, window time.Duration, limit int) (ok bool, retryAfter time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return false, 0, fmt.Errorf("redis: count: %w", err)
	}
	if window < time.Microsecond || limit <= 0 {
		return false, 0, fmt.Errorf("redis: count: window %v and limit %d must be positive", window, limit)
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:]) // crypto/rand.Read never fails
	res, err := countEvents.Run(ctx, l.c, []string{l.countKey(key)},
		window.Microseconds(), limit, hex.EncodeToString(nonce[:])).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("redis: count: %w", err)
	}
	if len(res) != 2 {
		return false, 0, errors.New("redis: count: unexpected reply")
	}
	return res[0] == 1, time.Duration(res[1]) * time.Microsecond, nil
}

// takeToken is the generic cell rate algorithm (GCRA, a token bucket kept as one timestamp): the key
// holds the theoretical arrival time (TAT) of the next call, in µs of Redis's clock.
//
//	KEYS[1] the budget's key
//	ARGV[1] the emission interval 1/rate in µs, ARGV[2] the burst
//	returns {1, 0, now} when a token was taken, {0, µs to wait, now} when none is free
var takeToken = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - tolerance > now then
  return {0, math.ceil(tat - tolerance - now), now}
end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {1, 0, now}
`)

// TakeToken takes one token from the budget named key, which refills at rate tokens per second and
// holds at most burst (at least 1). ok is false when no token is free; then wait is how long until one
// will be, and nothing was taken. All nodes calling with the same key share the budget. rate must be
// positive; a burst below 1 counts as 1. Every caller of one key should pass the same rate and burst.
func (l *Counters) TakeToken(ctx context.Context, key string, rate float64, burst int) (ok bool, wait time.Duration, err error) {
	ok, wait, _, err = l.TakeTokenAt(ctx, key, rate, burst)
	return ok, wait, err
}

// TakeTokenAt is TakeToken that also returns at, Redis's time of the decision: the clock the budget
// is kept by, so that the spacing of grants can be checked without the skew of the nodes' clocks.
func (l *Counters) TakeTokenAt(ctx context.Context, key string, rate float64, burst int) (ok bool, wait time.Duration, at time.Time, err error) {
	if err := ctx.Err(); err != nil {
		return false, 0, time.Time{}, fmt.Errorf("redis: take token: %w", err)
	}
	if !(rate > 0) {
		return false, 0, time.Time{}, fmt.Errorf("redis: take token: rate %v is not positive", rate)
	}
	interval := strconv.FormatFloat(1e6/rate, 'f', 3, 64)
	res, err := takeToken.Run(ctx, l.c, []string{l.rateKey(key)}, interval, max(1, burst)).Int64Slice()
	if err != nil {
		return false, 0, time.Time{}, fmt.Errorf("redis: take token: %w", err)
	}
	if len(res) != 3 {
		return false, 0, time.Time{}, errors.New("redis: take token: unexpected reply")
	}
	return res[0] == 1, time.Duration(res[1]) * time.Microsecond, time.UnixMicro(res[2]), nil
}

// tallyEvents is a sliding-window log like countEvents, without a limit: one sorted-set member per
// event, scored by its time.
//
//	KEYS[1] the key's event log
//	ARGV[1] the window in µs, ARGV[2] "1" to record an event, ARGV[3] a random member suffix
//	returns the number of events within the window, the recorded one included
var tallyEvents = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
if ARGV[2] == '1' then
  local at = string.format('%.0f', now)
  redis.call('ZADD', KEYS[1], at, at .. '-' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1)
end
return redis.call('ZCARD', KEYS[1])
`)

// Tally records one event under key when add is true, forgets the events older than window, and
// returns how many remain within window, the new one included. With add false it only counts. An event
// counts for exactly window after it, by Redis's clock, and all nodes calling with the same key share
// the tally. Unlike Count's, the log has no limit: it holds one member per event of the last window.
// window must be at least 1µs; every caller of one key should pass the same window.
func (l *Counters) Tally(ctx context.Context, key string, window time.Duration, add bool) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("redis: tally: %w", err)
	}
	if window < time.Microsecond {
		return 0, fmt.Errorf("redis: tally: window %v must be positive", window)
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:]) // crypto/rand.Read never fails
	flag := "0"
	if add {
		flag = "1"
	}
	n, err := tallyEvents.Run(ctx, l.c, []string{l.tallyKey(key)},
		window.Microseconds(), flag, hex.EncodeToString(nonce[:])).Int()
	if err != nil {
		return 0, fmt.Errorf("redis: tally: %w", err)
	}
	return n, nil
}

// Pause marks key paused for d (rounded up to a millisecond) unless it is paused already, and reports
// whether this call paused it: of several nodes pausing one key at once, exactly one gets newly ==
// true (SET NX). A pause in force is neither extended nor shortened. d must be positive.
func (l *Counters) Pause(ctx context.Context, key string, d time.Duration) (newly bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("redis: pause: %w", err)
	}
	if d <= 0 {
		return false, fmt.Errorf("redis: pause: duration %v must be positive", d)
	}
	newly, err = l.c.SetNX(ctx, l.pauseKey(key), "1", time.Duration(ttlMillis(d))*time.Millisecond).Result()
	if err != nil {
		return false, fmt.Errorf("redis: pause: %w", err)
	}
	return newly, nil
}

// Paused returns how long key stays paused, to the millisecond; 0 when it is not paused. It only
// reads, so it is advice: the pause may end or begin right after.
func (l *Counters) Paused(ctx context.Context, key string) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("redis: paused: %w", err)
	}
	left, err := l.c.PTTL(ctx, l.pauseKey(key)).Result()
	if err != nil {
		return 0, fmt.Errorf("redis: paused: %w", err)
	}
	return max(0, left), nil // a missing key is -2; Pause never writes one without a TTL (-1)
}

// Resume lifts the pause of key before its time, and reports whether key was paused.
func (l *Counters) Resume(ctx context.Context, key string) (wasPaused bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("redis: resume: %w", err)
	}
	n, err := l.c.Del(ctx, l.pauseKey(key)).Result()
	if err != nil {
		return false, fmt.Errorf("redis: resume: %w", err)
	}
	return n == 1, nil
}
