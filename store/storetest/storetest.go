// Package storetest is the contract test suite every otp.Store implementation runs: the rules written
// on otp.Store, checked the same way against the memory store and the Redis store.
//
// It owns only the tests; it holds no store and imports no implementation. An implementation calls
// [Run] from its own _test.go file with a constructor that returns an empty store.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/otp"
)

// Run runs the contract tests, each as a named subtest on a fresh store from newStore. newStore must
// return an empty store (or one where the numbers and keys the suite makes up are unused) and may
// register cleanup with t.Cleanup.
//
// Stores keep time by their own clock (Redis keeps TTLs itself), so the idempotency TTL test uses
// short real TTLs and polls; everything else passes the time explicitly through CreatePending's now.
func Run(t *testing.T, newStore func(t *testing.T) otp.Store) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s otp.Store)
	}{
		{"CreateThenGet", testCreateThenGet},
		{"GetUnknownIsNotFound", testGetUnknown},
		{"UpdateUnknownIsNotFound", testUpdateUnknown},
		{"SecretAndCountersRoundTrip", testRoundTrip},
		{"OnePendingPerNumber", testOnePending},
		{"ConcurrentCreatePendingCreatesOne", testConcurrentCreate},
		{"OtherNumbersDoNotBlock", testOtherNumbers},
		{"NonPendingDoesNotBlock", testNonPendingDoesNotBlock},
		{"ExpiredPendingDoesNotBlock", testExpiredDoesNotBlock},
		{"UpdateWritesAndReturns", testUpdateWrites},
		{"ConcurrentUpdatesAreAtomic", testConcurrentUpdate},
		{"UpdateErrorAborts", testUpdateErrorAborts},
		{"ReturnedValuesAreCopies", testCopies},
		{"IdempotencyClaimAndComplete", testIdempotency},
		{"IdempotencyKeysAreIndependent", testIdempotencyKeys},
		{"IdempotencyTTLExpires", testIdempotencyTTL},
		{"ConcurrentClaimsOneWinner", testConcurrentClaim},
		{"CanceledContext", testCanceledContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newStore(t))
		})
	}
}

// base is a real time, rounded, so stores that keep TTLs by the wall clock see sane expiries.
func base() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// number returns a made-up E.164 number unique to this run, so stores shared between runs do not clash.
func number(t *testing.T) string {
	t.Helper()
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	n := "+1555"
	for _, c := range b {
		n += string(rune('0'+c%10)) + string(rune('0'+c/10%10))
	}
	return n
}

// newVerification returns a pending verification for to, created at now, expiring 10 minutes later,
// with a real secret, a call with an event, and metadata: every kind of field a store must keep.
func newVerification(t *testing.T, to string, now time.Time) *otp.Verification {
	t.Helper()
	sec, err := otp.NewSecret(nil, 6)
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	dialed := now.Add(time.Second)
	return &otp.Verification{
		ID:          "VE" + randHex(t, 16),
		To:          to,
		Status:      otp.StatusPending,
		Locale:      "en",
		CodeLength:  6,
		CreatedAt:   now,
		ExpiresAt:   now.Add(10 * time.Minute),
		MaxChecks:   5,
		CallbackURL: "https://example.com/hook",
		Metadata:    json.RawMessage(`{"user":"u1"}`),
		Calls: []otp.Call{{
			ID:       "CA" + randHex(t, 16),
			Status:   otp.CallDialing,
			QueuedAt: now,
			DialedAt: &dialed,
			Events:   []otp.Event{{Type: "digit", At: dialed, Digit: "7", Accepted: &yes}},
		}},
		Secret: sec,
	}
}

// same fails unless got and want are the same verification, field for field, the Secret included.
func same(t *testing.T, got, want *otp.Verification) {
	t.Helper()
	if got == nil {
		t.Fatal("got nil verification")
	}
	if !got.Secret.Equal(want.Secret) {
		t.Error("Secret differs")
	}
	if got.FailedChecks != want.FailedChecks || got.MaxChecks != want.MaxChecks {
		t.Errorf("checks = %d/%d, want %d/%d", got.FailedChecks, got.MaxChecks, want.FailedChecks, want.MaxChecks)
	}
	// The API encoding covers every other field; times compare by instant, not representation.
	g, w := apiJSON(t, got), apiJSON(t, want)
	if !bytes.Equal(g, w) {
		t.Errorf("verification differs:\n got %s\nwant %s", g, w)
	}
}

func apiJSON(t *testing.T, v *otp.Verification) []byte {
	t.Helper()
	c := v.Clone()
	c.CreatedAt, c.ExpiresAt = c.CreatedAt.UTC(), c.ExpiresAt.UTC()
	for i := range c.Calls {
		k := &c.Calls[i]
		k.QueuedAt = k.QueuedAt.UTC()
		for _, p := range []**time.Time{&k.DialedAt, &k.RingingAt, &k.AnsweredAt, &k.GatePassedAt, &k.EndedAt} {
			if *p != nil {
				u := (*p).UTC()
				*p = &u
			}
		}
		for j := range k.Events {
			k.Events[j].At = k.Events[j].At.UTC()
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func create(t *testing.T, s otp.Store, v *otp.Verification, now time.Time) *otp.Verification {
	t.Helper()
	got, created, err := s.CreatePending(context.Background(), v, now)
	if err != nil {
		t.Fatalf("CreatePending: %v", err)
	}
	if !created {
		t.Fatalf("CreatePending: created = false, returned %s", got.ID)
	}
	return got
}

func testCreateThenGet(t *testing.T, s otp.Store) {
	now := base()
	v := newVerification(t, number(t), now)
	same(t, create(t, s, v, now), v)
	got, err := s.Get(context.Background(), v.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	same(t, got, v)
}

func testGetUnknown(t *testing.T, s otp.Store) {
	_, err := s.Get(context.Background(), "VE"+randHex(t, 16))
	if !errors.Is(err, otp.ErrNotFound) {
		t.Fatalf("Get unknown: err = %v, want ErrNotFound", err)
	}
}

func testUpdateUnknown(t *testing.T, s otp.Store) {
	called := false
	_, err := s.Update(context.Background(), "VE"+randHex(t, 16), func(*otp.Verification) error {
		called = true
		return nil
	})
	if !errors.Is(err, otp.ErrNotFound) {
		t.Fatalf("Update unknown: err = %v, want ErrNotFound", err)
	}
	if called {
		t.Error("fn ran for an unknown id")
	}
}

func testRoundTrip(t *testing.T, s otp.Store) {
	now := base()
	custom, err := otp.NewCustomSecret("0042")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		secret otp.Secret
	}{
		{"hotp", newVerification(t, "", now).Secret},
		{"custom", custom},
		{"zero", otp.Secret{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerification(t, number(t), now)
			v.Secret = tc.secret
			create(t, s, v, now)
			got, err := s.Update(context.Background(), v.ID, func(x *otp.Verification) error {
				x.FailedChecks = 3
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			v.FailedChecks = 3
			same(t, got, v)
			if got, err = s.Get(context.Background(), v.ID); err != nil {
				t.Fatal(err)
			}
			same(t, got, v)
		})
	}
}

func testOnePending(t *testing.T, s otp.Store) {
	now := base()
	to := number(t)
	first := newVerification(t, to, now)
	create(t, s, first, now)
	second := newVerification(t, to, now)
	got, created, err := s.CreatePending(context.Background(), second, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Fatal("second CreatePending for a pending number: created = true")
	}
	same(t, got, first)
	if _, err := s.Get(context.Background(), second.ID); !errors.Is(err, otp.ErrNotFound) {
		t.Errorf("the refused verification was stored: Get err = %v", err)
	}
}

func testConcurrentCreate(t *testing.T, s otp.Store) {
	const n = 20
	now := base()
	to := number(t)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		ids     = map[string]int{}
	)
	for range n {
		v := newVerification(t, to, now)
		wg.Go(func() {
			got, ok, err := s.CreatePending(context.Background(), v, now)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("CreatePending: %v", err)
				return
			}
			if ok {
				created++
			}
			ids[got.ID]++
		})
	}
	wg.Wait()
	if created != 1 {
		t.Errorf("%d concurrent creates for one number created %d, want 1", n, created)
	}
	if len(ids) != 1 {
		t.Errorf("callers saw %d different verifications, want 1: %v", len(ids), ids)
	}
}

func testOtherNumbers(t *testing.T, s otp.Store) {
	now := base()
	create(t, s, newVerification(t, number(t), now), now)
	create(t, s, newVerification(t, number(t), now), now)
}

func testNonPendingDoesNotBlock(t *testing.T, s otp.Store) {
	for _, st := range []otp.Status{otp.StatusApproved, otp.StatusCanceled, otp.StatusExpired, otp.StatusMaxAttempts, otp.StatusFailed} {
		t.Run(string(st), func(t *testing.T) {
			now := base()
			to := number(t)
			first := newVerification(t, to, now)
			create(t, s, first, now)
			if _, err := s.Update(context.Background(), first.ID, func(v *otp.Verification) error {
				v.Status = st
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			create(t, s, newVerification(t, to, now), now)
			if _, err := s.Get(context.Background(), first.ID); err != nil {
				t.Errorf("the earlier verification is gone: %v", err)
			}
		})
	}
}

func testExpiredDoesNotBlock(t *testing.T, s otp.Store) {
	now := base()
	to := number(t)
	first := newVerification(t, to, now)
	create(t, s, first, now)
	later := first.ExpiresAt // expiry is exclusive: pending means now < ExpiresAt
	second := newVerification(t, to, later)
	same(t, create(t, s, second, later), second)
	// And the new one blocks in turn.
	third := newVerification(t, to, later)
	got, created, err := s.CreatePending(context.Background(), third, later.Add(time.Second))
	if err != nil || created || got.ID != second.ID {
		t.Fatalf("CreatePending after the new one = (%v, %v, %v), want (%s, false, nil)", got, created, err, second.ID)
	}
}

func testUpdateWrites(t *testing.T, s otp.Store) {
	now := base()
	v := newVerification(t, number(t), now)
	create(t, s, v, now)
	ended := now.Add(time.Minute)
	got, err := s.Update(context.Background(), v.ID, func(x *otp.Verification) error {
		x.Status = otp.StatusApproved
		x.Calls[0].Status = otp.CallDelivered
		x.Calls[0].EndedAt = &ended
		x.Calls[0].Events = append(x.Calls[0].Events, otp.Event{Type: "hangup", At: ended, By: "local"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v.Status = otp.StatusApproved
	v.Calls[0].Status = otp.CallDelivered
	v.Calls[0].EndedAt = &ended
	v.Calls[0].Events = append(v.Calls[0].Events, otp.Event{Type: "hangup", At: ended, By: "local"})
	same(t, got, v)
	stored, err := s.Get(context.Background(), v.ID)
	if err != nil {
		t.Fatal(err)
	}
	same(t, stored, v)
}

func testConcurrentUpdate(t *testing.T, s otp.Store) {
	const n = 50
	now := base()
	v := newVerification(t, number(t), now)
	create(t, s, v, now)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := s.Update(context.Background(), v.ID, func(x *otp.Verification) error {
				x.FailedChecks++
				return nil
			}); err != nil {
				t.Errorf("Update: %v", err)
			}
		})
	}
	wg.Wait()
	got, err := s.Get(context.Background(), v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.FailedChecks != n {
		t.Errorf("%d concurrent increments left FailedChecks = %d", n, got.FailedChecks)
	}
}

func testUpdateErrorAborts(t *testing.T, s otp.Store) {
	now := base()
	v := newVerification(t, number(t), now)
	create(t, s, v, now)
	errStop := errors.New("storetest: stop")
	got, err := s.Update(context.Background(), v.ID, func(x *otp.Verification) error {
		x.Status = otp.StatusApproved
		x.FailedChecks = 4
		x.Calls = nil
		return errStop
	})
	if err != errStop {
		t.Errorf("Update err = %v, want fn's error unchanged", err)
	}
	if got != nil {
		t.Errorf("Update returned %v with an error", got.ID)
	}
	stored, err := s.Get(context.Background(), v.ID)
	if err != nil {
		t.Fatal(err)
	}
	same(t, stored, v)
}

func testCopies(t *testing.T, s otp.Store) {
	now := base()
	v := newVerification(t, number(t), now)
	want := v.Clone()
	mutate := func(x *otp.Verification) {
		x.Status = otp.StatusFailed
		x.FailedChecks = 9
		x.Metadata[2] = 'X'
		x.Calls[0].Status = otp.CallBusy
		*x.Calls[0].DialedAt = now.Add(time.Hour)
		*x.Calls[0].Events[0].Accepted = false
		x.Calls[0].Events[0].Digit = "9"
		x.Calls[0].Events = append(x.Calls[0].Events, otp.Event{Type: "hangup"})
		x.Calls = append(x.Calls, otp.Call{ID: "CAx"})
	}
	check := func(step string) {
		t.Helper()
		got, err := s.Get(context.Background(), want.ID)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(step, func(t *testing.T) { same(t, got, want) })
	}

	created := create(t, s, v, now)
	mutate(v)
	check("AfterChangingTheArgumentOfCreate")
	mutate(created)
	check("AfterChangingTheResultOfCreate")
	got, err := s.Get(context.Background(), want.ID)
	if err != nil {
		t.Fatal(err)
	}
	mutate(got)
	check("AfterChangingTheResultOfGet")
	var inside *otp.Verification
	upd, err := s.Update(context.Background(), want.ID, func(x *otp.Verification) error {
		inside = x
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mutate(upd)
	mutate(inside)
	check("AfterChangingTheResultOfUpdateAndFnsArgument")
	dup := newVerification(t, want.To, now)
	blocked, _, err := s.CreatePending(context.Background(), dup, now)
	if err != nil {
		t.Fatal(err)
	}
	mutate(blocked)
	check("AfterChangingTheExistingReturnedByCreate")
}

func testIdempotency(t *testing.T, s otp.Store) {
	ctx := context.Background()
	key := "idem-" + randHex(t, 8)
	claim := otp.IdempotencyRecord{BodyHash: "h1"}
	got, err := s.ClaimIdempotency(ctx, key, claim, time.Hour)
	if err != nil || got != nil {
		t.Fatalf("first claim = (%v, %v), want (nil, nil)", got, err)
	}
	got, err = s.ClaimIdempotency(ctx, key, otp.IdempotencyRecord{BodyHash: "h2"}, time.Hour)
	if err != nil || got == nil || got.BodyHash != "h1" || got.Done {
		t.Fatalf("second claim = (%+v, %v), want the first, not done", got, err)
	}
	done := otp.IdempotencyRecord{BodyHash: "h1", Done: true, Status: 201, Body: []byte(`{"id":"VE1"}`)}
	if err := s.CompleteIdempotency(ctx, key, done, time.Hour); err != nil {
		t.Fatal(err)
	}
	done.Body[0] = 'X' // the store kept its own copy
	got, err = s.ClaimIdempotency(ctx, key, claim, time.Hour)
	if err != nil || got == nil {
		t.Fatalf("claim after complete = (%v, %v)", got, err)
	}
	if !got.Done || got.Status != 201 || got.BodyHash != "h1" || string(got.Body) != `{"id":"VE1"}` {
		t.Errorf("claim after complete = %+v (body %q)", got, got.Body)
	}
	got.Body[0] = 'Y'
	again, err := s.ClaimIdempotency(ctx, key, claim, time.Hour)
	if err != nil || again == nil || string(again.Body) != `{"id":"VE1"}` {
		t.Errorf("changing a returned record changed the store: %+v, %v", again, err)
	}
}

func testIdempotencyKeys(t *testing.T, s otp.Store) {
	ctx := context.Background()
	for i := range 3 {
		got, err := s.ClaimIdempotency(ctx, "idem-"+randHex(t, 8), otp.IdempotencyRecord{BodyHash: "h"}, time.Hour)
		if err != nil || got != nil {
			t.Fatalf("claim %d of a fresh key = (%v, %v), want (nil, nil)", i, got, err)
		}
	}
}

func testIdempotencyTTL(t *testing.T, s otp.Store) {
	ctx := context.Background()
	const ttl = 50 * time.Millisecond
	for _, tc := range []struct {
		name     string
		complete bool
	}{{"Claimed", false}, {"Completed", true}} {
		t.Run(tc.name, func(t *testing.T) {
			key := "idem-" + randHex(t, 8)
			if got, err := s.ClaimIdempotency(ctx, key, otp.IdempotencyRecord{BodyHash: "old"}, ttl); err != nil || got != nil {
				t.Fatalf("claim = (%v, %v)", got, err)
			}
			if tc.complete {
				if err := s.CompleteIdempotency(ctx, key, otp.IdempotencyRecord{BodyHash: "old", Done: true, Status: 201}, ttl); err != nil {
					t.Fatal(err)
				}
			}
			// TTLs run on the store's own clock (Redis's, for the Redis store), so poll.
			deadline := time.Now().Add(5 * time.Second)
			for {
				got, err := s.ClaimIdempotency(ctx, key, otp.IdempotencyRecord{BodyHash: "new"}, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				if got == nil {
					break
				}
				if got.BodyHash != "old" {
					t.Fatalf("existing record = %+v", got)
				}
				if time.Now().After(deadline) {
					t.Fatalf("record with ttl %v still there after 5s", ttl)
				}
				time.Sleep(ttl / 5)
			}
			got, err := s.ClaimIdempotency(ctx, key, otp.IdempotencyRecord{BodyHash: "other"}, time.Hour)
			if err != nil || got == nil || got.BodyHash != "new" {
				t.Fatalf("after re-claiming an expired key, claim = (%+v, %v), want the new record", got, err)
			}
		})
	}
}

func testConcurrentClaim(t *testing.T, s otp.Store) {
	const n = 20
	key := "idem-" + randHex(t, 8)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners int
	)
	for range n {
		wg.Go(func() {
			got, err := s.ClaimIdempotency(context.Background(), key, otp.IdempotencyRecord{BodyHash: "h"}, time.Hour)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("claim: %v", err)
			}
			if got == nil {
				winners++
			}
		})
	}
	wg.Wait()
	if winners != 1 {
		t.Errorf("%d concurrent claims of one key: %d winners, want 1", n, winners)
	}
}

func testCanceledContext(t *testing.T, s otp.Store) {
	now := base()
	v := newVerification(t, number(t), now)
	create(t, s, v, now)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fnRan := false
	calls := []struct {
		name string
		call func() error
	}{
		{"CreatePending", func() error {
			_, _, err := s.CreatePending(ctx, newVerification(t, number(t), now), now)
			return err
		}},
		{"Get", func() error { _, err := s.Get(ctx, v.ID); return err }},
		{"Update", func() error {
			_, err := s.Update(ctx, v.ID, func(*otp.Verification) error { fnRan = true; return nil })
			return err
		}},
		{"ClaimIdempotency", func() error {
			_, err := s.ClaimIdempotency(ctx, "idem-"+randHex(t, 8), otp.IdempotencyRecord{}, time.Hour)
			return err
		}},
		{"CompleteIdempotency", func() error {
			return s.CompleteIdempotency(ctx, "idem-"+randHex(t, 8), otp.IdempotencyRecord{}, time.Hour)
		}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
		})
	}
	if fnRan {
		t.Error("Update ran fn with a canceled context")
	}
}
