package callflow

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
)

// A call stopped by its owner with a *Stop cause hangs up with that cause.
func TestStopCauseAfterAnswer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	phone := newPhoneMedia(t, 101, func(n int, _ []byte) (byte, bool) {
		if n == 10 {
			cancel(&Stop{Cause: "expired"})
		}
		return 0, false
	})
	d := newFakeDialer(answerSDP(phone.port(), "0 101"), nil)
	res := runUnit(t, unitRunner(t, d, fastConfig(Challenge{})), ctx)
	assertOutcome(t, res, Canceled)
	if res.HangupBy != ByLocal || res.HangupCause != "expired" || d.answered().hangups != 1 {
		t.Errorf("hangup by %s cause %s, BYEs %d; want local, expired, 1", res.HangupBy, res.HangupCause, d.answered().hangups)
	}
	last := res.Events[len(res.Events)-1]
	if last.Type != EventHangup || last.Cause != "expired" {
		t.Errorf("last event %+v, want hangup with cause expired", last)
	}
}

// A call stopped before it is dialled is never dialled and carries the cause.
func TestStopCauseBeforeDial(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(&Stop{Cause: "approved"})
	d := newFakeDialer(nil, nil)
	res := runUnit(t, unitRunner(t, d, fastConfig(Challenge{})), ctx)
	assertOutcome(t, res, Canceled)
	if res.HangupCause != "approved" || d.dialCount() != 0 {
		t.Errorf("cause %s, dials %d; want approved and none", res.HangupCause, d.dialCount())
	}
}

// Confirm is asked before every play of the code; a refusal ends the call
// with a BYE before any frame of the code, and names the cause.
func TestConfirmRefusesTheCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		allow     int32 // plays Confirm allows before refusing
		want      Outcome
		wantPlays int
	}{
		{"before the first play", 0, Canceled, 0},
		{"before the second play", 1, Delivered, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			phone := newPhoneMedia(t, 101, pressOnPacket(5, '4'))
			d := newFakeDialer(answerSDP(phone.port(), "0 101"), nil)
			cfg := fastConfig(Challenge{Mode: ChallengeFixed, Digit: '4'})
			cfg.CodePlays = 2
			cfg.MaxRepeats = -1
			var asked atomic.Int32
			req := Request{Trunk: unitTrunk, Number: "+15551234567", Code: testCode,
				Confirm: func(context.Context) error {
					if asked.Add(1) > tc.allow {
						return &Stop{Cause: "canceled"}
					}
					return nil
				}}
			res := unitRunner(t, d, cfg).Run(context.Background(), req, nil)
			assertOutcome(t, res, tc.want)
			if res.CodePlays != tc.wantPlays || res.HangupCause != "canceled" || res.HangupBy != ByLocal {
				t.Errorf("plays %d, hangup %s/%s; want %d, local/canceled", res.CodePlays, res.HangupBy, res.HangupCause, tc.wantPlays)
			}
			if got := asked.Load(); got != tc.allow+1 {
				t.Errorf("Confirm asked %d times, want %d", got, tc.allow+1)
			}
			if d.answered().hangups != 1 {
				t.Errorf("BYEs %d, want 1", d.answered().hangups)
			}
		})
	}
}

func TestStopCause(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&Stop{Cause: "locked"}, "locked"},
		{errors.Join(context.Canceled, &Stop{Cause: "expired"}), "expired"},
		{&Stop{}, CauseCanceled},
		{context.Canceled, CauseCanceled},
		{nil, CauseCanceled},
	} {
		if got := stopCause(tc.err); got != tc.want {
			t.Errorf("stopCause(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	if !slices.Contains(Outcomes, Canceled) || len(Outcomes) != 10 {
		t.Errorf("Outcomes = %v", Outcomes)
	}
}
