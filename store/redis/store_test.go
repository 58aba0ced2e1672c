package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/store/redis"
	"github.com/voiceotp/voiceotp/store/redis/redistest"
	"github.com/voiceotp/voiceotp/store/storetest"
)

// fresh empties the shared server and returns a new client (a "node") on it.
func fresh(t *testing.T) *goredis.Client {
	t.Helper()
	redistest.Need(t, srv)
	srv.Flush(t)
	return srv.Client(t)
}

func TestContract(t *testing.T) {
	redistest.Need(t, srv)
	storetest.Run(t, func(t *testing.T) otp.Store { return redis.New(fresh(t)) })
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func verification(t *testing.T, to string, now time.Time) *otp.Verification {
	t.Helper()
	sec, err := otp.NewSecret(nil, 6)
	if err != nil {
		t.Fatal(err)
	}
	return &otp.Verification{
		ID: "VE" + randHex(t, 16), To: to, Status: otp.StatusPending, Locale: "en", CodeLength: 6,
		CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute), MaxChecks: 5, Calls: []otp.Call{}, Secret: sec,
	}
}

func mustCreate(t *testing.T, s *redis.Store, v *otp.Verification, now time.Time) {
	t.Helper()
	if _, created, err := s.CreatePending(context.Background(), v, now); err != nil || !created {
		t.Fatalf("CreatePending = %v, %v", created, err)
	}
}

// TestCreatePendingAcrossNodes races 20 creators for one number over two clients, from each state the
// number can be in, and expects exactly one verification created, seen by everyone, with no trace of
// the refused ones.
func TestCreatePendingAcrossNodes(t *testing.T) {
	const to = "+15550001111"
	tests := []struct {
		name string
		// before puts the number in a state; it returns the id the racers must find, or "" if one of
		// them must create.
		before func(t *testing.T, s *redis.Store, c *goredis.Client, now time.Time) string
	}{
		{"FreshNumber", func(*testing.T, *redis.Store, *goredis.Client, time.Time) string { return "" }},
		{"PendingExists", func(t *testing.T, s *redis.Store, _ *goredis.Client, now time.Time) string {
			v := verification(t, to, now)
			mustCreate(t, s, v, now)
			return v.ID
		}},
		{"PreviousApproved", func(t *testing.T, s *redis.Store, _ *goredis.Client, now time.Time) string {
			v := verification(t, to, now)
			mustCreate(t, s, v, now)
			if _, err := s.Update(context.Background(), v.ID, func(x *otp.Verification) error {
				x.Status = otp.StatusApproved
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			return ""
		}},
		{"PreviousExpiredAtNow", func(t *testing.T, s *redis.Store, _ *goredis.Client, now time.Time) string {
			v := verification(t, to, now.Add(-time.Hour))
			mustCreate(t, s, v, now.Add(-time.Hour))
			return ""
		}},
		{"ClaimNamesADroppedRecord", func(t *testing.T, s *redis.Store, c *goredis.Client, now time.Time) string {
			v := verification(t, to, now)
			mustCreate(t, s, v, now)
			if err := c.Del(context.Background(), "ivr:{"+v.ID+"}:v").Err(); err != nil {
				t.Fatal(err)
			}
			return ""
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nodes := []*redis.Store{redis.New(fresh(t)), redis.New(srv.Client(t))}
			probe := srv.Client(t)
			now := time.Now()
			want := tc.before(t, nodes[0], probe, now)

			const n = 20
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				created []string
				seen    = map[string]int{}
				tried   []string
			)
			for i := range n {
				v := verification(t, to, now)
				tried = append(tried, v.ID)
				wg.Go(func() {
					got, ok, err := nodes[i%2].CreatePending(context.Background(), v, now)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						t.Errorf("CreatePending on node %d: %v", i%2, err)
						return
					}
					if ok {
						created = append(created, got.ID)
					}
					seen[got.ID]++
				})
			}
			wg.Wait()

			switch {
			case want == "" && len(created) != 1:
				t.Fatalf("created %d verifications, want 1", len(created))
			case want != "" && len(created) != 0:
				t.Fatalf("created %d verifications over a pending one, want 0", len(created))
			case want == "":
				want = created[0]
			}
			if len(seen) != 1 || seen[want] != n {
				t.Errorf("racers saw %v, want all %d to see %s", seen, n, want)
			}
			if claim, err := probe.Get(context.Background(), "ivr:num:{"+to+"}").Result(); err != nil || claim != want {
				t.Errorf("number claim = %q, %v; want %s", claim, err, want)
			}
			for _, id := range tried {
				_, err := nodes[0].Get(context.Background(), id)
				if id == want && err != nil {
					t.Errorf("the winner %s: %v", id, err)
				}
				if id != want && !errors.Is(err, otp.ErrNotFound) {
					t.Errorf("refused %s is stored: err = %v", id, err)
				}
			}
		})
	}
}

func TestKeysAndExpiry(t *testing.T) {
	tests := []struct {
		name      string
		opts      []redis.Option
		prefix    string
		retention time.Duration
	}{
		{"Defaults", nil, "ivr:", 24 * time.Hour},
		{"PrefixAndRetention", []redis.Option{redis.WithKeyPrefix("other:"), redis.WithRetention(time.Hour)}, "other:", time.Hour},
		{"NonPositiveRetentionIsDefault", []redis.Option{redis.WithRetention(-time.Second)}, "ivr:", 24 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fresh(t)
			s := redis.New(c, tc.opts...)
			now := time.Now()
			v := verification(t, "+15550002222", now)
			mustCreate(t, s, v, now)
			ctx := context.Background()
			wantTTL := time.Until(v.ExpiresAt.Add(tc.retention))
			for _, key := range []string{tc.prefix + "{" + v.ID + "}:v", tc.prefix + "num:{" + v.To + "}"} {
				ttl, err := c.PTTL(ctx, key).Result()
				if err != nil {
					t.Fatal(err)
				}
				if d := wantTTL - ttl; d < -2*time.Millisecond || d > 5*time.Second {
					t.Errorf("PTTL %s = %v, want about %v", key, ttl, wantTTL)
				}
			}
			if got, _ := c.Get(ctx, tc.prefix+"num:{"+v.To+"}").Result(); got != v.ID {
				t.Errorf("number claim = %q, want %s", got, v.ID)
			}
			// An update moves the expiry with ExpiresAt.
			if _, err := s.Update(ctx, v.ID, func(x *otp.Verification) error {
				x.ExpiresAt = x.ExpiresAt.Add(time.Hour)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			ttl, _ := c.PTTL(ctx, tc.prefix+"{"+v.ID+"}:v").Result()
			if d := wantTTL + time.Hour - ttl; d < -2*time.Millisecond || d > 5*time.Second {
				t.Errorf("PTTL after moving ExpiresAt = %v, want about %v", ttl, wantTTL+time.Hour)
			}
		})
	}
}

func TestRetentionDrops(t *testing.T) {
	s := redis.New(fresh(t), redis.WithRetention(time.Millisecond))
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	v := verification(t, "+15550003333", past)
	mustCreate(t, s, v, past)
	ops := []struct {
		name string
		do   func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, v.ID); return err }},
		{"Update", func() error {
			_, err := s.Update(ctx, v.ID, func(*otp.Verification) error { return nil })
			return err
		}},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			if err := op.do(); !errors.Is(err, otp.ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestUpdateMustNotChangeIdentity(t *testing.T) {
	tests := []struct {
		name string
		fn   func(v *otp.Verification)
	}{
		{"ID", func(v *otp.Verification) { v.ID = "VE2" }},
		{"To", func(v *otp.Verification) { v.To = "+15550009999" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := redis.New(fresh(t))
			now := time.Now()
			v := verification(t, "+15550004444", now)
			mustCreate(t, s, v, now)
			if _, err := s.Update(context.Background(), v.ID, func(x *otp.Verification) error { tc.fn(x); return nil }); err == nil {
				t.Fatal("Update changed an identity field without error")
			}
			if got, err := s.Get(context.Background(), v.ID); err != nil || got.To != v.To {
				t.Errorf("after the refused update: %v, %v", got, err)
			}
		})
	}
}

// TestUpdateConflict makes another node write the record while fn runs, which must fail the first
// round: with one attempt Update gives up unwritten, with two fn runs again on the other node's value.
func TestUpdateConflict(t *testing.T) {
	tests := []struct {
		name      string
		attempts  int
		wantErr   error
		wantRuns  int
		wantFails int // FailedChecks stored at the end
	}{
		{"OneAttemptGivesUp", 1, redis.ErrContention, 1, 1},
		{"SecondRoundSeesTheOtherWrite", 2, nil, 2, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := redis.New(fresh(t), redis.WithUpdateAttempts(tc.attempts))
			b := redis.New(srv.Client(t))
			ctx := context.Background()
			now := time.Now()
			v := verification(t, "+15550005555", now)
			mustCreate(t, a, v, now)
			runs := 0
			got, err := a.Update(ctx, v.ID, func(x *otp.Verification) error {
				runs++
				if runs == 1 {
					if _, err := b.Update(ctx, v.ID, func(y *otp.Verification) error { y.FailedChecks++; return nil }); err != nil {
						t.Fatal(err)
					}
				}
				x.FailedChecks++
				return nil
			})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Update err = %v, want %v", err, tc.wantErr)
			}
			if runs != tc.wantRuns {
				t.Errorf("fn ran %d times, want %d", runs, tc.wantRuns)
			}
			if err == nil && got.FailedChecks != tc.wantFails {
				t.Errorf("returned FailedChecks = %d, want %d", got.FailedChecks, tc.wantFails)
			}
			stored, err := b.Get(ctx, v.ID)
			if err != nil {
				t.Fatal(err)
			}
			if stored.FailedChecks != tc.wantFails {
				t.Errorf("stored FailedChecks = %d, want %d", stored.FailedChecks, tc.wantFails)
			}
		})
	}
}

func TestIdempotencyAcrossNodes(t *testing.T) {
	nodes := []*redis.Store{redis.New(fresh(t)), redis.New(srv.Client(t))}
	const n = 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners int
	)
	for i := range n {
		wg.Go(func() {
			got, err := nodes[i%2].ClaimIdempotency(context.Background(), "k1", otp.IdempotencyRecord{BodyHash: "h"}, time.Minute)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("claim: %v", err)
			} else if got == nil {
				winners++
			}
		})
	}
	wg.Wait()
	if winners != 1 {
		t.Errorf("%d claims over two nodes: %d winners, want 1", n, winners)
	}
}

func TestIdempotencyRefusesNonPositiveTTL(t *testing.T) {
	s := redis.New(fresh(t))
	for _, ttl := range []time.Duration{0, -time.Second} {
		t.Run(ttl.String(), func(t *testing.T) {
			if _, err := s.ClaimIdempotency(context.Background(), "k", otp.IdempotencyRecord{}, ttl); err == nil {
				t.Error("ClaimIdempotency accepted it")
			}
			if err := s.CompleteIdempotency(context.Background(), "k", otp.IdempotencyRecord{}, ttl); err == nil {
				t.Error("CompleteIdempotency accepted it")
			}
		})
	}
}

// TestRedisOutage breaks a server of the test's own mid-test, killed or frozen: every operation must
// fail within the client's timeouts rather than hang or approve, and the same Store must work again
// once the server is back, with no restart of the client.
func TestRedisOutage(t *testing.T) {
	tests := []struct {
		name    string
		outage  func(*redistest.Server) error
		restore func(*redistest.Server) error
		kept    bool // data survives the outage
	}{
		{"Killed", func(s *redistest.Server) error { s.Kill(); return nil }, (*redistest.Server).Restart, false},
		{"Frozen", (*redistest.Server).Freeze, (*redistest.Server).Thaw, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := redistest.New(t)
			c := rs.Client(t)
			s, l := redis.New(c), redis.NewCounters(c)
			ctx := context.Background()
			now := time.Now()
			v := verification(t, "+15550006666", now)
			mustCreate(t, s, v, now)

			ops := []struct {
				name string
				do   func() error
			}{
				{"Ping", func() error { return s.Ping(ctx) }},
				{"Get", func() error { _, err := s.Get(ctx, v.ID); return err }},
				{"Update", func() error {
					_, err := s.Update(ctx, v.ID, func(x *otp.Verification) error { x.Status = otp.StatusApproved; return nil })
					return err
				}},
				{"CreatePending", func() error {
					_, _, err := s.CreatePending(ctx, verification(t, "+15550007777", now), now)
					return err
				}},
				{"ClaimIdempotency", func() error {
					_, err := s.ClaimIdempotency(ctx, "k", otp.IdempotencyRecord{}, time.Minute)
					return err
				}},
				{"TakeToken", func() error { _, _, err := l.TakeToken(ctx, "global", 10, 1); return err }},
				{"AcquireNumber", func() error { _, err := l.AcquireNumber(ctx, v.To, "CA1", time.Minute); return err }},
			}

			if err := tc.outage(rs); err != nil {
				t.Fatal(err)
			}
			for _, op := range ops {
				start := time.Now()
				done := make(chan error, 1)
				go func() { done <- op.do() }()
				select {
				case err := <-done:
					if err == nil {
						t.Errorf("%s during the outage succeeded", op.name)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s hung for 10s during the outage", op.name)
				}
				t.Logf("%s failed after %v", op.name, time.Since(start).Round(time.Millisecond))
			}

			if err := tc.restore(rs); err != nil {
				t.Fatal(err)
			}
			// Broken pooled connections are dropped as they fail; give the client a few tries.
			deadline := time.Now().Add(5 * time.Second)
			for s.Ping(ctx) != nil {
				if time.Now().After(deadline) {
					t.Fatal("the client did not recover within 5s")
				}
				time.Sleep(10 * time.Millisecond)
			}
			got, err := s.Get(ctx, v.ID)
			switch {
			case tc.kept && (err != nil || got.Status != otp.StatusPending):
				t.Errorf("after the outage Get = %v, %v; want it pending (no update applied)", got, err)
			case !tc.kept && !errors.Is(err, otp.ErrNotFound):
				t.Errorf("after a restart without persistence Get err = %v, want ErrNotFound", err)
			}
			mustCreate(t, s, verification(t, "+15550008888", now), now)
		})
	}
}
