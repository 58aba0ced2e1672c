package otp

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Config holds the rules of a Service. The zero Config is usable: every zero field takes its default.
type Config struct {
	// CodeLength is the number of digits of a code when the request does not say. If zero, 6 is used.
	// It must be between 6 and 10, or between 4 and 10 when AllowShortCodes is set.
	CodeLength int
	// AllowShortCodes allows codes of 4 and 5 digits, in requests and in CodeLength. Default false.
	AllowShortCodes bool
	// TTL is how long a verification stays pending. If zero, 10 minutes is used.
	TTL time.Duration
	// MaxChecks is the number of wrong codes that locks a verification. If zero, 5 is used.
	MaxChecks int
	// MaxCalls is the number of calls one verification may place. If zero, 5 is used.
	MaxCalls int
	// Locales are the prompt languages requests may ask for; the first is used when a request does not
	// say. If empty, only "en" is allowed.
	Locales []string
}

// Defaults of Config.
const (
	DefaultTTL       = 10 * time.Minute
	DefaultMaxChecks = 5
	DefaultMaxCalls  = 5
	DefaultLocale    = "en"
)

// withDefaults fills zero fields and validates the result.
func (c Config) withDefaults() (Config, error) {
	if c.CodeLength == 0 {
		c.CodeLength = DefaultCodeLength
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.MaxChecks == 0 {
		c.MaxChecks = DefaultMaxChecks
	}
	if c.MaxCalls == 0 {
		c.MaxCalls = DefaultMaxCalls
	}
	if len(c.Locales) == 0 {
		c.Locales = []string{DefaultLocale}
	} else {
		c.Locales = slices.Clone(c.Locales)
	}
	if lo := c.minLength(); c.CodeLength < lo || c.CodeLength > MaxCodeLength {
		return c, fmt.Errorf("otp: config: code length %d is outside %d..%d", c.CodeLength, lo, MaxCodeLength)
	}
	switch {
	case c.TTL < 0:
		return c, fmt.Errorf("otp: config: negative TTL %v", c.TTL)
	case c.MaxChecks < 0:
		return c, fmt.Errorf("otp: config: negative MaxChecks %d", c.MaxChecks)
	case c.MaxCalls < 0:
		return c, fmt.Errorf("otp: config: negative MaxCalls %d", c.MaxCalls)
	case slices.Contains(c.Locales, ""):
		return c, errors.New("otp: config: empty locale")
	}
	return c, nil
}

func (c Config) minLength() int {
	if c.AllowShortCodes {
		return MinShortCodeLength
	}
	return MinCodeLength
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock used for creation, expiry and call timestamps. Default time.Now.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithRand sets the source of randomness for secrets and ids. Default crypto/rand.Reader; anything else
// is for tests only.
func WithRand(r io.Reader) Option { return func(s *Service) { s.rand = r } }

// Service runs verifications: it creates them, hands their code to the dialer, checks codes, cancels,
// and records calls. All state lives in the Store, so any number of Services (in one process or many)
// may share one Store; a Service itself is immutable and safe for concurrent use.
//
// Every method takes a context that bounds its Store calls; a done context returns its error.
type Service struct {
	store Store
	cfg   Config
	now   func() time.Time
	rand  io.Reader
	// equal compares the derived and the submitted code; crypto/subtle.ConstantTimeCompare, replaced
	// only by tests that record its use.
	equal func(a, b []byte) int
}

// NewService returns a Service over store with the rules in cfg (zero fields take their defaults). It
// fails if store is nil or cfg is out of range.
func NewService(store Store, cfg Config, opts ...Option) (*Service, error) {
	if store == nil {
		return nil, errors.New("otp: nil store")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Service{store: store, cfg: cfg, now: time.Now, rand: rand.Reader, equal: subtle.ConstantTimeCompare}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Store returns the store the service was made with, for records that
// live beside verifications (idempotency records, say).
func (s *Service) Store() Store { return s.store }

// Config returns the rules in effect, defaults filled in.
func (s *Service) Config() Config {
	c := s.cfg
	c.Locales = slices.Clone(c.Locales)
	return c
}

// StartRequest asks for a code to be delivered to a number.
type StartRequest struct {
	// To is the number to call. It is not validated here: the caller checks E.164.
	To string
	// Locale is the prompt language; empty means the first of Config.Locales.
	Locale string
	// CodeLength is the number of digits; zero means Config.CodeLength (or the length of CustomCode).
	CodeLength int
	// CustomCode, if set, is the code to deliver instead of a generated one: digits only, of an allowed
	// length, and equal in length to CodeLength when both are set.
	CustomCode string
	// CallbackURL receives the webhooks of this verification; empty for none.
	CallbackURL string
	// CallerID is the number to present to the callee; empty for the trunk's default.
	CallerID string
	// Metadata is opaque JSON kept with the verification and echoed back.
	Metadata json.RawMessage
}

// validate checks req and returns its locale, code length and a fresh secret.
func (s *Service) validate(req StartRequest) (locale string, length int, sec Secret, err error) {
	locale = req.Locale
	if locale == "" {
		locale = s.cfg.Locales[0]
	}
	if !slices.Contains(s.cfg.Locales, locale) {
		return "", 0, Secret{}, &RequestError{Field: "locale", Reason: fmt.Sprintf("must be one of %v", s.cfg.Locales)}
	}
	lo := s.cfg.minLength()
	length = req.CodeLength
	if length != 0 && (length < lo || length > MaxCodeLength) {
		return "", 0, Secret{}, &RequestError{Field: "code_length", Reason: fmt.Sprintf("must be between %d and %d", lo, MaxCodeLength)}
	}
	if req.CustomCode != "" {
		if reason := customCodeProblem(req.CustomCode, lo); reason != "" {
			return "", 0, Secret{}, &RequestError{Field: "custom_code", Reason: reason}
		}
		if length != 0 && length != len(req.CustomCode) {
			return "", 0, Secret{}, &RequestError{Field: "custom_code", Reason: "must have code_length digits"}
		}
		sec, err = NewCustomSecret(req.CustomCode)
		return locale, len(req.CustomCode), sec, err
	}
	if length == 0 {
		length = s.cfg.CodeLength
	}
	sec, err = NewSecret(s.rand, length)
	return locale, length, sec, err
}

// newID returns prefix followed by 32 lower-case hex digits of randomness.
func (s *Service) newID(prefix string) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(s.rand, b[:]); err != nil {
		return "", fmt.Errorf("otp: reading random id: %w", err)
	}
	return prefix + hex.EncodeToString(b[:]), nil
}

// Start validates req, creates a pending verification for req.To (or finds the one already pending for
// that number) and queues a new call on it. It returns the verification, the id of the queued call, and
// whether the verification was created by this call.
//
// A Start for a number that already has a pending, unexpired verification joins it: that verification
// is returned unchanged (same code, same failed-check count, same expiry; the fields of req other than
// To are ignored once valid). If one of its calls is still in progress (queued, dialing, ringing or
// answered) no call is added and callID is empty: a number never gets two calls at once from one
// verification, however many Starts race. Otherwise one more call is queued, or ErrTooManyCalls is
// returned with the verification when it already has Config.MaxCalls calls. Invalid requests return a
// *RequestError (ErrInvalidRequest) and store nothing. The number itself is not validated here.
func (s *Service) Start(ctx context.Context, req StartRequest) (v *Verification, callID string, created bool, err error) {
	locale, length, sec, err := s.validate(req)
	if err != nil {
		return nil, "", false, err
	}
	id, err := s.newID("VE")
	if err != nil {
		return nil, "", false, err
	}
	if callID, err = s.newID("CA"); err != nil {
		return nil, "", false, err
	}
	now := s.now()
	call := Call{ID: callID, Status: CallQueued, QueuedAt: now, Events: []Event{}}
	nv := &Verification{
		ID:          id,
		To:          req.To,
		Status:      StatusPending,
		Locale:      locale,
		CodeLength:  length,
		CreatedAt:   now,
		ExpiresAt:   now.Add(s.cfg.TTL),
		MaxChecks:   s.cfg.MaxChecks,
		CallbackURL: req.CallbackURL,
		CallerID:    req.CallerID,
		Metadata:    req.Metadata,
		Calls:       []Call{call},
		Secret:      sec,
	}
	// The pending verification found by CreatePending can stop being pending before the call is added
	// (approved, canceled, expired, dropped); then a new one may be created, so try again. Two rounds
	// suffice unless the number is being fought over; the third gives up.
	for range 3 {
		got, created, err := s.store.CreatePending(ctx, nv, now)
		if err != nil {
			return nil, "", false, err
		}
		if created {
			return got, callID, true, nil
		}
		var gone bool
		upd, err := s.store.Update(ctx, got.ID, func(x *Verification) error {
			gone = false
			expireIfDue(x, now)
			if x.Status != StatusPending {
				gone = true
				return nil
			}
			for i := range x.Calls {
				if !x.Calls[i].Status.Terminal() {
					return errNoWrite // join the call in progress
				}
			}
			if len(x.Calls) >= s.cfg.MaxCalls {
				return ErrTooManyCalls
			}
			x.Calls = append(x.Calls, call.clone())
			return nil
		})
		if errors.Is(err, errNoWrite) {
			// The aborted Update returns no value: read the verification as it stands for the caller.
			upd, err = s.store.Get(ctx, got.ID)
			if err == nil {
				return upd, "", false, nil
			}
		}
		switch {
		case errors.Is(err, ErrTooManyCalls):
			return got, "", false, err
		case errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return nil, "", false, err
		case gone:
			continue
		}
		return upd, callID, false, nil
	}
	return nil, "", false, errors.New("otp: start: the pending verification for this number kept changing")
}

// Get returns the verification with that id, or ErrNotFound. A pending verification past its ExpiresAt
// is stored and returned as expired (its queued calls canceled).
func (s *Service) Get(ctx context.Context, id string) (*Verification, error) {
	v, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if v.Status != StatusPending || now.Before(v.ExpiresAt) {
		return v, nil
	}
	return s.store.Update(ctx, id, func(x *Verification) error {
		expireIfDue(x, now)
		return nil
	})
}

// Check compares code with the verification's code in constant time (crypto/subtle), in one atomic
// Store.Update, so concurrent checks are counted exactly and approve at most once:
//
//   - the right code while pending: the verification becomes approved and (v, nil) is returned; the code
//     is single use, so checking it again returns ErrGone;
//   - a wrong code while pending: FailedChecks grows by one and (v, ErrWrongCode) is returned, with
//     v.AttemptsLeft() > 0; the check that reaches MaxChecks locks the verification
//     (max_attempts_reached) and returns (v, ErrMaxAttempts);
//   - locked: (v, ErrMaxAttempts) whatever the code, the right one included;
//   - expired (stored as such by this check), canceled, approved or failed: (v, ErrGone).
//
// A code that is empty, longer than MaxCodeLength or not all digits is refused with a *RequestError and
// counts nothing; any other wrong code counts, whatever its length. Unknown ids return (nil,
// ErrNotFound). No error contains the code.
func (s *Service) Check(ctx context.Context, id, code string) (*Verification, error) {
	if code == "" || len(code) > MaxCodeLength || !allDigits(code) {
		return nil, &RequestError{Field: "code", Reason: fmt.Sprintf("must be 1 to %d digits", MaxCodeLength)}
	}
	now := s.now()
	var result error
	v, err := s.store.Update(ctx, id, func(x *Verification) error {
		result = nil
		expireIfDue(x, now)
		switch x.Status {
		case StatusPending:
		case StatusMaxAttempts:
			result = ErrMaxAttempts
			return nil
		default:
			result = ErrGone
			return nil
		}
		want, err := x.Secret.code()
		if err != nil {
			return err
		}
		if s.equal([]byte(want), []byte(code)) == 1 {
			finish(x, StatusApproved, now)
			return nil
		}
		x.FailedChecks++
		limit := x.MaxChecks
		if limit <= 0 {
			limit = s.cfg.MaxChecks
		}
		if x.FailedChecks >= limit {
			finish(x, StatusMaxAttempts, now)
			result = ErrMaxAttempts
			return nil
		}
		result = ErrWrongCode
		return nil
	})
	if err != nil {
		return nil, err
	}
	return v, result
}

// Cancel moves a pending verification to canceled and cancels its queued calls (calls in progress are
// left to finish and report). A verification that is not pending (or has just expired) returns
// (v, ErrGone).
func (s *Service) Cancel(ctx context.Context, id string) (*Verification, error) {
	return s.end(ctx, id, StatusCanceled)
}

// Fail moves a pending verification to failed and cancels its queued calls: delivery is given up, for
// example because every call ended without delivering the code and policy says stop. A verification that
// is not pending returns (v, ErrGone).
func (s *Service) Fail(ctx context.Context, id string) (*Verification, error) {
	return s.end(ctx, id, StatusFailed)
}

func (s *Service) end(ctx context.Context, id string, status Status) (*Verification, error) {
	now := s.now()
	var result error
	v, err := s.store.Update(ctx, id, func(x *Verification) error {
		result = nil
		expireIfDue(x, now)
		if x.Status != StatusPending {
			result = ErrGone
			return nil
		}
		finish(x, status, now)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return v, result
}

// Code returns the code of a verification that is pending and unexpired, for the dialer to speak; for
// any other verification it returns ErrGone (storing the expiry if it is due), so a dialer that asks
// right before dialing never dials a dead verification. Only the dialer calls it, and the code must go
// nowhere but into the call's audio.
func (s *Service) Code(ctx context.Context, id string) (string, error) {
	v, err := s.Get(ctx, id)
	if err != nil {
		return "", err
	}
	if v.Status != StatusPending {
		return "", ErrGone
	}
	return v.Secret.code()
}

// UpdateCall applies fn to the call callID of verification id in one atomic Store.Update and returns the
// verification as written. It works whatever the verification's status, since a call in progress keeps
// reporting after an approval or a cancel. fn may run more than once and must only set fields of c
// (its ID is restored if changed). Unknown ids return ErrNotFound or ErrCallNotFound.
//
// A pending verification that is due to expire is expired first, which cancels its queued calls. A
// dispatcher claims a call with ClaimCall, not with UpdateCall.
func (s *Service) UpdateCall(ctx context.Context, id, callID string, fn func(c *Call)) (*Verification, error) {
	now := s.now()
	return s.store.Update(ctx, id, func(x *Verification) error {
		expireIfDue(x, now)
		c := x.Call(callID)
		if c == nil {
			return ErrCallNotFound
		}
		fn(c)
		c.ID = callID
		return nil
	})
}

// errNoWrite aborts an Update that has nothing to write (a Start joining a call in progress, a claim
// finding the call claimed); it never leaves this package.
var errNoWrite = errors.New("otp: nothing to write")

// ClaimCall is how a dialer claims a call right before dialing it, so that no call is ever placed
// twice, even by several nodes sharing one Store and a queue that may deliver a job again. In one
// atomic Store.Update it moves the call callID of verification id from queued to dialing, recording
// node and the claim time (Call.Node, Call.ClaimedAt), and returns the verification as written and the
// code to speak. The dialer dials only after a nil error.
//
//   - The call is queued and the verification pending: claimed; (v, code, nil).
//   - The call is already dialing, ringing or answered (another dialer claimed it, which may have died):
//     (v, "", ErrCallClaimed), whatever the verification's status; v.Call(callID) says who and when.
//   - The verification is not pending (or has just expired), or the call has ended: (v, "", ErrGone).
//   - Unknown ids: ErrNotFound or ErrCallNotFound.
//
// The code goes nowhere but into the call's audio.
func (s *Service) ClaimCall(ctx context.Context, id, callID, node string) (*Verification, string, error) {
	now := s.now()
	var result error
	var code string
	v, err := s.store.Update(ctx, id, func(x *Verification) error {
		result, code = nil, ""
		expireIfDue(x, now)
		c := x.Call(callID)
		switch {
		case c == nil:
			return ErrCallNotFound
		case c.Status == CallQueued && x.Status == StatusPending:
		case !c.Status.Terminal() && c.Status != CallQueued:
			result = ErrCallClaimed
			return errNoWrite
		default:
			result = ErrGone
			return nil // stores the expiry, if expireIfDue just made one
		}
		k, err := x.Secret.code()
		if err != nil {
			return err
		}
		at := now
		c.Status, c.Node, c.ClaimedAt, code = CallDialing, node, &at, k
		return nil
	})
	switch {
	case errors.Is(err, errNoWrite):
		// Nothing was written; read the verification as it stands for the caller.
		if v, err = s.store.Get(ctx, id); err != nil {
			return nil, "", err
		}
		return v, "", result
	case err != nil:
		return nil, "", err
	case result != nil:
		return v, "", result
	}
	return v, code, nil
}

// expireIfDue moves a pending x past its expiry to expired.
func expireIfDue(x *Verification, now time.Time) {
	if x.Status == StatusPending && !now.Before(x.ExpiresAt) {
		finish(x, StatusExpired, now)
	}
}

// finish moves x to the final status and cancels its queued calls: they will never be dialed.
func finish(x *Verification, status Status, now time.Time) {
	x.Status = status
	for i := range x.Calls {
		if c := &x.Calls[i]; c.Status == CallQueued {
			ended := now
			c.Status = CallCanceled
			c.EndedAt = &ended
		}
	}
}
