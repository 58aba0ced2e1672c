// Package redis is the otp.Store that several nodes share: verifications and idempotency records in
// Redis, reached through go-redis's UniversalClient, so that one server, Sentinel or Cluster is only a
// matter of configuration ([ParseURL]). It also holds the counters every node must agree on
// ([Counters]): one live call per destination number, sends per number per window, calls-per-second
// budgets (the rate limiter of the durable call queue and of the trunks), and tallies of events and
// pauses by key.
//
// It owns the key layout, the stored encodings, the Lua scripts and the URL forms. It does not own any
// rule about verifications (package otp decides what a write means; this package only makes it
// atomic), the call queue (package dispatch/streams), nor the client: the caller builds it (with
// ParseURL or go-redis directly), passes it to [New] and [NewCounters], and closes it after them.
//
// # Key layout
//
// Every key starts with a prefix ("ivr:" unless [WithKeyPrefix]) and carries a Redis Cluster hash tag
// (the part in braces), so that everything one operation touches in one step is in one slot:
//
//	ivr:{VE…}:v           a verification: Verification.MarshalBinary (it holds the secret), expiring
//	                      at ExpiresAt + retention (PXAT, by Redis's clock)
//	ivr:num:{+1555…}      the number's claim: the id of the verification that last became pending for
//	                      it, expiring with that verification
//	ivr:idem:{key}        an idempotency record (JSON), expiring after the TTL given
//	ivr:live:{+1555…}     Counters: the holder of the live call to that number
//	ivr:count:{key}       Counters: sorted set of the event times of a sliding-window limit (key: number:+1555…,
//	                      api_key:…, country:US, prefix:+155512, global:hour, …)
//	ivr:rate:{key}        Counters: theoretical arrival time of a calls-per-second budget (GCRA)
//	ivr:tally:{key}       Counters: sorted set of the event times of a tally (Tally), expiring a window
//	                      after the last event
//	ivr:pause:{key}       Counters: "1" while key is paused (Pause), expiring when the pause ends
//
// # Atomicity
//
// Update is an optimistic read-modify-write on the one verification key (WATCH, GET, fn, MULTI/SET/EXEC),
// retried on conflict. The idempotency claim and every limit are one Lua script on one key.
//
// CreatePending touches two keys in two slots (the verification's and the number's), so in Cluster no
// MULTI or script can span them. It stays atomic by making the number key the only point of decision:
// it first writes the new verification under its own, fresh id (invisible to anyone who does not know
// the id), then claims the number with SET NX. If another claim exists, it reads the verification the
// claim names: if that one is pending and unexpired at now, the new record is deleted again and the
// existing one returned; otherwise the claim is taken over with a compare-and-set script that succeeds
// only if the claim still names what was read, and a lost race starts over. A claim therefore always
// names a verification that was completely written before the claim, and two creators can never both
// succeed. A process that dies between the two steps leaves an orphan record that no number points to
// and that expires with its retention.
//
// # Time and versions
//
// Expiries are absolute (PXAT) or relative to Redis's own clock (PX, TIME inside scripts), so nodes with
// slightly different clocks agree. CreatePending decides pending-ness with the now it is given, as the
// otp.Store contract says. Redis 6.2 or later is required (SET PXAT); the tests run against 7.0.
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/voiceotp/voiceotp/otp"
)

// Errors callers branch on.
var (
	// ErrContention: Update (or CreatePending) lost its optimistic race more times than allowed
	// ([WithUpdateAttempts]) and gave up without writing. Retrying later is safe.
	ErrContention = errors.New("redis: too many concurrent writes, gave up")
)

// Defaults of the options.
const (
	// DefaultRetention is how long a verification is kept after its ExpiresAt, as in the memory store.
	DefaultRetention = 24 * time.Hour
	// DefaultKeyPrefix starts every key.
	DefaultKeyPrefix = "ivr:"
	// DefaultUpdateAttempts bounds the optimistic retries of Update and CreatePending. A write loses a
	// round only when another write to the same key commits, so n concurrent writers of one key all
	// finish within n attempts.
	DefaultUpdateAttempts = 50
)

// Option configures a Store or Counters; options that do not apply to one are ignored by it.
type Option func(*options)

type options struct {
	prefix    string
	retention time.Duration
	attempts  int
}

// WithKeyPrefix sets the prefix of every key, so several deployments can share one Redis. Default
// DefaultKeyPrefix ("ivr:"); an empty prefix is allowed. The Store, the Counters and every node must use
// the same prefix.
func WithKeyPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithRetention sets how long a verification is kept after its ExpiresAt before Redis drops it (then it
// is otp.ErrNotFound). Default DefaultRetention (24 h); values <= 0 mean the default.
func WithRetention(d time.Duration) Option { return func(o *options) { o.retention = d } }

// WithUpdateAttempts sets how many optimistic rounds Update and CreatePending try before returning
// ErrContention. Default DefaultUpdateAttempts (50); values <= 0 mean the default.
func WithUpdateAttempts(n int) Option { return func(o *options) { o.attempts = n } }

func buildOptions(opts []Option) options {
	o := options{prefix: DefaultKeyPrefix}
	for _, f := range opts {
		f(&o)
	}
	if o.retention <= 0 {
		o.retention = DefaultRetention
	}
	if o.attempts <= 0 {
		o.attempts = DefaultUpdateAttempts
	}
	return o
}

// Store is an otp.Store in Redis. It is safe for concurrent use, also by many processes on one Redis,
// and holds no state of its own besides the client, which the caller closes after the last call.
//
// Every method returns an error that wraps the context's error when ctx is already done, and an error
// that wraps go-redis's when Redis cannot be reached or times out (the client's dial, read and write
// timeouts bound every call; no method waits for Redis to come back). A cancel or timeout mid-call may
// or may not have applied the write. Errors never contain a code, a secret or a stored value.
type Store struct {
	c goredis.UniversalClient
	o options
}

var _ otp.Store = (*Store)(nil)

// New returns a Store on c. c is required (New panics if it is nil, a wiring mistake); the Store does
// not close it.
func New(c goredis.UniversalClient, opts ...Option) *Store {
	if c == nil {
		panic("redis: New needs a client")
	}
	return &Store{c: c, o: buildOptions(opts)}
}

// Ping checks that Redis answers, within ctx and the client's timeouts.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: ping: %w", err)
	}
	return nil
}

func (s *Store) verificationKey(id string) string { return s.o.prefix + "{" + id + "}:v" }
func (s *Store) numberKey(to string) string       { return s.o.prefix + "num:{" + to + "}" }
func (s *Store) idempotencyKey(k string) string   { return s.o.prefix + "idem:{" + k + "}" }

// dropAt is when Redis drops a verification that expires at exp. It is never before 1970-01-01T00:00:00.001,
// which Redis would refuse; a time in the past makes Redis drop the key at once.
func (s *Store) dropAt(exp time.Time) time.Time {
	t := exp.Add(s.o.retention)
	if t.UnixMilli() < 1 {
		return time.UnixMilli(1)
	}
	// Whole milliseconds: go-redis sends PXAT only when there are some, EXAT (whole seconds) otherwise.
	return time.UnixMilli(t.UnixMilli())
}

// casClaim replaces the number's claim only if it still names the verification the caller read.
//
//	KEYS[1] the number's claim key
//	ARGV[1] the id the caller read, ARGV[2] the new id, ARGV[3] the new expiry (Unix ms)
//	returns 1 if replaced, 0 if the claim changed meanwhile
var casClaim = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
  return 1
end
return 0
`)

// CreatePending implements otp.Store. See the package documentation for how it stays atomic across
// slots. It makes up to WithUpdateAttempts rounds when other creators race for the same number, then
// returns ErrContention.
func (s *Store) CreatePending(ctx context.Context, v *otp.Verification, now time.Time) (*otp.Verification, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("redis: create: %w", err)
	}
	if v == nil || v.ID == "" || v.To == "" {
		return nil, false, errors.New("redis: create: verification without id or number")
	}
	data, err := v.MarshalBinary()
	if err != nil {
		return nil, false, fmt.Errorf("redis: create %s: %w", v.ID, err)
	}
	vk, nk := s.verificationKey(v.ID), s.numberKey(v.To)
	until := s.dropAt(v.ExpiresAt)

	// 1. The record, under an id nobody else knows yet.
	err = s.c.SetArgs(ctx, vk, data, goredis.SetArgs{Mode: "NX", ExpireAt: until}).Err()
	if errors.Is(err, goredis.Nil) {
		return nil, false, fmt.Errorf("redis: create: duplicate verification id %s", v.ID)
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis: create %s: %w", v.ID, err)
	}

	// 2. The number's claim.
	for attempt := range s.o.attempts {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return nil, false, fmt.Errorf("redis: create %s: %w", v.ID, err)
			}
		}
		err := s.c.SetArgs(ctx, nk, v.ID, goredis.SetArgs{Mode: "NX", ExpireAt: until}).Err()
		if err == nil {
			return v.Clone(), true, nil
		}
		if !errors.Is(err, goredis.Nil) {
			return nil, false, fmt.Errorf("redis: create %s: claiming the number: %w", v.ID, err)
		}
		cur, err := s.c.Get(ctx, nk).Result()
		if errors.Is(err, goredis.Nil) {
			continue // the claim expired just now: claim it afresh
		}
		if err != nil {
			return nil, false, fmt.Errorf("redis: create %s: reading the number's claim: %w", v.ID, err)
		}
		if cur == v.ID {
			return v.Clone(), true, nil // an earlier round's take-over succeeded but its reply was lost
		}
		ex, err := s.get(ctx, cur)
		switch {
		case err == nil && ex.Status == otp.StatusPending && now.Before(ex.ExpiresAt):
			if err := s.c.Del(ctx, vk).Err(); err != nil {
				return nil, false, fmt.Errorf("redis: create %s: removing the refused record: %w", v.ID, err)
			}
			return ex, false, nil
		case err != nil && !errors.Is(err, otp.ErrNotFound):
			return nil, false, fmt.Errorf("redis: create %s: %w", v.ID, err)
		}
		// The claimed verification is gone, final or expired: take the claim over if it is unchanged.
		n, err := casClaim.Run(ctx, s.c, []string{nk}, cur, v.ID, until.UnixMilli()).Int()
		if err != nil {
			return nil, false, fmt.Errorf("redis: create %s: taking over the number's claim: %w", v.ID, err)
		}
		if n == 1 {
			return v.Clone(), true, nil
		}
	}
	return nil, false, fmt.Errorf("redis: create %s: %w", v.ID, ErrContention)
}

// get reads and decodes one verification, or returns otp.ErrNotFound.
func (s *Store) get(ctx context.Context, id string) (*otp.Verification, error) {
	b, err := s.c.Get(ctx, s.verificationKey(id)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, otp.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("redis: get %s: %w", id, err)
	}
	v := new(otp.Verification)
	if err := v.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("redis: get %s: %w", id, err)
	}
	return v, nil
}

// Get implements otp.Store.
func (s *Store) Get(ctx context.Context, id string) (*otp.Verification, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redis: get: %w", err)
	}
	return s.get(ctx, id)
}

// errAborted carries fn's error out of a WATCH callback, which Update then returns unchanged.
var errAborted = errors.New("redis: update aborted by fn")

// Update implements otp.Store with WATCH on the verification's key, GET, fn on the decoded copy, and
// MULTI/SET/EXEC, which fails if anyone wrote the key since the WATCH. On such a conflict it starts over
// with a fresh copy (fn runs again), up to WithUpdateAttempts rounds with a short random pause between
// them, then returns ErrContention. The written value expires at its (possibly new) ExpiresAt +
// retention. Each round holds one pooled connection for its duration.
func (s *Store) Update(ctx context.Context, id string, fn func(v *otp.Verification) error) (*otp.Verification, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redis: update: %w", err)
	}
	key := s.verificationKey(id)
	var (
		out   *otp.Verification
		fnErr error
	)
	txf := func(tx *goredis.Tx) error {
		b, err := tx.Get(ctx, key).Bytes()
		if errors.Is(err, goredis.Nil) {
			return otp.ErrNotFound
		}
		if err != nil {
			return err
		}
		v := new(otp.Verification)
		if err := v.UnmarshalBinary(b); err != nil {
			return err
		}
		to := v.To
		if err := fn(v); err != nil {
			fnErr = err
			return errAborted
		}
		if v.ID != id || v.To != to {
			return errors.New("update must not change a verification's id or number")
		}
		data, err := v.MarshalBinary()
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.SetArgs(ctx, key, data, goredis.SetArgs{ExpireAt: s.dropAt(v.ExpiresAt)})
			return nil
		})
		if err == nil {
			out = v
		}
		return err
	}
	for attempt := range s.o.attempts {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return nil, fmt.Errorf("redis: update %s: %w", id, err)
			}
		}
		err := s.c.Watch(ctx, txf, key)
		switch {
		case err == nil:
			return out, nil
		case errors.Is(err, goredis.TxFailedErr):
			continue
		case errors.Is(err, errAborted):
			return nil, fnErr
		case errors.Is(err, otp.ErrNotFound):
			return nil, otp.ErrNotFound
		default:
			return nil, fmt.Errorf("redis: update %s: %w", id, err)
		}
	}
	return nil, fmt.Errorf("redis: update %s: %w", id, ErrContention)
}

// backoff waits a random pause that grows with attempt (up to about 2 ms), or returns ctx's error.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(rand.Int64N(int64(min(attempt, 20))*100*int64(time.Microsecond) + 1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// idemRecord is the stored form of an otp.IdempotencyRecord.
type idemRecord struct {
	BodyHash string `json:"body_hash"`
	Done     bool   `json:"done"`
	Status   int    `json:"status,omitempty"`
	Body     []byte `json:"body,omitempty"`
}

func encodeIdem(r otp.IdempotencyRecord) ([]byte, error) {
	return json.Marshal(idemRecord(r))
}

func decodeIdem(b []byte) (*otp.IdempotencyRecord, error) {
	var r idemRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, errors.New("redis: undecodable idempotency record")
	}
	rec := otp.IdempotencyRecord(r)
	return &rec, nil
}

// ttlMillis converts a positive TTL to whole milliseconds, at least 1.
func ttlMillis(d time.Duration) int64 {
	return max(1, (d + time.Millisecond - 1).Milliseconds())
}

// claimIdem stores a record unless the key holds one, in one step.
//
//	KEYS[1] the idempotency key
//	ARGV[1] the record, ARGV[2] its TTL in ms
//	returns the existing record, or nil after storing ARGV[1]
var claimIdem = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
`)

// ClaimIdempotency implements otp.Store with one script (GET, else SET PX): of any number of concurrent
// claims of one key, on any nodes, exactly one gets (nil, nil). ttl must be positive; it is rounded up
// to whole milliseconds.
func (s *Store) ClaimIdempotency(ctx context.Context, key string, rec otp.IdempotencyRecord, ttl time.Duration) (*otp.IdempotencyRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redis: claim idempotency key: %w", err)
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("redis: claim idempotency key: ttl %v is not positive", ttl)
	}
	data, err := encodeIdem(rec)
	if err != nil {
		return nil, fmt.Errorf("redis: claim idempotency key: %w", err)
	}
	cur, err := claimIdem.Run(ctx, s.c, []string{s.idempotencyKey(key)}, data, ttlMillis(ttl)).Text()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redis: claim idempotency key: %w", err)
	}
	return decodeIdem([]byte(cur))
}

// CompleteIdempotency implements otp.Store with SET PX, replacing the claim (or storing the record if
// the claim expired meanwhile). ttl must be positive.
func (s *Store) CompleteIdempotency(ctx context.Context, key string, rec otp.IdempotencyRecord, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis: complete idempotency key: %w", err)
	}
	if ttl <= 0 {
		return fmt.Errorf("redis: complete idempotency key: ttl %v is not positive", ttl)
	}
	data, err := encodeIdem(rec)
	if err != nil {
		return fmt.Errorf("redis: complete idempotency key: %w", err)
	}
	if err := s.c.Set(ctx, s.idempotencyKey(key), data, time.Duration(ttlMillis(ttl))*time.Millisecond).Err(); err != nil {
		return fmt.Errorf("redis: complete idempotency key: %w", err)
	}
	return nil
}
