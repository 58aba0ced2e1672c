package otp

import (
	"context"
	"time"
)

// Store keeps verifications and idempotency records for a [Service]. Implementations live in package
// store/... (memory, Redis); the contract tests in store/storetest hold every implementation to the
// rules below.
//
// Every method is safe for concurrent use, also from several processes sharing one backend, and every
// method is atomic: a reader never sees half of a write. Values passed in are not retained and values
// returned are the caller's own copies. A method called with a done context returns an error that wraps
// the context's error, and a cancel mid-call may or may not have applied the write.
//
// The operations map onto Redis: CreatePending is a set-if-absent on a per-number key plus a write,
// Update is a WATCH/MULTI (or Lua) read-modify-write, idempotency records are SET NX with a TTL.
//
// Retention: a verification may be dropped some time after ExpiresAt (the memory store keeps it 24 h
// past expiry by default); after that every method reports ErrNotFound for it.
type Store interface {
	// CreatePending atomically stores v unless the number v.To already has a verification that is
	// pending and unexpired at now (Status == StatusPending and now before ExpiresAt); then it stores
	// nothing and returns that verification with created == false. So at most one pending verification
	// exists per number. A stored verification that is pending but expired at now does not block.
	CreatePending(ctx context.Context, v *Verification, now time.Time) (got *Verification, created bool, err error)

	// Get returns the verification with that id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Verification, error)

	// Update atomically reads the verification id, applies fn to a copy and writes the copy back, and
	// returns the written value. fn may run more than once (optimistic retry on a concurrent write), so
	// it must depend only on its argument and on values it resets itself. An error from fn aborts
	// without writing and is returned unchanged. fn must not change ID or To and must not call the Store.
	// A missing id returns ErrNotFound without calling fn.
	Update(ctx context.Context, id string, fn func(v *Verification) error) (*Verification, error)

	// ClaimIdempotency stores rec under key for ttl if the key is absent (or its record expired) and
	// returns (nil, nil): the caller owns the key and runs the request. Otherwise it stores nothing and
	// returns the existing record.
	ClaimIdempotency(ctx context.Context, key string, rec IdempotencyRecord, ttl time.Duration) (*IdempotencyRecord, error)

	// CompleteIdempotency stores rec (normally the claimed record with Done, Status and Body set) under
	// key for ttl, replacing the claim.
	CompleteIdempotency(ctx context.Context, key string, rec IdempotencyRecord, ttl time.Duration) error
}

// IdempotencyRecord remembers one request made with an Idempotency-Key, so that a repeat of it gets the
// same response and does not run twice.
type IdempotencyRecord struct {
	// BodyHash identifies the request body (for example hex SHA-256 of it); the same key with another
	// body is refused.
	BodyHash string
	// Done says the request finished and Status and Body hold its response; a claimed record that is
	// not Done is still running (or its node died).
	Done bool
	// Status is the HTTP status of the response.
	Status int
	// Body is the response body.
	Body []byte
}
