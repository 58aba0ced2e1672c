package otp

import "errors"

// Sentinel errors callers branch on with errors.Is. None of them, and no error this package returns,
// ever contains a code or a secret.
var (
	// ErrNotFound: no verification with that id (never created, or dropped after its retention).
	ErrNotFound = errors.New("otp: verification not found")
	// ErrCallNotFound: the verification has no call with that id.
	ErrCallNotFound = errors.New("otp: call not found")
	// ErrInvalidRequest: a StartRequest or a checked code was refused before anything was stored.
	// The error returned is a *RequestError that names the field.
	ErrInvalidRequest = errors.New("otp: invalid request")
	// ErrTooManyCalls: the verification already has Config.MaxCalls calls; no call was added.
	ErrTooManyCalls = errors.New("otp: too many calls for this verification")
	// ErrCallClaimed: Service.ClaimCall found the call already claimed by a dialer (dialing, ringing
	// or answered): a dialer that gets it must not dial. The call's Node and ClaimedAt say who claimed
	// it and when.
	ErrCallClaimed = errors.New("otp: call already claimed by a dialer")
	// ErrWrongCode: the checked code was wrong; the failure was counted and the verification is still
	// pending (see Verification.AttemptsLeft).
	ErrWrongCode = errors.New("otp: wrong code")
	// ErrMaxAttempts: Config.MaxChecks wrong codes have been checked (possibly by this very check);
	// the verification is max_attempts_reached and no code approves it any more.
	ErrMaxAttempts error = &notPendingError{"otp: max check attempts reached"}
	// ErrGone: the verification is no longer pending: approved (codes are single use), canceled,
	// expired or failed.
	ErrGone error = &notPendingError{"otp: verification is no longer pending"}
	// ErrNotPending matches every error that says the verification is not pending any more:
	// errors.Is(err, ErrNotPending) holds for ErrGone and ErrMaxAttempts. Branch on it when the reason
	// does not matter.
	ErrNotPending = errors.New("otp: verification is not pending")
)

// notPendingError is a sentinel that also matches ErrNotPending.
type notPendingError struct{ msg string }

func (e *notPendingError) Error() string { return e.msg }

// Is makes errors.Is(err, ErrNotPending) true.
func (e *notPendingError) Is(target error) bool { return target == ErrNotPending }

// RequestError says which field of a request was refused and why. errors.Is(err, ErrInvalidRequest)
// holds for it. Reason never repeats a submitted code.
type RequestError struct {
	// Field is the JSON name of the refused field: "locale", "code_length", "custom_code" or "code".
	Field string
	// Reason is a short lower-case explanation, e.g. "must be between 6 and 10".
	Reason string
}

// Error formats the refusal, e.g. "otp: invalid request: code_length must be between 6 and 10".
func (e *RequestError) Error() string {
	return ErrInvalidRequest.Error() + ": " + e.Field + " " + e.Reason
}

// Unwrap returns ErrInvalidRequest.
func (e *RequestError) Unwrap() error { return ErrInvalidRequest }
