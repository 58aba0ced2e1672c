package sip

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestKindForStatus(t *testing.T) {
	tests := []struct {
		status int
		want   error
	}{
		{100, nil}, {180, nil}, {200, nil},
		{486, ErrBusy}, {600, ErrBusy},
		{480, ErrNoAnswer}, {408, ErrNoAnswer}, {487, ErrNoAnswer},
		{404, ErrInvalidNumber}, {484, ErrInvalidNumber}, {604, ErrInvalidNumber},
		{403, ErrRejected}, {603, ErrRejected},
		{401, ErrAuth}, {407, ErrAuth},
		{500, ErrUnreachable}, {502, ErrUnreachable}, {503, ErrUnreachable}, {504, ErrUnreachable},
		{300, ErrFailed}, {302, ErrFailed}, {400, ErrFailed}, {405, ErrFailed}, {415, ErrFailed},
		{488, ErrFailed}, {606, ErrFailed}, {699, ErrFailed},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			if got := KindForStatus(tt.status); got != tt.want {
				t.Errorf("KindForStatus(%d) = %v, want %v", tt.status, got, tt.want)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"busy", &Error{Status: 486, Reason: "Busy Here", Kind: ErrBusy}, "sip: busy (486 Busy Here)"},
		{"ring timeout", &Error{Status: 487, Reason: "Request Terminated", Kind: ErrNoAnswer, Canceled: true},
			"sip: no answer (487 Request Terminated), cancelled by us"},
		{"no status", &Error{Kind: ErrUnreachable, Reason: "no response"}, "sip: unreachable (no response)"},
		{"with cause", &Error{Kind: ErrUnreachable, Reason: "transport error", cause: errors.New("boom")},
			"sip: unreachable (transport error): boom"},
		{"hostile reason", &Error{Status: 603, Reason: "Decline\r\nX-Evil: 1", Kind: ErrRejected},
			"sip: rejected (603 Decline??X-Evil: 1)"},
		{"nil kind", &Error{Status: 499, Reason: "Odd"}, "sip: call failed (499 Odd)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorUnwrap(t *testing.T) {
	var err error = &Error{Status: 486, Reason: "Busy Here", Kind: ErrBusy}
	if !errors.Is(err, ErrBusy) || errors.Is(err, ErrNoAnswer) {
		t.Errorf("errors.Is mismatch for %v", err)
	}
	wrapped := fmt.Errorf("%w: %w", &Error{Status: 487, Kind: ErrCanceled, Canceled: true}, context.Canceled)
	var se *Error
	if !errors.Is(wrapped, ErrCanceled) || !errors.Is(wrapped, context.Canceled) || !errors.As(wrapped, &se) || se.Status != 487 {
		t.Errorf("wrapped cancel error does not match: %v", wrapped)
	}
}

func TestSentinelNames(t *testing.T) {
	for _, err := range []error{ErrBusy, ErrNoAnswer, ErrInvalidNumber, ErrRejected, ErrUnreachable, ErrAuth, ErrFailed, ErrCanceled, ErrClosed} {
		if s := err.Error(); len(s) < 5 || s[:5] != "sip: " {
			t.Errorf("sentinel %q lacks the package prefix", s)
		}
	}
	if ErrAuth.Error() != "sip: authentication failed" {
		t.Errorf("ErrAuth = %q", ErrAuth)
	}
}
