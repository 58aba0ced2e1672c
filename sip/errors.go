package sip

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors callers branch on with errors.Is. Dial wraps them in an
// *Error that also carries the SIP status that led to the verdict.
var (
	// ErrBusy: the callee is busy (486 Busy Here, 600 Busy Everywhere).
	ErrBusy = errors.New("sip: busy")
	// ErrNoAnswer: nobody answered (480, 408, 487, or our ring timeout).
	ErrNoAnswer = errors.New("sip: no answer")
	// ErrInvalidNumber: the number is malformed or does not exist (404, 484,
	// 604), or failed ValidateE164 before anything was sent.
	ErrInvalidNumber = errors.New("sip: invalid number")
	// ErrRejected: the callee or the trunk refused the call (403, 603).
	ErrRejected = errors.New("sip: rejected")
	// ErrUnreachable: the trunk could not be reached or failed (5xx, no
	// response before the transaction timeout, transport error).
	ErrUnreachable = errors.New("sip: unreachable")
	// ErrAuth: the trunk challenged us (401/407) and either no credentials
	// are configured or it rejected the ones we sent.
	ErrAuth = errors.New("sip: authentication failed")
	// ErrFailed: any other final failure response (other 3xx-6xx).
	ErrFailed = errors.New("sip: call failed")
	// ErrCanceled: the caller's context ended while the call was being set up;
	// the INVITE was cancelled (RFC 3261 §9.1).
	ErrCanceled = errors.New("sip: canceled")
	// ErrClosed: the UA was closed.
	ErrClosed = errors.New("sip: user agent closed")
)

// Error is the verdict of a failed Dial: the final SIP status (if any) and the
// Kind sentinel it maps to. errors.Is(err, ErrBusy) and friends work through
// Unwrap.
type Error struct {
	// Status is the final SIP status code received, 0 if none was received
	// (transaction timeout, transport error). After a ring timeout with no
	// final response to the cancelled INVITE it is 408, the status RFC 3261
	// §8.1.3.1 tells a UAC to assume.
	Status int
	// Reason is the reason phrase of that response, or a short local
	// description when Status is 0.
	Reason string
	// Kind is one of the package sentinels (ErrBusy, ErrNoAnswer, ...).
	Kind error
	// Canceled reports that we sent CANCEL for the INVITE (ring timeout or
	// context cancellation).
	Canceled bool

	// cause is the underlying local error (transport, timeout), shown in
	// Error but not matched by errors.Is.
	cause error
}

// Error formats the verdict, e.g. "sip: busy (486 Busy Here)".
func (e *Error) Error() string {
	var b strings.Builder
	kind := e.Kind
	if kind == nil {
		kind = ErrFailed
	}
	b.WriteString(kind.Error())
	switch {
	case e.Status != 0:
		fmt.Fprintf(&b, " (%d %s)", e.Status, sanitize(e.Reason))
	case e.Reason != "":
		fmt.Fprintf(&b, " (%s)", sanitize(e.Reason))
	}
	if e.Canceled {
		b.WriteString(", cancelled by us")
	}
	if e.cause != nil {
		b.WriteString(": ")
		b.WriteString(e.cause.Error())
	}
	return b.String()
}

// Unwrap returns Kind.
func (e *Error) Unwrap() error { return e.Kind }

// KindForStatus maps a final non-2xx response status to the sentinel Dial
// reports for it. It returns nil for 1xx and 2xx.
//
//	486, 600           ErrBusy
//	408, 480, 487      ErrNoAnswer
//	404, 484, 604      ErrInvalidNumber
//	403, 603           ErrRejected
//	401, 407           ErrAuth (Dial answers one challenge; this is the verdict after it)
//	5xx                ErrUnreachable
//	other 3xx-6xx      ErrFailed
func KindForStatus(status int) error {
	switch {
	case status < 300:
		return nil
	case status == 486 || status == 600:
		return ErrBusy
	case status == 408 || status == 480 || status == 487:
		return ErrNoAnswer
	case status == 404 || status == 484 || status == 604:
		return ErrInvalidNumber
	case status == 403 || status == 603:
		return ErrRejected
	case status == 401 || status == 407:
		return ErrAuth
	case status >= 500 && status < 600:
		return ErrUnreachable
	default:
		return ErrFailed
	}
}

// sanitize makes a network-supplied reason phrase safe to print: control
// characters are replaced and the length is capped.
func sanitize(s string) string {
	const maxLen = 64
	if len(s) > maxLen {
		s = s[:maxLen]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
