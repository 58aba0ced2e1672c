// Package memory is the embedded, single-process otp.Store: verifications and idempotency records in
// maps behind one mutex. It is the default store and needs nothing else to run.
//
// It owns keeping those records, the one-pending-verification-per-number index, and dropping records
// after their retention so memory stays bounded by the request rate times (TTL + retention); and
// [Counters], the counters and rate limiters (one live call per number, sends per window,
// calls-per-second budgets) of a single process. It does not
// own any rule about verifications (package otp) and shares nothing between processes: several nodes
// need the Redis store.
package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/voiceotp/voiceotp/otp"
)

// Defaults of the options.
const (
	// DefaultRetention is how long a verification is kept after its ExpiresAt.
	DefaultRetention = 24 * time.Hour
	// DefaultSweepInterval is how often expired records are swept.
	DefaultSweepInterval = time.Minute
)

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock used for retention and idempotency TTLs. Default time.Now.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithRetention sets how long a verification is kept after its ExpiresAt before it is dropped (then
// reported as otp.ErrNotFound). Default DefaultRetention (24 h); values <= 0 mean the default.
func WithRetention(d time.Duration) Option { return func(s *Store) { s.retention = d } }

// WithSweepInterval sets how often Run sweeps, and how stale a sweep may get before a write sweeps
// lazily. Default DefaultSweepInterval (1 min); values <= 0 mean the default.
func WithSweepInterval(d time.Duration) Option { return func(s *Store) { s.sweepEvery = d } }

// Store is an in-memory otp.Store. It is safe for concurrent use. Every method holds one mutex for its
// whole duration, so Update's fn runs exactly once, under the lock: it must be quick and must not call
// the Store.
//
// Records are dropped after their retention: on access, by Run's periodic sweep, and by a lazy sweep
// during writes when the last sweep is older than the sweep interval, so memory stays bounded even
// without Run. A sweep is O(records) under the lock.
type Store struct {
	now        func() time.Time
	retention  time.Duration
	sweepEvery time.Duration

	// mu guards every field below.
	mu sync.Mutex
	// verifications by ID. The values are private copies: never handed out, replaced on Update.
	verifications map[string]*otp.Verification
	// latest maps a number to the ID of the last verification created for it. That verification may
	// have stopped being pending or been dropped; CreatePending checks.
	latest map[string]string
	// idem holds idempotency records by key.
	idem map[string]idemEntry
	// lastSweep is when the last sweep ran.
	lastSweep time.Time
}

type idemEntry struct {
	rec     otp.IdempotencyRecord
	expires time.Time
}

var _ otp.Store = (*Store)(nil)

// New returns an empty Store.
func New(opts ...Option) *Store {
	s := &Store{
		now:           time.Now,
		verifications: make(map[string]*otp.Verification),
		latest:        make(map[string]string),
		idem:          make(map[string]idemEntry),
	}
	for _, o := range opts {
		o(s)
	}
	if s.retention <= 0 {
		s.retention = DefaultRetention
	}
	if s.sweepEvery <= 0 {
		s.sweepEvery = DefaultSweepInterval
	}
	s.lastSweep = s.now()
	return s
}

// Run sweeps dropped records every sweep interval until ctx is done, then returns nil. Running it is
// optional (writes sweep lazily); it keeps memory down while the store is idle.
func (s *Store) Run(ctx context.Context) error {
	t := time.NewTicker(s.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.mu.Lock()
			s.sweepLocked(s.now())
			s.mu.Unlock()
		}
	}
}

// Len returns the number of verifications and idempotency records held, swept or not.
func (s *Store) Len() (verifications, idempotencyRecords int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.verifications), len(s.idem)
}

// dead reports whether v is past its retention at now.
func (s *Store) dead(v *otp.Verification, now time.Time) bool {
	return !now.Before(v.ExpiresAt.Add(s.retention))
}

// sweepLocked drops every record past its retention or TTL. s.mu must be held.
func (s *Store) sweepLocked(now time.Time) {
	for id, v := range s.verifications {
		if s.dead(v, now) {
			s.dropLocked(id, v)
		}
	}
	for k, e := range s.idem {
		if !now.Before(e.expires) {
			delete(s.idem, k)
		}
	}
	s.lastSweep = now
}

// maybeSweepLocked sweeps if the last sweep is older than the sweep interval. s.mu must be held.
func (s *Store) maybeSweepLocked(now time.Time) {
	if now.Sub(s.lastSweep) >= s.sweepEvery {
		s.sweepLocked(now)
	}
}

// dropLocked removes verification id and its index entry. s.mu must be held.
func (s *Store) dropLocked(id string, v *otp.Verification) {
	delete(s.verifications, id)
	if s.latest[v.To] == id {
		delete(s.latest, v.To)
	}
}

// liveLocked returns the verification id unless it is missing or past retention (then dropped).
// s.mu must be held.
func (s *Store) liveLocked(id string, now time.Time) (*otp.Verification, bool) {
	v, ok := s.verifications[id]
	if !ok {
		return nil, false
	}
	if s.dead(v, now) {
		s.dropLocked(id, v)
		return nil, false
	}
	return v, true
}

// CreatePending implements otp.Store.
func (s *Store) CreatePending(ctx context.Context, v *otp.Verification, now time.Time) (*otp.Verification, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("memory: create: %w", err)
	}
	if v == nil || v.ID == "" {
		return nil, false, errors.New("memory: create: verification without id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	clock := s.now()
	s.maybeSweepLocked(clock)
	if id, ok := s.latest[v.To]; ok {
		if ex, ok := s.liveLocked(id, clock); ok && ex.Status == otp.StatusPending && now.Before(ex.ExpiresAt) {
			return ex.Clone(), false, nil
		}
	}
	if _, ok := s.verifications[v.ID]; ok {
		return nil, false, fmt.Errorf("memory: create: duplicate verification id %s", v.ID)
	}
	c := v.Clone()
	s.verifications[c.ID] = c
	s.latest[c.To] = c.ID
	return c.Clone(), true, nil
}

// Get implements otp.Store.
func (s *Store) Get(ctx context.Context, id string) (*otp.Verification, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: get: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.liveLocked(id, s.now())
	if !ok {
		return nil, otp.ErrNotFound
	}
	return v.Clone(), nil
}

// Update implements otp.Store. fn runs exactly once, under the store's lock.
func (s *Store) Update(ctx context.Context, id string, fn func(v *otp.Verification) error) (*otp.Verification, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: update: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.liveLocked(id, s.now())
	if !ok {
		return nil, otp.ErrNotFound
	}
	c := v.Clone()
	if err := fn(c); err != nil {
		return nil, err
	}
	if c.ID != v.ID || c.To != v.To {
		return nil, errors.New("memory: update must not change a verification's id or number")
	}
	// Keep a clone: fn might have kept its argument, which is also what the caller gets back.
	s.verifications[id] = c.Clone()
	return c, nil
}

// ClaimIdempotency implements otp.Store.
func (s *Store) ClaimIdempotency(ctx context.Context, key string, rec otp.IdempotencyRecord, ttl time.Duration) (*otp.IdempotencyRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: claim idempotency key: %w", err)
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("memory: claim idempotency key: ttl %v is not positive", ttl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.maybeSweepLocked(now)
	if e, ok := s.idem[key]; ok && now.Before(e.expires) {
		r := cloneRecord(e.rec)
		return &r, nil
	}
	s.idem[key] = idemEntry{rec: cloneRecord(rec), expires: now.Add(ttl)}
	return nil, nil
}

// CompleteIdempotency implements otp.Store.
func (s *Store) CompleteIdempotency(ctx context.Context, key string, rec otp.IdempotencyRecord, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: complete idempotency key: %w", err)
	}
	if ttl <= 0 {
		return fmt.Errorf("memory: complete idempotency key: ttl %v is not positive", ttl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idem[key] = idemEntry{rec: cloneRecord(rec), expires: s.now().Add(ttl)}
	return nil
}

func cloneRecord(r otp.IdempotencyRecord) otp.IdempotencyRecord {
	if r.Body != nil {
		r.Body = append([]byte{}, r.Body...)
	}
	return r
}
