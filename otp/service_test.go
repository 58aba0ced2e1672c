package otp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/internal/testclock"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/store/memory"
)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

type harness struct {
	svc   *otp.Service
	store *memory.Store
	clock *testclock.Clock
}

func newHarness(t *testing.T, cfg otp.Config) *harness {
	t.Helper()
	c := testclock.New(t0)
	st := memory.New(memory.WithClock(c.Now))
	svc, err := otp.NewService(st, cfg, otp.WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	return &harness{svc: svc, store: st, clock: c}
}

func (h *harness) start(t *testing.T, req otp.StartRequest) (*otp.Verification, string) {
	t.Helper()
	if req.To == "" {
		req.To = "+15551234567"
	}
	v, callID, _, err := h.svc.Start(context.Background(), req)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return v, callID
}

// endCalls ends the calls of verification id that are still in progress (as no_answer), so that the
// next Start for its number queues a new call rather than joining the one in progress.
func (h *harness) endCalls(t *testing.T, id string) {
	t.Helper()
	v, err := h.svc.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range v.Calls {
		if c.Status.Terminal() {
			continue
		}
		if _, err := h.svc.UpdateCall(context.Background(), id, c.ID, func(c *otp.Call) { c.Status = otp.CallNoAnswer }); err != nil {
			t.Fatal(err)
		}
	}
}

// queueCall appends a queued call to verification id behind Start's back, for states Start no longer
// makes (a queued call beside one in progress).
func (h *harness) queueCall(t *testing.T, id, callID string) {
	t.Helper()
	_, err := h.store.Update(context.Background(), id, func(v *otp.Verification) error {
		v.Calls = append(v.Calls, otp.Call{ID: callID, Status: otp.CallQueued, QueuedAt: h.clock.Now(), Events: []otp.Event{}})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (h *harness) code(t *testing.T, id string) string {
	t.Helper()
	code, err := h.svc.Code(context.Background(), id)
	if err != nil {
		t.Fatalf("Code: %v", err)
	}
	return code
}

// wrong returns a code of the same length that is not code.
func wrong(code string) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

var (
	idRE     = regexp.MustCompile(`^VE[0-9a-f]{32}$`)
	callIDRE = regexp.MustCompile(`^CA[0-9a-f]{32}$`)
)

func TestStart(t *testing.T) {
	h := newHarness(t, otp.Config{})
	v, callID, created, err := h.svc.Start(context.Background(), otp.StartRequest{
		To: "+15551234567", CallbackURL: "https://example.com/hook", CallerID: "+15550000000",
		Metadata: json.RawMessage(`{"user":42}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"Created", created},
		{"IDFormat", idRE.MatchString(v.ID)},
		{"CallIDFormat", callIDRE.MatchString(callID)},
		{"Pending", v.Status == otp.StatusPending},
		{"DefaultLocale", v.Locale == "en"},
		{"DefaultLength", v.CodeLength == 6},
		{"CreatedAt", v.CreatedAt.Equal(t0)},
		{"DefaultTTL", v.ExpiresAt.Equal(t0.Add(10 * time.Minute))},
		{"DefaultMaxChecks", v.MaxChecks == 5 && v.FailedChecks == 0 && v.AttemptsLeft() == 5},
		{"OneQueuedCall", len(v.Calls) == 1 && v.Calls[0].ID == callID && v.Calls[0].Status == otp.CallQueued},
		{"QueuedAt", len(v.Calls) == 1 && v.Calls[0].QueuedAt.Equal(t0)},
		{"EventsNotNil", len(v.Calls) == 1 && v.Calls[0].Events != nil},
		{"Callback", v.CallbackURL == "https://example.com/hook" && v.CallerID == "+15550000000"},
		{"Metadata", string(v.Metadata) == `{"user":42}`},
		{"HasSecret", !v.Secret.IsZero()},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok {
				t.Errorf("verification = %+v, call %s", v, callID)
			}
		})
	}
	t.Run("Stored", func(t *testing.T) {
		got, err := h.svc.Get(context.Background(), v.ID)
		if err != nil || got.ID != v.ID || !got.Secret.Equal(v.Secret) {
			t.Errorf("Get = %v, %v", got, err)
		}
	})
	t.Run("CodeHasDigits", func(t *testing.T) {
		if code := h.code(t, v.ID); !regexp.MustCompile(`^[0-9]{6}$`).MatchString(code) {
			t.Errorf("code has %d characters or non-digits", len(code))
		}
	})
}

// step is one action on a verification and what it must return.
type step struct {
	do         func(t *testing.T, h *harness, id, code string) (*otp.Verification, error)
	wantErr    error // nil: success
	wantStatus otp.Status
	wantLeft   int
}

func check(code func(right string) string) func(*testing.T, *harness, string, string) (*otp.Verification, error) {
	return func(t *testing.T, h *harness, id, right string) (*otp.Verification, error) {
		return h.svc.Check(context.Background(), id, code(right))
	}
}

var (
	checkRight = check(func(right string) string { return right })
	checkWrong = check(wrong)
)

func advance(d time.Duration) func(*testing.T, *harness, string, string) (*otp.Verification, error) {
	return func(t *testing.T, h *harness, id, _ string) (*otp.Verification, error) {
		h.clock.Advance(d)
		return h.svc.Get(context.Background(), id)
	}
}

func cancel(t *testing.T, h *harness, id, _ string) (*otp.Verification, error) {
	return h.svc.Cancel(context.Background(), id)
}

func fail(t *testing.T, h *harness, id, _ string) (*otp.Verification, error) {
	return h.svc.Fail(context.Background(), id)
}

func repeat(n int, s step) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func wrongs(n int) []step {
	var out []step
	for i := range n {
		out = append(out, step{checkWrong, otp.ErrWrongCode, otp.StatusPending, 4 - i})
	}
	return out
}

func TestCheck(t *testing.T) {
	approved := step{checkRight, nil, otp.StatusApproved, 0}
	locked := step{checkWrong, otp.ErrMaxAttempts, otp.StatusMaxAttempts, 0}
	tests := []struct {
		name  string
		steps []step
	}{
		{"RightCodeApproves", []step{approved}},
		{"RightCodeIsSingleUse", []step{approved, {checkRight, otp.ErrGone, otp.StatusApproved, 0}}},
		{"WrongCodeAfterApprovalIsGone", []step{approved, {checkWrong, otp.ErrGone, otp.StatusApproved, 0}}},
		{"WrongCodeCounts", append(wrongs(2), approved)},
		{"FourWrongThenRight", append(wrongs(4), approved)},
		{"FifthWrongCodeLocks", append(wrongs(4), locked)},
		{"RightCodeAfterLockIsRefused", append(append(wrongs(4), locked), repeat(2, step{checkRight, otp.ErrMaxAttempts, otp.StatusMaxAttempts, 0})...)},
		{"WrongLengthCounts", []step{{check(func(string) string { return "12345" }), otp.ErrWrongCode, otp.StatusPending, 4}}},
		{"MalformedCodeCountsNothing", []step{
			{check(func(string) string { return "12a456" }), otp.ErrInvalidRequest, "", 0},
			{check(func(string) string { return "" }), otp.ErrInvalidRequest, "", 0},
			{check(func(string) string { return "12345678901" }), otp.ErrInvalidRequest, "", 0},
			approved,
		}},
		{"JustBeforeExpiryApproves", []step{{advance(10*time.Minute - time.Nanosecond), nil, otp.StatusPending, 5}, approved}},
		{"ExpiredIsGone", []step{
			{advance(10 * time.Minute), nil, otp.StatusExpired, 0},
			{checkRight, otp.ErrGone, otp.StatusExpired, 0},
		}},
		{"ExpiryIsStoredByCheck", []step{
			{func(t *testing.T, h *harness, id, _ string) (*otp.Verification, error) {
				h.clock.Advance(time.Hour)
				return h.svc.Check(context.Background(), id, "000000")
			}, otp.ErrGone, otp.StatusExpired, 0},
		}},
		{"CanceledIsGone", []step{{cancel, nil, otp.StatusCanceled, 0}, {checkRight, otp.ErrGone, otp.StatusCanceled, 0}}},
		{"FailedIsGone", []step{{fail, nil, otp.StatusFailed, 0}, {checkRight, otp.ErrGone, otp.StatusFailed, 0}}},
		{"LockedCannotBeCanceled", append(append(wrongs(4), locked), step{cancel, otp.ErrGone, otp.StatusMaxAttempts, 0})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, otp.Config{})
			v, _ := h.start(t, otp.StartRequest{})
			right := h.code(t, v.ID)
			for i, s := range tc.steps {
				got, err := s.do(t, h, v.ID, right)
				if !errors.Is(err, s.wantErr) || (s.wantErr == nil && err != nil) {
					t.Fatalf("step %d: err = %v, want %v", i, err, s.wantErr)
				}
				if s.wantStatus == "" {
					if got != nil {
						t.Errorf("step %d: refused check returned a verification", i)
					}
					continue
				}
				if got == nil {
					t.Fatalf("step %d: no verification returned", i)
				}
				if got.Status != s.wantStatus || got.AttemptsLeft() != s.wantLeft {
					t.Fatalf("step %d: status %s, attempts left %d; want %s, %d", i, got.Status, got.AttemptsLeft(), s.wantStatus, s.wantLeft)
				}
				stored, err := h.store.Get(context.Background(), v.ID)
				if err != nil || stored.Status != got.Status || stored.FailedChecks != got.FailedChecks {
					t.Fatalf("step %d: stored %v, returned %v (%v)", i, stored, got, err)
				}
			}
		})
	}
}

func TestErrNotPendingMatches(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{otp.ErrGone, true},
		{otp.ErrMaxAttempts, true},
		{fmt.Errorf("wrapped: %w", otp.ErrGone), true},
		{otp.ErrWrongCode, false},
		{otp.ErrNotFound, false},
	}
	for _, tc := range tests {
		t.Run(tc.err.Error(), func(t *testing.T) {
			if got := errors.Is(tc.err, otp.ErrNotPending); got != tc.want {
				t.Errorf("errors.Is(%v, ErrNotPending) = %v", tc.err, got)
			}
		})
	}
}

func TestUnknownID(t *testing.T) {
	h := newHarness(t, otp.Config{})
	ctx := context.Background()
	const id = "VE00000000000000000000000000000000"
	calls := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := h.svc.Get(ctx, id); return err }},
		{"Check", func() error { _, err := h.svc.Check(ctx, id, "123456"); return err }},
		{"Cancel", func() error { _, err := h.svc.Cancel(ctx, id); return err }},
		{"Fail", func() error { _, err := h.svc.Fail(ctx, id); return err }},
		{"Code", func() error { _, err := h.svc.Code(ctx, id); return err }},
		{"UpdateCall", func() error { _, err := h.svc.UpdateCall(ctx, id, "CA1", func(*otp.Call) {}); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); !errors.Is(err, otp.ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestEndCancelsQueuedCalls(t *testing.T) {
	tests := []struct {
		name   string
		end    func(s *otp.Service, id string) (*otp.Verification, error)
		status otp.Status
	}{
		{"Cancel", func(s *otp.Service, id string) (*otp.Verification, error) { return s.Cancel(context.Background(), id) }, otp.StatusCanceled},
		{"Fail", func(s *otp.Service, id string) (*otp.Verification, error) { return s.Fail(context.Background(), id) }, otp.StatusFailed},
		{"Expire", func(s *otp.Service, id string) (*otp.Verification, error) { return nil, nil }, otp.StatusExpired},
		{"Approve", nil, otp.StatusApproved},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, otp.Config{})
			v, first := h.start(t, otp.StartRequest{})
			// The first call is in progress, the second still queued.
			if _, err := h.svc.UpdateCall(context.Background(), v.ID, first, func(c *otp.Call) { c.Status = otp.CallRinging }); err != nil {
				t.Fatal(err)
			}
			second := "CA" + strings.Repeat("0", 32)
			h.queueCall(t, v.ID, second)
			h.clock.Advance(time.Minute)
			switch tc.status {
			case otp.StatusExpired:
				h.clock.Advance(time.Hour)
			case otp.StatusApproved:
				if _, err := h.svc.Check(context.Background(), v.ID, h.code(t, v.ID)); err != nil {
					t.Fatal(err)
				}
			default:
				if _, err := tc.end(h.svc, v.ID); err != nil {
					t.Fatal(err)
				}
			}
			got, err := h.svc.Get(context.Background(), v.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.status {
				t.Errorf("status = %s, want %s", got.Status, tc.status)
			}
			if c := got.Call(first); c.Status != otp.CallRinging || c.EndedAt != nil {
				t.Errorf("call in progress became %s", c.Status)
			}
			if c := got.Call(second); c.Status != otp.CallCanceled || c.EndedAt == nil {
				t.Errorf("queued call is %s, ended %v; want canceled with an end time", c.Status, c.EndedAt)
			}
			if _, err := h.svc.Code(context.Background(), v.ID); !errors.Is(err, otp.ErrGone) {
				t.Errorf("Code after end: err = %v, want ErrGone", err)
			}
			if tc.end != nil {
				if _, err := tc.end(h.svc, v.ID); tc.status != otp.StatusExpired && !errors.Is(err, otp.ErrGone) {
					t.Errorf("second end: err = %v, want ErrGone", err)
				}
			}
		})
	}
}

func TestSecondStartSameNumber(t *testing.T) {
	h := newHarness(t, otp.Config{})
	ctx := context.Background()
	v, firstCall := h.start(t, otp.StartRequest{To: "+15551234567"})
	code := h.code(t, v.ID)
	for range 2 {
		if _, err := h.svc.Check(ctx, v.ID, wrong(code)); !errors.Is(err, otp.ErrWrongCode) {
			t.Fatal(err)
		}
	}
	h.clock.Advance(time.Minute)
	// While the first call is in progress, a second Start joins without a call.
	joined, noCall, created, err := h.svc.Start(ctx, otp.StartRequest{To: "+15551234567"})
	if err != nil || created || joined.ID != v.ID || noCall != "" || len(joined.Calls) != 1 {
		t.Fatalf("start during the first call = %v, call %q, created %v, %v; want the same verification, no new call", joined, noCall, created, err)
	}
	h.endCalls(t, v.ID)
	again, secondCall, created, err := h.svc.Start(ctx, otp.StartRequest{To: "+15551234567", CodeLength: 8, Metadata: json.RawMessage(`{"x":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"NotCreated", !created},
		{"SameVerification", again.ID == v.ID},
		{"SameCode", h.code(t, v.ID) == code},
		{"RequestFieldsIgnored", again.CodeLength == 6 && again.Metadata == nil},
		{"FailedChecksKept", again.FailedChecks == 2 && again.AttemptsLeft() == 3},
		{"SameExpiry", again.ExpiresAt.Equal(v.ExpiresAt)},
		{"NewCall", secondCall != firstCall && callIDRE.MatchString(secondCall)},
		{"TwoCalls", len(again.Calls) == 2 && again.Calls[1].ID == secondCall && again.Calls[1].Status == otp.CallQueued},
		{"NewCallQueuedNow", len(again.Calls) == 2 && again.Calls[1].QueuedAt.Equal(t0.Add(time.Minute))},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok {
				t.Errorf("second start = %+v, call %s", again, secondCall)
			}
		})
	}
	t.Run("OtherNumberIsSeparate", func(t *testing.T) {
		other, _ := h.start(t, otp.StartRequest{To: "+15557654321"})
		if other.ID == v.ID {
			t.Error("another number got the same verification")
		}
	})
	t.Run("AfterApprovalANewOne", func(t *testing.T) {
		if _, err := h.svc.Check(ctx, v.ID, code); err != nil {
			t.Fatal(err)
		}
		next, _, created, err := h.svc.Start(ctx, otp.StartRequest{To: "+15551234567"})
		if err != nil || !created || next.ID == v.ID || next.FailedChecks != 0 {
			t.Errorf("start after approval = %v, created %v, %v", next, created, err)
		}
	})
}

func TestMaxCalls(t *testing.T) {
	tests := []struct {
		name     string
		maxCalls int
		want     int
	}{
		{"Default", 0, 5},
		{"One", 1, 1},
		{"Three", 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, otp.Config{MaxCalls: tc.maxCalls})
			req := otp.StartRequest{To: "+15551234567"}
			for range tc.want {
				v, _ := h.start(t, req)
				h.endCalls(t, v.ID)
			}
			v, callID, _, err := h.svc.Start(context.Background(), req)
			if !errors.Is(err, otp.ErrTooManyCalls) {
				t.Fatalf("start %d: err = %v, want ErrTooManyCalls", tc.want+1, err)
			}
			if v == nil || callID != "" {
				t.Fatalf("refused start returned %v, %q", v, callID)
			}
			stored, err := h.svc.Get(context.Background(), v.ID)
			if err != nil || len(stored.Calls) != tc.want {
				t.Errorf("stored calls = %d, want %d (%v)", len(stored.Calls), tc.want, err)
			}
		})
	}
}

func TestCodeLengths(t *testing.T) {
	tests := []struct {
		name       string
		short      bool
		length     int
		custom     string
		wantLength int // 0: refused
	}{
		{"3Refused", false, 3, "", 0},
		{"3RefusedEvenShort", true, 3, "", 0},
		{"4Refused", false, 4, "", 0},
		{"4Short", true, 4, "", 4},
		{"5Refused", false, 5, "", 0},
		{"5Short", true, 5, "", 5},
		{"6", false, 6, "", 6},
		{"7", false, 7, "", 7},
		{"8", false, 8, "", 8},
		{"9", false, 9, "", 9},
		{"10", false, 10, "", 10},
		{"10Short", true, 10, "", 10},
		{"11Refused", false, 11, "", 0},
		{"11RefusedEvenShort", true, 11, "", 0},
		{"NegativeRefused", false, -6, "", 0},
		{"ZeroMeansDefault", false, 0, "", 6},
		{"Custom6", false, 0, "482913", 6},
		{"Custom10", false, 0, "0123456789", 10},
		{"CustomWithMatchingLength", false, 6, "000000", 6},
		{"CustomWithOtherLengthRefused", false, 8, "482913", 0},
		{"Custom4Refused", false, 0, "4829", 0},
		{"Custom4Short", true, 0, "4829", 4},
		{"Custom3RefusedEvenShort", true, 0, "482", 0},
		{"Custom11Refused", false, 0, "48291348291", 0},
		{"CustomLettersRefused", false, 0, "48a913", 0},
		{"CustomSpaceRefused", false, 0, "48291 ", 0},
		{"CustomUnicodeDigitsRefused", false, 0, "٤٨٢٩١٣", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, otp.Config{AllowShortCodes: tc.short})
			v, _, _, err := h.svc.Start(context.Background(), otp.StartRequest{To: "+15551234567", CodeLength: tc.length, CustomCode: tc.custom})
			if tc.wantLength == 0 {
				var re *otp.RequestError
				if !errors.As(err, &re) || !errors.Is(err, otp.ErrInvalidRequest) {
					t.Fatalf("err = %v, want a *RequestError", err)
				}
				if tc.custom != "" && strings.Contains(err.Error(), tc.custom) {
					t.Errorf("error repeats the custom code: %v", err)
				}
				if _, _, created, err := h.svc.Start(context.Background(), otp.StartRequest{To: "+15551234567"}); !created || err != nil {
					t.Errorf("refused start stored something: a valid start then created=%v, %v", created, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			code := h.code(t, v.ID)
			if v.CodeLength != tc.wantLength || len(code) != tc.wantLength || !regexp.MustCompile(`^[0-9]+$`).MatchString(code) {
				t.Fatalf("CodeLength %d, code of %d characters; want %d digits", v.CodeLength, len(code), tc.wantLength)
			}
			if tc.custom != "" && code != tc.custom {
				t.Error("custom code not used")
			}
			if _, err := h.svc.Check(context.Background(), v.ID, code); err != nil {
				t.Errorf("right code: %v", err)
			}
		})
	}
}

func TestConfigCodeLength(t *testing.T) {
	tests := []struct {
		name    string
		cfg     otp.Config
		want    int // 0: NewService refuses
		refused bool
	}{
		{"Default", otp.Config{}, 6, false},
		{"8", otp.Config{CodeLength: 8}, 8, false},
		{"4WithoutShort", otp.Config{CodeLength: 4}, 0, true},
		{"4Short", otp.Config{CodeLength: 4, AllowShortCodes: true}, 4, false},
		{"11", otp.Config{CodeLength: 11}, 0, true},
		{"NegativeTTL", otp.Config{TTL: -time.Second}, 0, true},
		{"NegativeMaxChecks", otp.Config{MaxChecks: -1}, 0, true},
		{"NegativeMaxCalls", otp.Config{MaxCalls: -1}, 0, true},
		{"EmptyLocale", otp.Config{Locales: []string{""}}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := otp.NewService(memory.New(), tc.cfg)
			if tc.refused {
				if err == nil {
					t.Fatal("NewService accepted the config")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			v, _, _, err := svc.Start(context.Background(), otp.StartRequest{To: "+15551234567"})
			if err != nil || v.CodeLength != tc.want {
				t.Errorf("Start = %v, %v; want length %d", v, err, tc.want)
			}
			if got := svc.Config(); got.TTL != 10*time.Minute || got.MaxChecks != 5 || got.MaxCalls != 5 {
				t.Errorf("defaults not filled: %+v", got)
			}
		})
	}
	t.Run("NilStore", func(t *testing.T) {
		if _, err := otp.NewService(nil, otp.Config{}); err == nil {
			t.Error("NewService accepted a nil store")
		}
	})
}

func TestLocales(t *testing.T) {
	tests := []struct {
		name    string
		locales []string
		req     string
		want    string // "": refused
	}{
		{"EmptyMeansEnglish", nil, "", "en"},
		{"English", nil, "en", "en"},
		{"FrenchRefused", nil, "fr", ""},
		{"CaseMatters", nil, "EN", ""},
		{"Configured", []string{"en", "fr"}, "fr", "fr"},
		{"FirstIsDefault", []string{"de", "en"}, "", "de"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, otp.Config{Locales: tc.locales})
			v, _, _, err := h.svc.Start(context.Background(), otp.StartRequest{To: "+15551234567", Locale: tc.req})
			if tc.want == "" {
				var re *otp.RequestError
				if !errors.As(err, &re) || re.Field != "locale" {
					t.Fatalf("err = %v, want a locale *RequestError", err)
				}
				return
			}
			if err != nil || v.Locale != tc.want {
				t.Errorf("Start = %v, %v; want locale %s", v, err, tc.want)
			}
		})
	}
}

func TestGetStoresExpiry(t *testing.T) {
	h := newHarness(t, otp.Config{TTL: time.Minute})
	v, _ := h.start(t, otp.StartRequest{})
	h.clock.Advance(time.Minute)
	if stored, _ := h.store.Get(context.Background(), v.ID); stored.Status != otp.StatusPending {
		t.Fatalf("store changed status by itself: %s", stored.Status)
	}
	got, err := h.svc.Get(context.Background(), v.ID)
	if err != nil || got.Status != otp.StatusExpired {
		t.Fatalf("Get = %v, %v; want expired", got, err)
	}
	if stored, _ := h.store.Get(context.Background(), v.ID); stored.Status != otp.StatusExpired {
		t.Errorf("expiry not stored: %s", stored.Status)
	}
	if _, _, created, err := h.svc.Start(context.Background(), otp.StartRequest{To: v.To}); err != nil || !created {
		t.Errorf("start after expiry: created=%v, %v", created, err)
	}
}

func TestUpdateCall(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, otp.Config{})
	v, callID := h.start(t, otp.StartRequest{})
	dialed := t0.Add(time.Second)

	t.Run("AppliesAndStores", func(t *testing.T) {
		got, err := h.svc.UpdateCall(ctx, v.ID, callID, func(c *otp.Call) {
			c.Status = otp.CallDialing
			c.DialedAt = &dialed
			c.Events = append(c.Events, otp.Event{Type: "dialing", At: dialed})
			c.ID = "CAchanged"
		})
		if err != nil {
			t.Fatal(err)
		}
		c := got.Call(callID)
		if c == nil || c.Status != otp.CallDialing || len(c.Events) != 1 {
			t.Fatalf("call = %+v", c)
		}
		stored, _ := h.svc.Get(ctx, v.ID)
		if sc := stored.Call(callID); sc == nil || sc.Status != otp.CallDialing {
			t.Errorf("stored call = %+v", sc)
		}
	})
	t.Run("UnknownCall", func(t *testing.T) {
		if _, err := h.svc.UpdateCall(ctx, v.ID, "CA0", func(*otp.Call) {}); !errors.Is(err, otp.ErrCallNotFound) {
			t.Errorf("err = %v, want ErrCallNotFound", err)
		}
	})
	t.Run("WorksAfterApproval", func(t *testing.T) {
		if _, err := h.svc.Check(ctx, v.ID, h.code(t, v.ID)); err != nil {
			t.Fatal(err)
		}
		got, err := h.svc.UpdateCall(ctx, v.ID, callID, func(c *otp.Call) { c.Status = otp.CallDelivered })
		if err != nil || got.Call(callID).Status != otp.CallDelivered || got.Status != otp.StatusApproved {
			t.Errorf("UpdateCall after approval = %v, %v", got, err)
		}
	})
	t.Run("ClaimAfterExpiryFindsCanceled", func(t *testing.T) {
		h := newHarness(t, otp.Config{})
		v, callID := h.start(t, otp.StartRequest{})
		h.clock.Advance(time.Hour)
		claim := func(c *otp.Call) {
			if c.Status == otp.CallQueued {
				c.Status = otp.CallDialing
			}
		}
		got, err := h.svc.UpdateCall(ctx, v.ID, callID, claim)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != otp.StatusExpired || got.Call(callID).Status != otp.CallCanceled {
			t.Errorf("claim after expiry: verification %s, call %s; want expired, canceled", got.Status, got.Call(callID).Status)
		}
	})
}

// recorder is a code comparison that records its calls and answers from verdict.
type recorder struct {
	mu      sync.Mutex
	calls   int
	lengths [][2]int
	verdict func(a, b []byte) int
}

func (r *recorder) equal(a, b []byte) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.lengths = append(r.lengths, [2]int{len(a), len(b)})
	return r.verdict(a, b)
}

func TestCheckDecidesByConstantTimeCompare(t *testing.T) {
	tests := []struct {
		name       string
		verdict    int
		wantErr    error
		wantStatus otp.Status
	}{
		{"CompareSaysEqual", 1, nil, otp.StatusApproved},
		{"CompareSaysDifferent", 0, otp.ErrWrongCode, otp.StatusPending},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, otp.Config{})
			rec := &recorder{verdict: func(a, b []byte) int { return tc.verdict }}
			otp.SetEqual(h.svc, rec.equal)
			v, _ := h.start(t, otp.StartRequest{CodeLength: 8})
			// The submitted code is the same for both cases: only the comparison decides.
			got, err := h.svc.Check(context.Background(), v.ID, "1234567")
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) || got.Status != tc.wantStatus {
				t.Fatalf("Check = %v, %v", got.Status, err)
			}
			if rec.calls != 1 || rec.lengths[0] != [2]int{8, 7} {
				t.Errorf("compare called %d times with lengths %v, want once with (8, 7)", rec.calls, rec.lengths)
			}
		})
	}
}

func TestConcurrentRightChecksApproveOnce(t *testing.T) {
	const n = 50
	h := newHarness(t, otp.Config{})
	v, _ := h.start(t, otp.StartRequest{})
	code := h.code(t, v.ID)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		approved int
		gone     int
	)
	for range n {
		wg.Go(func() {
			_, err := h.svc.Check(context.Background(), v.ID, code)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				approved++
			case errors.Is(err, otp.ErrGone):
				gone++
			default:
				t.Errorf("Check: %v", err)
			}
		})
	}
	wg.Wait()
	if approved != 1 || gone != n-1 {
		t.Errorf("%d concurrent right checks: %d approved, %d gone; want 1 and %d", n, approved, gone, n-1)
	}
}

func TestConcurrentWrongChecksLockAtMax(t *testing.T) {
	const n = 20
	h := newHarness(t, otp.Config{})
	v, _ := h.start(t, otp.StartRequest{})
	bad := wrong(h.code(t, v.ID))
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[error]int{}
	)
	for range n {
		wg.Go(func() {
			_, err := h.svc.Check(context.Background(), v.ID, bad)
			mu.Lock()
			defer mu.Unlock()
			counts[err]++
		})
	}
	wg.Wait()
	if counts[otp.ErrWrongCode] != 4 || counts[otp.ErrMaxAttempts] != n-4 {
		t.Errorf("%d concurrent wrong checks: %v; want 4 wrong, %d max attempts", n, counts, n-4)
	}
	got, _ := h.svc.Get(context.Background(), v.ID)
	if got.Status != otp.StatusMaxAttempts || got.FailedChecks != 5 {
		t.Errorf("after the storm: %s with %d failed checks", got.Status, got.FailedChecks)
	}
}

// TestNoErrorContainsCode drives every error path of a verification and looks for its code, and for
// the submitted code, in each error's text.
func TestNoErrorContainsCode(t *testing.T) {
	ctx := context.Background()
	for _, length := range []int{6, 10} {
		t.Run(fmt.Sprint(length), func(t *testing.T) {
			h := newHarness(t, otp.Config{MaxCalls: 1})
			v, _ := h.start(t, otp.StartRequest{CodeLength: length})
			code := h.code(t, v.ID)
			var errs []error
			collect := func(_ any, err error) { errs = append(errs, err) }
			_, _, _, err := h.svc.Start(ctx, otp.StartRequest{To: v.To})
			errs = append(errs, err)
			collect(h.svc.Check(ctx, v.ID, code[:len(code)-1]+"x"))
			collect(h.svc.Check(ctx, v.ID, code+"0"))
			for range 5 {
				collect(h.svc.Check(ctx, v.ID, wrong(code)))
			}
			collect(h.svc.Check(ctx, v.ID, code))
			collect(h.svc.Cancel(ctx, v.ID))
			collect(h.svc.Code(ctx, v.ID))
			collect(h.svc.Check(ctx, "VE0", code))
			_, _, _, err = h.svc.Start(ctx, otp.StartRequest{To: "+15550000001", CustomCode: code + "5"})
			errs = append(errs, err)
			_, _, _, err = h.svc.Start(ctx, otp.StartRequest{To: "+15550000001", CustomCode: code[:5] + "a"})
			errs = append(errs, err)

			seen := 0
			for i, err := range errs {
				if err == nil {
					continue
				}
				seen++
				for _, secret := range []string{code, wrong(code), code[:len(code)-1]} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error %d contains a code: %v", i, err)
					}
				}
			}
			if seen < 12 {
				t.Errorf("only %d error paths reached", seen)
			}
		})
	}
}

func TestVerificationJSON(t *testing.T) {
	h := newHarness(t, otp.Config{})
	v, _ := h.start(t, otp.StartRequest{CustomCode: "739184"})
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key     string
		present bool
	}{
		{"id", true}, {"to", true}, {"status", true}, {"locale", true}, {"code_length", true},
		{"created_at", true}, {"expires_at", true}, {"calls", true},
		{"secret", false}, {"Secret", false}, {"failed_checks", false}, {"FailedChecks", false},
		{"max_checks", false}, {"MaxChecks", false}, {"code", false},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			if _, ok := fields[tc.key]; ok != tc.present {
				t.Errorf("key %q present = %v in %s", tc.key, ok, b)
			}
		})
	}
	t.Run("NoCode", func(t *testing.T) {
		if strings.Contains(string(b), "739184") {
			t.Errorf("JSON contains the code: %s", b)
		}
	})
}

func TestCloneIsDeep(t *testing.T) {
	yes := true
	at := t0
	v := &otp.Verification{
		ID: "VE1", Metadata: json.RawMessage(`{"a":1}`),
		Calls: []otp.Call{{ID: "CA1", DialedAt: &at, Events: []otp.Event{{Type: "digit", Accepted: &yes}}}},
	}
	c := v.Clone()
	c.Metadata[1] = 'X'
	*c.Calls[0].DialedAt = t0.Add(time.Hour)
	*c.Calls[0].Events[0].Accepted = false
	c.Calls[0].Events[0].Type = "x"
	c.Calls[0].ID = "CA2"
	tests := []struct {
		name string
		ok   bool
	}{
		{"Metadata", string(v.Metadata) == `{"a":1}`},
		{"TimePointer", v.Calls[0].DialedAt.Equal(t0)},
		{"AcceptedPointer", *v.Calls[0].Events[0].Accepted},
		{"Events", v.Calls[0].Events[0].Type == "digit"},
		{"Calls", v.Calls[0].ID == "CA1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.ok {
				t.Error("changing the clone changed the original")
			}
		})
	}
	t.Run("Nil", func(t *testing.T) {
		var nv *otp.Verification
		if nv.Clone() != nil {
			t.Error("nil clone not nil")
		}
	})
}

func TestCallStatusTerminal(t *testing.T) {
	tests := []struct {
		s    otp.CallStatus
		want bool
	}{
		{otp.CallQueued, false}, {otp.CallDialing, false}, {otp.CallRinging, false}, {otp.CallAnswered, false},
		{otp.CallDelivered, true}, {otp.CallNoInput, true}, {otp.CallBusy, true}, {otp.CallNoAnswer, true},
		{otp.CallRejected, true}, {otp.CallInvalidNumber, true}, {otp.CallUnreachable, true},
		{otp.CallAbandoned, true}, {otp.CallFailed, true}, {otp.CallCanceled, true},
	}
	for _, tc := range tests {
		t.Run(string(tc.s), func(t *testing.T) {
			if got := tc.s.Terminal(); got != tc.want {
				t.Errorf("Terminal() = %v", got)
			}
		})
	}
}

func TestContextCanceled(t *testing.T) {
	h := newHarness(t, otp.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, _, err := h.svc.Start(ctx, otp.StartRequest{To: "+15551234567"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a canceled context: %v", err)
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{"482913", "482914", "", "48291", "4829130", "abcdef", "٤٨٢٩١٣", "48291\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, code string) {
		h := newHarness(t, otp.Config{})
		v, _ := h.start(t, otp.StartRequest{CustomCode: "482913"})
		got, err := h.svc.Check(context.Background(), v.ID, code)
		if strings.Contains(fmt.Sprint(err), "482913") {
			t.Errorf("error contains the code: %v", err)
		}
		switch {
		case code == "482913":
			if err != nil || got.Status != otp.StatusApproved {
				t.Errorf("right code: %v, %v", got, err)
			}
		case err == nil:
			t.Errorf("code %q approved", code)
		case errors.Is(err, otp.ErrWrongCode):
			if got.FailedChecks != 1 {
				t.Errorf("wrong code counted %d", got.FailedChecks)
			}
		case !errors.Is(err, otp.ErrInvalidRequest):
			t.Errorf("code %q: unexpected %v", code, err)
		}
	})
}

func TestConcurrentStartsShareOneVerification(t *testing.T) {
	const n = 20
	h := newHarness(t, otp.Config{})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		tooMany int
		joined  int
		ids     = map[string]bool{}
		callIDs = map[string]bool{}
	)
	for range n {
		wg.Go(func() {
			v, callID, c, err := h.svc.Start(context.Background(), otp.StartRequest{To: "+15551234567"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, otp.ErrTooManyCalls):
				tooMany++
			case err != nil:
				t.Errorf("Start: %v", err)
				return
			case callID == "":
				joined++
			default:
				callIDs[callID] = true
			}
			ids[v.ID] = true
			if c {
				created++
			}
		})
	}
	wg.Wait()
	// The first call is still queued, so every other start joins it without a call of its own.
	if created != 1 || len(ids) != 1 || len(callIDs) != 1 || joined != n-1 || tooMany != 0 {
		t.Errorf("%d concurrent starts: %d created, %d verifications, %d calls, %d joined, %d refused; want 1, 1, 1, %d, 0",
			n, created, len(ids), len(callIDs), joined, tooMany, n-1)
	}
}
