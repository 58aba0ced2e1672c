package callflow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/voiceotp/voiceotp/sip"
)

// Outcome is the terminal result of one call. Every call ends in exactly one.
type Outcome string

// The outcomes of a call. They describe what the callee experienced, so a
// backend can decide whether to retry, fall back to SMS, or give up.
const (
	// Delivered: the right key was pressed and the code was played in full at least once.
	Delivered Outcome = "delivered"
	// NoInput: the call was answered but the right key never came within the tries.
	NoInput Outcome = "no_input"
	// Busy: the callee answered 486 or 600.
	Busy Outcome = "busy"
	// NoAnswer: 480, 408 or 487, or our ring timeout expired and we cancelled.
	NoAnswer Outcome = "no_answer"
	// Rejected: 403 or 603.
	Rejected Outcome = "rejected"
	// InvalidNumber: 404, 484 or 604, or the number is not E.164 (nothing was dialled).
	InvalidNumber Outcome = "invalid_number"
	// Unreachable: 5xx, a SIP transaction timeout or a transport error.
	Unreachable Outcome = "unreachable"
	// Abandoned: the callee hung up after answering but before hearing the code once.
	Abandoned Outcome = "abandoned"
	// Failed: anything else (bad SDP, authentication failure, media error, internal error).
	Failed Outcome = "failed"
	// Canceled: the caller's context was cancelled (verification cancelled or server shutting down), or
	// Request.Confirm refused the code, before the code was heard once.
	Canceled Outcome = "canceled"
)

// Outcomes lists every Outcome, so that a package that maps them to its own values can check in a test
// that none is forgotten.
var Outcomes = []Outcome{Delivered, NoInput, Busy, NoAnswer, Rejected, InvalidNumber, Unreachable, Abandoned, Failed, Canceled}

// Stop is the cause to cancel a call's context with (context.WithCancelCause), or to return from
// Request.Confirm, to end a call early for a reason of the caller's own: the call is cancelled if it is
// still ringing (CANCEL) or hung up if answered (BYE), and Cause becomes the Result's HangupCause and the
// hangup event's cause instead of "canceled". A cancel without a *Stop cause reports CauseCanceled.
type Stop struct {
	// Cause is a short stable word, e.g. "canceled", "expired", "approved".
	Cause string
}

// Error says the call was stopped and why.
func (s *Stop) Error() string { return "callflow: call stopped: " + s.Cause }

// stopCause is the hangup cause of a call ended by err (a context's cause or Confirm's error).
func stopCause(err error) string {
	var s *Stop
	if errors.As(err, &s) && s.Cause != "" {
		return s.Cause
	}
	return CauseCanceled
}

// Hangup parties, as reported in Result.HangupBy and hangup events.
const (
	ByLocal  = "local"
	ByRemote = "remote"
)

// Hangup causes. They say why the call ended in words stable enough to alert on.
const (
	CauseCompleted   = "completed"     // we said goodbye after the code
	CauseNoInput     = "no_input"      // no right key within the tries
	CauseRemoteBye   = "remote_bye"    // the callee sent BYE
	CauseMaxDuration = "max_duration"  // the maximum call length was reached
	CauseRTPTimeout  = "rtp_timeout"   // no RTP from the callee for the inactivity timeout
	CauseBadSDP      = "bad_sdp"       // the answer's SDP could not be used
	CauseCanceled    = "canceled"      // the context was cancelled (a *Stop cause replaces this word)
	CauseRingTimeout = "ring_timeout"  // we sent CANCEL after the ring timeout
	CauseSIPFinal    = "sip_final"     // the INVITE got a final non-2xx response
	CauseMediaError  = "media_error"   // a socket error on the RTP path
	CauseInvalid     = "invalid_input" // the request failed validation; nothing was dialled
)

// outcomeForDialError maps a failed INVITE to an outcome. The mapping of SIP
// statuses lives in package sip (RFC 3261 §21); this only translates kinds.
func outcomeForDialError(ctx context.Context, err error) Outcome {
	switch {
	case errors.Is(err, sip.ErrCanceled), ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return Canceled
	case errors.Is(err, sip.ErrBusy):
		return Busy
	case errors.Is(err, sip.ErrNoAnswer):
		return NoAnswer
	case errors.Is(err, sip.ErrInvalidNumber):
		return InvalidNumber
	case errors.Is(err, sip.ErrRejected):
		return Rejected
	case errors.Is(err, sip.ErrUnreachable):
		return Unreachable
	default:
		return Failed
	}
}

// Result is the full account of one call: its outcome, the SIP verdict,
// timings and every event. It never contains the code.
type Result struct {
	Outcome Outcome `json:"outcome"`
	Number  string  `json:"to"`
	CallID  string  `json:"call_id,omitempty"`
	// Trunk names the configured trunk that carried the call, if any.
	Trunk     string `json:"trunk,omitempty"`
	SIPStatus int    `json:"sip_status,omitempty"`
	SIPReason string `json:"sip_reason,omitempty"`
	// HangupBy is "local" or "remote"; empty when the call was never established
	// and no CANCEL was sent.
	HangupBy    string `json:"hangup_by,omitempty"`
	HangupCause string `json:"hangup_cause,omitempty"`
	// Error is a human-readable reason for failed outcomes. It never contains the code.
	Error string `json:"error,omitempty"`

	DialedAt     time.Time `json:"dialed_at,omitzero"`
	RingingAt    time.Time `json:"ringing_at,omitzero"`
	AnsweredAt   time.Time `json:"answered_at,omitzero"`
	GatePassedAt time.Time `json:"gate_passed_at,omitzero"`
	EndedAt      time.Time `json:"ended_at,omitzero"`

	// ChallengeDigit is the key the callee was asked to press (0 for any_key).
	ChallengeDigit   string `json:"challenge_digit,omitempty"`
	ChallengeDigitOK bool   `json:"challenge_digit_ok"`
	// CodePlays counts complete plays of the code.
	CodePlays int `json:"code_plays"`

	Media  *MediaReport `json:"media,omitempty"`
	Events []Event      `json:"events"`
}

// RingDuration is the time from INVITE to the answer (or to the end when
// never answered).
func (r *Result) RingDuration() time.Duration {
	if r.DialedAt.IsZero() {
		return 0
	}
	end := r.AnsweredAt
	if end.IsZero() {
		end = r.EndedAt
	}
	return end.Sub(r.DialedAt)
}

// TalkDuration is the time from the answer to the end of the call.
func (r *Result) TalkDuration() time.Duration {
	if r.AnsweredAt.IsZero() || r.EndedAt.IsZero() {
		return 0
	}
	return r.EndedAt.Sub(r.AnsweredAt)
}

// MediaReport is the negotiated media and the per-call RTP statistics.
type MediaReport struct {
	Codec           string `json:"codec"`
	RemoteAddr      string `json:"remote_addr"`
	LocalAddr       string `json:"local_addr"`
	DTMFPayloadType uint8  `json:"dtmf_payload_type,omitempty"`

	PacketsSent   uint64  `json:"packets_sent"`
	BytesSent     uint64  `json:"bytes_sent"`
	LatePackets   uint64  `json:"late_packets"`
	PacketsRecv   uint64  `json:"packets_received"`
	BytesRecv     uint64  `json:"bytes_received"`
	PacketsLost   uint64  `json:"packets_lost"`
	JitterMS      float64 `json:"jitter_ms"`
	DroppedSource uint64  `json:"dropped_wrong_source"`
	Malformed     uint64  `json:"malformed"`
}

// String gives a one-line summary, e.g. "delivered (200, hangup local: completed)".
func (r *Result) String() string {
	s := string(r.Outcome)
	if r.SIPStatus != 0 {
		s += fmt.Sprintf(" (sip %d", r.SIPStatus)
		if r.HangupBy != "" {
			s += fmt.Sprintf(", hangup %s: %s", r.HangupBy, r.HangupCause)
		}
		s += ")"
	}
	return s
}
