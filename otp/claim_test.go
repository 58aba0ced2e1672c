package otp_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/otp"
)

func TestClaimCall(t *testing.T) {
	ctx := context.Background()
	t.Run("QueuedIsClaimedOnce", func(t *testing.T) {
		h := newHarness(t, otp.Config{})
		v, callID := h.start(t, otp.StartRequest{})
		got, code, err := h.svc.ClaimCall(ctx, v.ID, callID, "node-a")
		if err != nil || code != h.code(t, v.ID) {
			t.Fatalf("ClaimCall = %v (code matches: %v)", err, code == h.code(t, v.ID))
		}
		c := got.Call(callID)
		if c.Status != otp.CallDialing || c.Node != "node-a" || c.ClaimedAt == nil || !c.ClaimedAt.Equal(t0) {
			t.Errorf("claimed call = %+v", c)
		}
		h.clock.Advance(time.Second)
		again, code, err := h.svc.ClaimCall(ctx, v.ID, callID, "node-b")
		if !errors.Is(err, otp.ErrCallClaimed) || code != "" {
			t.Fatalf("second claim: err %v, code given %v; want ErrCallClaimed and no code", err, code != "")
		}
		if c := again.Call(callID); c.Node != "node-a" || !c.ClaimedAt.Equal(t0) {
			t.Errorf("the second claim changed the call: %+v", c)
		}
	})
	t.Run("ClaimedSurvivesTheVerificationsEnd", func(t *testing.T) {
		h := newHarness(t, otp.Config{})
		v, callID := h.start(t, otp.StartRequest{})
		if _, _, err := h.svc.ClaimCall(ctx, v.ID, callID, "node-a"); err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.Check(ctx, v.ID, h.code(t, v.ID)); err != nil {
			t.Fatal(err)
		}
		// A job delivered again after its node died must still see the claim, not a gone verification:
		// the call may be live, and whoever reclaims it waits it out.
		if _, _, err := h.svc.ClaimCall(ctx, v.ID, callID, "node-b"); !errors.Is(err, otp.ErrCallClaimed) {
			t.Errorf("claim after approval = %v, want ErrCallClaimed", err)
		}
	})
	gone := []struct {
		name string
		end  func(t *testing.T, h *harness, id string)
	}{
		{"Canceled", func(t *testing.T, h *harness, id string) { h.svc.Cancel(ctx, id) }},
		{"Expired", func(t *testing.T, h *harness, _ string) { h.clock.Advance(time.Hour) }},
		{"CallEnded", func(t *testing.T, h *harness, id string) { h.endCalls(t, id) }},
	}
	for _, tc := range gone {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, otp.Config{})
			v, callID := h.start(t, otp.StartRequest{})
			tc.end(t, h, v.ID)
			got, code, err := h.svc.ClaimCall(ctx, v.ID, callID, "node-a")
			if !errors.Is(err, otp.ErrGone) || code != "" {
				t.Fatalf("ClaimCall = %v, code given %v; want ErrGone", err, code != "")
			}
			if c := got.Call(callID); c.Node != "" || c.ClaimedAt != nil {
				t.Errorf("a refused claim was recorded: %+v", c)
			}
		})
	}
	t.Run("Unknown", func(t *testing.T) {
		h := newHarness(t, otp.Config{})
		v, _ := h.start(t, otp.StartRequest{})
		if _, _, err := h.svc.ClaimCall(ctx, "VE00000000000000000000000000000000", "CA1", "n"); !errors.Is(err, otp.ErrNotFound) {
			t.Errorf("unknown verification: %v", err)
		}
		if _, _, err := h.svc.ClaimCall(ctx, v.ID, "CA1", "n"); !errors.Is(err, otp.ErrCallNotFound) {
			t.Errorf("unknown call: %v", err)
		}
	})
}

// Of many dialers claiming one call at once, exactly one gets the code.
func TestClaimCallConcurrent(t *testing.T) {
	const n = 32
	h := newHarness(t, otp.Config{})
	v, callID := h.start(t, otp.StartRequest{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, claimed := 0, 0
	for i := range n {
		wg.Go(func() {
			_, code, err := h.svc.ClaimCall(context.Background(), v.ID, callID, string(rune('a'+i)))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && code != "":
				won++
			case errors.Is(err, otp.ErrCallClaimed):
				claimed++
			default:
				t.Errorf("ClaimCall: %v", err)
			}
		})
	}
	wg.Wait()
	if won != 1 || claimed != n-1 {
		t.Errorf("%d claims: %d won, %d saw the claim; want 1 and %d", n, won, claimed, n-1)
	}
}
