package memory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/internal/testclock"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/store/memory"
	"github.com/voiceotp/voiceotp/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) otp.Store { return memory.New() })
}

func verification(id, to string, now time.Time) *otp.Verification {
	return &otp.Verification{ID: id, To: to, Status: otp.StatusPending, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute), Calls: []otp.Call{}}
}

func TestRetention(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	expires := t0.Add(10 * time.Minute)
	tests := []struct {
		name     string
		at       time.Time
		wantKept bool
	}{
		{"BeforeExpiry", t0.Add(time.Minute), true},
		{"JustAfterExpiry", expires.Add(time.Second), true},
		{"JustBeforeRetentionEnds", expires.Add(time.Hour - time.Nanosecond), true},
		{"WhenRetentionEnds", expires.Add(time.Hour), false},
		{"DaysLater", expires.Add(72 * time.Hour), false},
	}
	ops := []struct {
		name string
		do   func(s *memory.Store) error
	}{
		{"Get", func(s *memory.Store) error { _, err := s.Get(context.Background(), "VE1"); return err }},
		{"Update", func(s *memory.Store) error {
			_, err := s.Update(context.Background(), "VE1", func(*otp.Verification) error { return nil })
			return err
		}},
	}
	for _, tc := range tests {
		for _, op := range ops {
			t.Run(tc.name+"/"+op.name, func(t *testing.T) {
				c := testclock.New(t0)
				s := memory.New(memory.WithClock(c.Now), memory.WithRetention(time.Hour), memory.WithSweepInterval(time.Hour))
				if _, _, err := s.CreatePending(context.Background(), verification("VE1", "+15550001111", t0), t0); err != nil {
					t.Fatal(err)
				}
				c.Set(tc.at)
				err := op.do(s)
				if tc.wantKept && err != nil {
					t.Errorf("%s: %v, want kept", op.name, err)
				}
				if !tc.wantKept && !errors.Is(err, otp.ErrNotFound) {
					t.Errorf("%s: err = %v, want ErrNotFound", op.name, err)
				}
				if n, _ := s.Len(); n != map[bool]int{true: 1, false: 0}[tc.wantKept] {
					t.Errorf("Len = %d after %s", n, op.name)
				}
			})
		}
	}
}

func TestLazySweepBoundsMemory(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := testclock.New(t0)
	s := memory.New(memory.WithClock(c.Now), memory.WithRetention(time.Hour), memory.WithSweepInterval(time.Minute))
	ctx := context.Background()
	// One verification and one idempotency key a minute for a day, never read back: only those inside
	// TTL + retention (70 minutes) may stay.
	for i := range 24 * 60 {
		now := t0.Add(time.Duration(i) * time.Minute)
		c.Set(now)
		id := "VE" + time.Duration(i).String()
		if _, created, err := s.CreatePending(ctx, verification(id, "+1555"+id, now), now); err != nil || !created {
			t.Fatalf("create %d: %v %v", i, created, err)
		}
		if _, err := s.ClaimIdempotency(ctx, id, otp.IdempotencyRecord{}, 24*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	v, k := s.Len()
	if v > 72 || k > 26 {
		t.Errorf("after a day Len = %d verifications, %d keys; want at most 72 and 26", v, k)
	}
}

func TestRunSweeps(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := testclock.New(t0)
	s := memory.New(memory.WithClock(c.Now), memory.WithRetention(time.Minute), memory.WithSweepInterval(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	if _, _, err := s.CreatePending(ctx, verification("VE1", "+15550001111", t0), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimIdempotency(ctx, "k", otp.IdempotencyRecord{}, time.Minute); err != nil {
		t.Fatal(err)
	}
	c.Set(t0.Add(time.Hour))
	// Run's ticker is real time; wait for its sweep with a generous deadline.
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, k := s.Len()
		if v == 0 && k == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run did not sweep: Len = %d, %d", v, k)
		}
		time.Sleep(time.Millisecond) // the poll's pace
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

func TestUpdateMustNotChangeIdentity(t *testing.T) {
	tests := []struct {
		name string
		fn   func(v *otp.Verification)
	}{
		{"ID", func(v *otp.Verification) { v.ID = "VE2" }},
		{"To", func(v *otp.Verification) { v.To = "+15550002222" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := memory.New()
			now := time.Now()
			if _, _, err := s.CreatePending(context.Background(), verification("VE1", "+15550001111", now), now); err != nil {
				t.Fatal(err)
			}
			_, err := s.Update(context.Background(), "VE1", func(v *otp.Verification) error { tc.fn(v); return nil })
			if err == nil {
				t.Fatal("Update changed an identity field without error")
			}
			got, err := s.Get(context.Background(), "VE1")
			if err != nil || got.To != "+15550001111" {
				t.Errorf("after refused update: %v, %v", got, err)
			}
		})
	}
}

func TestIdempotencyRefusesNonPositiveTTL(t *testing.T) {
	for _, ttl := range []time.Duration{0, -time.Second} {
		t.Run(ttl.String(), func(t *testing.T) {
			s := memory.New()
			if _, err := s.ClaimIdempotency(context.Background(), "k", otp.IdempotencyRecord{}, ttl); err == nil {
				t.Error("ClaimIdempotency accepted it")
			}
			if err := s.CompleteIdempotency(context.Background(), "k", otp.IdempotencyRecord{}, ttl); err == nil {
				t.Error("CompleteIdempotency accepted it")
			}
		})
	}
}

func BenchmarkUpdate(b *testing.B) {
	s := memory.New()
	now := time.Now()
	if _, _, err := s.CreatePending(context.Background(), verification("VE1", "+15550001111", now), now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Update(context.Background(), "VE1", func(v *otp.Verification) error { v.FailedChecks++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

func TestExpiriesContract(t *testing.T) {
	storetest.RunExpiries(t, func(t *testing.T) storetest.Expiries { return memory.NewExpiries() })
}
