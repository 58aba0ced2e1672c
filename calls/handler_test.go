package calls

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/otp"
)

var resultDelivered = callflow.Result{Outcome: callflow.Delivered, SIPStatus: 200, Events: []callflow.Event{}}

func noStop(error) {}

// Every outcome of the call script maps to a call status of its own name.
func TestEveryOutcomeHasAStatus(t *testing.T) {
	for _, o := range callflow.Outcomes {
		s, ok := outcomes[o]
		if !ok {
			t.Errorf("outcome %q has no call status", o)
			continue
		}
		if string(s) != string(o) || !s.Terminal() {
			t.Errorf("outcome %q maps to %q (terminal %v), want the same terminal name", o, s, s.Terminal())
		}
	}
	if len(outcomes) != len(callflow.Outcomes) {
		t.Errorf("%d mapped outcomes, callflow has %d", len(outcomes), len(callflow.Outcomes))
	}
}

func TestPrepareClaimsTheDial(t *testing.T) {
	h := newHarness(t, Config{Node: "node-a", MaxCallLength: time.Minute})
	h.start("+15551234567")
	j := h.job(0)
	req, err := h.c.Prepare(context.Background(), j, noStop)
	if err != nil || req.Number != "+15551234567" || req.Code == "" || req.Confirm == nil {
		t.Fatalf("Prepare = %v, %v", req.Number, err)
	}
	c := h.call(j.VerificationID, j.CallID)
	if c.Status != otp.CallDialing || c.Node != "node-a" || c.ClaimedAt == nil {
		t.Fatalf("claimed call = %+v", c)
	}

	// The same job delivered again (its node died) is never dialled: while the call may be live it is
	// deferred, after that it is skipped and recorded lost.
	other := h.node(Config{Node: "node-b", MaxCallLength: time.Minute})
	h.counters.ReleaseNumber(context.Background(), j.To, holder(j)) // node-a died holding it; its slot expired
	h.clock.Advance(59 * time.Second)
	_, err = other.Prepare(context.Background(), j, noStop)
	var d *dispatch.Deferred
	if !errors.As(err, &d) || !d.Until.Equal(c.ClaimedAt.Add(time.Minute)) || !errors.Is(err, errNodeLost) {
		t.Fatalf("Prepare within the call's maximum length = %v, want Deferred until claim + 1m", err)
	}
	h.clock.Advance(time.Second)
	_, err = other.Prepare(context.Background(), j, noStop)
	if !errors.Is(err, dispatch.ErrSkip) || !errors.Is(err, errNodeLost) || errors.As(err, &d) {
		t.Fatalf("Prepare after it = %v, want ErrSkip (node lost)", err)
	}
	other.Skipped(j, err)
	c = h.call(j.VerificationID, j.CallID)
	if c.Status != otp.CallFailed || c.HangupCause != "node_lost" || c.Node != "node-a" {
		t.Errorf("lost call = %s %s %s, want failed node_lost by node-a", c.Status, c.HangupCause, c.Node)
	}
	if other.live.has(j.VerificationID) {
		t.Error("a skipped job stayed registered live")
	}
}

// A call whose node finished it after all is skipped at once and kept.
func TestPrepareOfAnEndedCall(t *testing.T) {
	h := newHarness(t, Config{Node: "node-a", MaxCallLength: time.Hour})
	h.start("+15551234567")
	j := h.job(0)
	if _, err := h.c.Prepare(context.Background(), j, noStop); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.UpdateCall(context.Background(), j.VerificationID, j.CallID, func(c *otp.Call) { c.Status = otp.CallDelivered }); err != nil {
		t.Fatal(err)
	}
	_, err := h.c.Prepare(context.Background(), j, noStop)
	var d *dispatch.Deferred
	if !errors.Is(err, dispatch.ErrSkip) || errors.As(err, &d) {
		t.Fatalf("Prepare of a delivered call = %v, want ErrSkip", err)
	}
	h.c.Skipped(j, err)
	if c := h.call(j.VerificationID, j.CallID); c.Status != otp.CallDelivered {
		t.Errorf("call = %s, want delivered kept", c.Status)
	}
}

func TestPrepareSkipsEndedVerifications(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(h *harness, id string)
	}{
		{"canceled", func(h *harness, id string) { h.c.Cancel(context.Background(), id) }},
		{"expired", func(h *harness, id string) { h.clock.Advance(11 * time.Minute) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			v := h.start("+15551234567")
			tc.end(h, v.ID)
			_, err := h.c.Prepare(context.Background(), h.job(0), noStop)
			if !errors.Is(err, dispatch.ErrSkip) {
				t.Errorf("Prepare: %v, want dispatch.ErrSkip", err)
			}
		})
	}
}

func TestNumberBusy(t *testing.T) {
	h := newHarness(t, Config{MaxCallLength: time.Minute})
	h.start("+15551234567")
	j := h.job(0)
	if _, err := h.c.Prepare(context.Background(), j, noStop); err != nil {
		t.Fatal(err)
	}
	// Another verification for the number cannot start while the call is live.
	h.endCalls(j.VerificationID) // not the call: only so that otp would let a start through
	h.svc.Fail(context.Background(), j.VerificationID)
	_, _, err := h.c.Start(context.Background(), StartRequest{To: "+15551234567"})
	var re *RetryError
	if !errors.Is(err, ErrNumberBusy) || !errors.As(err, &re) || re.After != 30*time.Second {
		t.Fatalf("start during another verification's call: %v, want ErrNumberBusy after 30s", err)
	}

	// A job that got past the start check is still never dialled while another call holds the slot.
	h.start("+15557654321")
	if ok, _ := h.counters.AcquireNumber(context.Background(), "+15557654321", "VEother/CAother", time.Minute); !ok {
		t.Fatal("slot not taken")
	}
	j2 := h.job(1)
	_, err = h.c.Prepare(context.Background(), j2, noStop)
	if !errors.Is(err, dispatch.ErrSkip) || !errors.Is(err, errNumberBusy) {
		t.Fatalf("Prepare on a busy number = %v", err)
	}
	h.c.Skipped(j2, err)
	if c := h.call(j2.VerificationID, j2.CallID); c.Status != otp.CallFailed || c.HangupCause != "number_busy" {
		t.Errorf("busy call = %s %s", c.Status, c.HangupCause)
	}
	if holder, _, _ := h.counters.NumberHolder(context.Background(), "+15557654321"); holder != "VEother/CAother" {
		t.Errorf("the skipped job released a slot it did not hold: holder %q", holder)
	}

	// Finish frees the slot; the number can be called again.
	h.c.Finish(j, &resultDelivered)
	if holder, _, _ := h.counters.NumberHolder(context.Background(), "+15551234567"); holder != "" {
		t.Errorf("slot still held by %q after Finish", holder)
	}
	if _, created, err := h.c.Start(context.Background(), StartRequest{To: "+15551234567"}); err != nil || !created {
		t.Errorf("start after the call ended: %v created %v", err, created)
	}
}

func TestSendsPerNumber(t *testing.T) {
	h := newHarness(t, Config{SendsPerNumber: 2, SendsWindow: time.Hour})
	v := h.start("+15551234567")
	h.endCalls(v.ID)
	if _, created, err := h.c.Start(context.Background(), StartRequest{To: "+15551234567"}); err != nil || created {
		t.Fatalf("second send: %v created %v", err, created)
	}
	h.endCalls(v.ID)
	h.clock.Advance(10 * time.Minute)
	_, _, err := h.c.Start(context.Background(), StartRequest{To: "+15551234567"})
	var re *RetryError
	if !errors.Is(err, ErrTooManySends) || !errors.As(err, &re) || re.After != 50*time.Minute {
		t.Fatalf("third send: %v, want ErrTooManySends after 50m", err)
	}
	if h.queue.Len() != 2 {
		t.Errorf("%d jobs queued, want 2", h.queue.Len())
	}
}

func TestStartQueueFull(t *testing.T) {
	h := newHarness(t, Config{})
	h.queue.SetFull(true)
	v, _, err := h.c.Start(context.Background(), StartRequest{To: "+15551234567"})
	if !errors.Is(err, ErrQueueFull) || v == nil {
		t.Fatalf("Start on a full queue: %v", err)
	}
	if c := h.verification(v.ID).Calls[0]; c.Status != otp.CallFailed || c.HangupCause != "queue_full" {
		t.Errorf("call = %s %s, want failed queue_full", c.Status, c.HangupCause)
	}
}

func TestStartRefusesBadNumbers(t *testing.T) {
	h := newHarness(t, Config{})
	for _, n := range []string{"", "15551234567", "+1555\r\nVia: x", "+0123456789"} {
		if _, _, err := h.c.Start(context.Background(), StartRequest{To: n}); !errors.Is(err, ErrInvalidNumber) {
			t.Errorf("Start(%q) = %v, want ErrInvalidNumber", n, err)
		}
	}
	if _, _, err := h.c.Start(context.Background(), StartRequest{To: "+15551234567", CallerID: "nope"}); !errors.Is(err, ErrInvalidNumber) {
		t.Errorf("bad caller id: %v", err)
	}
	if h.queue.Len() != 0 {
		t.Errorf("%d jobs queued", h.queue.Len())
	}
}

func TestDeadLetterFailsTheVerification(t *testing.T) {
	h := newHarness(t, Config{})
	v := h.start("+15551234567")
	h.c.Skipped(h.job(0), fmt.Errorf("%w: delivered 6 times", dispatch.ErrDeadLetter))
	v = h.verification(v.ID)
	if v.Status != otp.StatusFailed || v.Calls[0].Status != otp.CallFailed || v.Calls[0].HangupCause != "dead_letter" {
		t.Errorf("after dead-lettering: %s, call %s %s", v.Status, v.Calls[0].Status, v.Calls[0].HangupCause)
	}
}

func TestInvalidNumberFailsTheVerification(t *testing.T) {
	h := newHarness(t, Config{})
	v := h.start("+15551234567")
	j := h.job(0)
	if _, err := h.c.Prepare(context.Background(), j, noStop); err != nil {
		t.Fatal(err)
	}
	h.c.Finish(j, &callflow.Result{Outcome: callflow.InvalidNumber, SIPStatus: 404})
	if got := h.verification(v.ID); got.Status != otp.StatusFailed || got.Calls[0].Status != otp.CallInvalidNumber {
		t.Errorf("after 404: %s, call %s", got.Status, got.Calls[0].Status)
	}
}

// The call record follows the events and the result, exactly, and no log line holds the code.
func TestCallRecord(t *testing.T) {
	h := newHarness(t, Config{})
	v := h.start("+15551234567")
	j := h.job(0)
	req, err := h.c.Prepare(context.Background(), j, noStop)
	if err != nil || req.Number != "+15551234567" {
		t.Fatalf("Prepare: %v", err)
	}
	t0 := h.clock.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	yes := true
	events := []callflow.Event{
		{Type: callflow.EventDialing, At: at(0)},
		{Type: callflow.EventProvisional, At: at(10), SIPStatus: 100, Reason: "Trying"},
		{Type: callflow.EventProvisional, At: at(50), SIPStatus: 180, Reason: "Ringing"},
		{Type: callflow.EventAnswered, At: at(2050), SIPStatus: 200},
		{Type: callflow.EventChallenge, At: at(2051), N: 1, Digit: "7"},
		{Type: callflow.EventDigit, At: at(4000), Digit: "7", Accepted: &yes},
		{Type: callflow.EventGatePassed, At: at(4001)},
		{Type: callflow.EventCodePlayed, At: at(9000), N: 1},
	}
	for _, e := range events {
		h.c.Event(j, e)
	}
	c := h.verification(v.ID).Calls[0]
	if c.Status != otp.CallAnswered || c.RingingAt == nil || !c.RingingAt.Equal(at(50)) || c.CodePlays != 1 || !c.ChallengeDigitOK || len(c.Events) != len(events) {
		t.Errorf("mid-call record: %+v", c)
	}
	h.c.Finish(j, &callflow.Result{
		Outcome: callflow.Delivered, SIPStatus: 200, HangupBy: "local", HangupCause: "completed",
		DialedAt: at(0), RingingAt: at(50), AnsweredAt: at(2050), GatePassedAt: at(4001), EndedAt: at(16050),
		ChallengeDigitOK: true, CodePlays: 2,
	})
	c = h.verification(v.ID).Calls[0]
	if c.Status != otp.CallDelivered || c.SIPStatus != 200 || c.HangupBy != "local" || c.HangupCause != "completed" ||
		c.RingMS != 2050 || c.TalkMS != 14000 || c.CodePlays != 2 || c.EndedAt == nil {
		t.Errorf("final record: %+v", c)
	}
	if strings.Contains(h.logs.String(), req.Code) {
		t.Error("the code appears in a log line")
	}
}
