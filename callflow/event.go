package callflow

import "time"

// EventType names one step of a call. The names are stable: they are stored
// with verifications and sent in webhooks.
type EventType string

// The events of a call, in the order they normally happen.
const (
	EventDialing     EventType = "dialing"      // INVITE about to leave
	EventAttempt     EventType = "attempt"      // a trunk failed to connect the call (Trunk, SIPStatus, Cause "failed_over" when another trunk is tried)
	EventProvisional EventType = "provisional"  // a 1xx arrived (SIPStatus, Reason)
	EventAnswered    EventType = "answered"     // 200 OK received and ACKed; media negotiated (Trunk)
	EventSentDigits  EventType = "sent_digits"  // the trunk's send_digits were played after the answer
	EventChallenge   EventType = "challenge"    // the challenge prompt started (N = try, Digit = key asked for)
	EventNoKey       EventType = "key_timeout"  // no key within the key timeout (N = try)
	EventDigit       EventType = "digit"        // a key arrived (Digit, Accepted, Reason)
	EventGatePassed  EventType = "gate_passed"  // the right key: from now on the code may be spoken
	EventCodePlayed  EventType = "code_played"  // the code was played in full (N = play number)
	EventRepeatAsked EventType = "repeat_asked" // the callee pressed 1 to hear the code again
	EventHangup      EventType = "hangup"       // the call ended (By, Cause, SIPStatus)
)

// Event is one timestamped step of a call. Fields that do not apply to the
// type are empty. An Event never carries the code.
type Event struct {
	Type      EventType `json:"type"`
	At        time.Time `json:"at"`
	SIPStatus int       `json:"sip_status,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	// N is the try number for challenge and key_timeout, the play number for code_played.
	N int `json:"n,omitempty"`
	// Digit is the key asked for (challenge) or received (digit).
	Digit string `json:"digit,omitempty"`
	// Source says how a received digit arrived: rfc4733, info or inband.
	Source string `json:"source,omitempty"`
	// Trunk names the trunk of an attempt or of the answered call.
	Trunk string `json:"trunk,omitempty"`
	// Accepted says whether a received digit was the one asked for.
	Accepted *bool `json:"accepted,omitempty"`
	// By is "local" or "remote" for hangup events.
	By    string `json:"by,omitempty"`
	Cause string `json:"cause,omitempty"`
}
