package otp

// Status is the state of a [Verification]. A verification starts [StatusPending] and moves at most once
// to one of the other, final values.
type Status string

// Verification statuses. The string values are part of the API and the webhooks; they follow Twilio
// Verify's names where one exists.
const (
	// StatusPending: the code may still be delivered and checked.
	StatusPending Status = "pending"
	// StatusApproved: a check matched the code. The code is used up.
	StatusApproved Status = "approved"
	// StatusCanceled: the backend canceled the verification.
	StatusCanceled Status = "canceled"
	// StatusExpired: the verification outlived its TTL while pending.
	StatusExpired Status = "expired"
	// StatusMaxAttempts: MaxChecks wrong codes were checked; even the right code is refused now.
	StatusMaxAttempts Status = "max_attempts_reached"
	// StatusFailed: delivery was given up (for example every call ended without delivering the code).
	StatusFailed Status = "failed"
)

// Terminal reports whether s is final, that is anything but [StatusPending].
func (s Status) Terminal() bool { return s != StatusPending }

// CallStatus is the state of one [Call]: the first four values are the call in progress, the rest are
// its outcome.
type CallStatus string

// Call statuses, in the order a call normally goes through them, then the outcomes. The string values
// are part of the API and the webhooks.
const (
	// CallQueued: waiting for a dispatcher; nothing has been sent.
	CallQueued CallStatus = "queued"
	// CallDialing: a dispatcher claimed the call and the INVITE is leaving or has left.
	CallDialing CallStatus = "dialing"
	// CallRinging: the callee's phone is ringing (180/183 received).
	CallRinging CallStatus = "ringing"
	// CallAnswered: the callee answered; the challenge is being played.
	CallAnswered CallStatus = "answered"
	// CallDelivered: the challenge digit was pressed and the code was spoken in full at least once.
	CallDelivered CallStatus = "delivered"
	// CallNoInput: the call was answered but the challenge digit never came; the code was not spoken.
	CallNoInput CallStatus = "no_input"
	// CallBusy: the callee was busy (486, 600).
	CallBusy CallStatus = "busy"
	// CallNoAnswer: nobody answered before the ring timeout (or 480, 408, 487).
	CallNoAnswer CallStatus = "no_answer"
	// CallRejected: the callee or the trunk refused the call (403, 603).
	CallRejected CallStatus = "rejected"
	// CallInvalidNumber: the number does not exist or is malformed (404, 484, 604).
	CallInvalidNumber CallStatus = "invalid_number"
	// CallUnreachable: the trunk could not be reached or failed (5xx, timeout, transport error).
	CallUnreachable CallStatus = "unreachable"
	// CallAbandoned: the callee hung up after answering and before the code was delivered.
	CallAbandoned CallStatus = "abandoned"
	// CallFailed: any other failure.
	CallFailed CallStatus = "failed"
	// CallCanceled: the call was never placed, or was stopped, because the verification stopped
	// being pending (canceled, expired, approved, failed) or the call was withdrawn.
	CallCanceled CallStatus = "canceled"
)

// Terminal reports whether s is an outcome, that is anything but queued, dialing, ringing and answered.
// A terminal call is over; nothing more will happen on it.
func (s CallStatus) Terminal() bool {
	switch s {
	case CallQueued, CallDialing, CallRinging, CallAnswered:
		return false
	}
	return true
}
