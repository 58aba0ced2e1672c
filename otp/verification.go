package otp

import (
	"encoding/json"
	"fmt"
	"time"
)

// Event is one timestamped step of a call. It mirrors the call script's events (package callflow) field
// for field and produces the same JSON, so events pass from the call to the API unchanged. Fields that
// do not apply to Type are empty. An Event never carries the code.
type Event struct {
	// Type names the step: dialing, provisional, answered, challenge, key_timeout, digit, gate_passed,
	// code_played, repeat_asked, hangup.
	Type string    `json:"type"`
	At   time.Time `json:"at"`
	// SIPStatus is the SIP response code that caused the event, if any.
	SIPStatus int    `json:"sip_status,omitempty"`
	Reason    string `json:"reason,omitempty"`
	// N is the try number (challenge, key_timeout) or the play number (code_played).
	N int `json:"n,omitempty"`
	// Digit is the challenge key asked for (challenge) or the key received (digit).
	Digit string `json:"digit,omitempty"`
	// Accepted says whether a received digit was the one asked for.
	Accepted *bool `json:"accepted,omitempty"`
	// By is "local" or "remote" for hangup events.
	By    string `json:"by,omitempty"`
	Cause string `json:"cause,omitempty"`
	// Source is how a received digit arrived: rfc4733, info or inband.
	Source string `json:"source,omitempty"`
	// Trunk names the trunk of an attempt or of the answered call.
	Trunk string `json:"trunk,omitempty"`
}

// Call is one phone call placed for a verification: its status, SIP verdict, timestamps and the timeline
// of its events. Times that have not happened yet are nil. The dispatcher and the call script fill it
// in through [Service.UpdateCall].
type Call struct {
	// ID is "CA" followed by 32 lower-case hex digits.
	ID     string     `json:"id"`
	Status CallStatus `json:"status"`
	// SIPStatus is the final SIP status of the INVITE (200 when answered), 0 while none arrived.
	SIPStatus int `json:"sip_status,omitempty"`
	// HangupBy is "local" or "remote" once the call ended after being answered.
	HangupBy    string `json:"hangup_by,omitempty"`
	HangupCause string `json:"hangup_cause,omitempty"`
	// Trunk names the configured trunk that carried the call.
	Trunk string `json:"trunk,omitempty"`
	// Node names the server process that claimed the call for dialing ([Service.ClaimCall]); empty
	// while queued. With several nodes on one store it says which one placed the call.
	Node string `json:"node,omitempty"`

	QueuedAt time.Time `json:"queued_at"`
	// ClaimedAt is when a dialer claimed the call, by that dialer's clock; nil while queued.
	ClaimedAt    *time.Time `json:"claimed_at,omitempty"`
	DialedAt     *time.Time `json:"dialed_at,omitempty"`
	RingingAt    *time.Time `json:"ringing_at,omitempty"`
	AnsweredAt   *time.Time `json:"answered_at,omitempty"`
	GatePassedAt *time.Time `json:"gate_passed_at,omitempty"`
	EndedAt      *time.Time `json:"ended_at,omitempty"`

	// RingMS is the time from the INVITE to the answer or the final failure, in milliseconds.
	RingMS int64 `json:"ring_ms"`
	// TalkMS is the time from the answer to the hang-up, in milliseconds.
	TalkMS int64 `json:"talk_ms"`
	// ChallengeDigitOK says whether the callee pressed the challenge digit.
	ChallengeDigitOK bool `json:"challenge_digit_ok"`
	// CodePlays counts how many times the code was spoken in full.
	CodePlays int `json:"code_plays"`
	// Events is the call's timeline, oldest first; never nil for calls made by a Service.
	Events []Event `json:"events"`
}

// Verification is one request to deliver a code to one number, and everything that happened to it.
// Its JSON is what the API shows: it never contains the code, the secret or the check counters.
//
// Values handed out by a Service or a Store are copies: changing one changes nothing stored.
type Verification struct {
	// ID is "VE" followed by 32 lower-case hex digits from crypto/rand.
	ID string `json:"id"`
	// To is the number called, E.164 (validated by the caller of Service.Start, not here).
	To     string `json:"to"`
	Status Status `json:"status"`
	// Locale is the language of the prompts, e.g. "en".
	Locale string `json:"locale"`
	// CodeLength is the number of digits of the code.
	CodeLength int       `json:"code_length"`
	CreatedAt  time.Time `json:"created_at"`
	// ExpiresAt is when a pending verification becomes expired.
	ExpiresAt time.Time `json:"expires_at"`
	// FailedChecks counts wrong codes checked so far.
	FailedChecks int `json:"-"`
	// MaxChecks is the number of wrong codes that locks the verification (StatusMaxAttempts).
	MaxChecks   int             `json:"-"`
	CallbackURL string          `json:"callback_url,omitempty"`
	CallerID    string          `json:"caller_id,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	// Calls are the calls placed or queued for this verification, oldest first.
	Calls []Call `json:"calls"`
	// Secret derives and checks the code. It is redacted in every printed or JSON form.
	Secret Secret `json:"-"`
}

// AttemptsLeft returns how many more wrong codes may be checked before the verification locks:
// MaxChecks - FailedChecks while pending, 0 once it is not pending.
func (v *Verification) AttemptsLeft() int {
	if v.Status != StatusPending {
		return 0
	}
	return max(0, v.MaxChecks-v.FailedChecks)
}

// Call returns a pointer to the call with the given id inside v, or nil.
func (v *Verification) Call(id string) *Call {
	for i := range v.Calls {
		if v.Calls[i].ID == id {
			return &v.Calls[i]
		}
	}
	return nil
}

// Clone returns a deep copy of v: no slice, pointer or map of the copy is shared with v (the Secret is
// immutable and shared). A nil v clones to nil. Stores hand out clones so callers cannot change stored
// state.
func (v *Verification) Clone() *Verification {
	if v == nil {
		return nil
	}
	c := *v
	if v.Metadata != nil {
		c.Metadata = append(json.RawMessage{}, v.Metadata...)
	}
	if v.Calls != nil {
		c.Calls = make([]Call, len(v.Calls))
		for i := range v.Calls {
			c.Calls[i] = v.Calls[i].clone()
		}
	}
	return &c
}

func (c Call) clone() Call {
	c.ClaimedAt = cloneTime(c.ClaimedAt)
	c.DialedAt = cloneTime(c.DialedAt)
	c.RingingAt = cloneTime(c.RingingAt)
	c.AnsweredAt = cloneTime(c.AnsweredAt)
	c.GatePassedAt = cloneTime(c.GatePassedAt)
	c.EndedAt = cloneTime(c.EndedAt)
	if c.Events != nil {
		ev := make([]Event, len(c.Events))
		for i, e := range c.Events {
			if e.Accepted != nil {
				a := *e.Accepted
				e.Accepted = &a
			}
			ev[i] = e
		}
		c.Events = ev
	}
	return c
}

func cloneTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

// record has exactly the fields of Verification (a conversion between the two fails to compile when
// they drift apart) with tags that keep everything, for the store encoding.
type record struct {
	ID           string          `json:"id"`
	To           string          `json:"to"`
	Status       Status          `json:"status"`
	Locale       string          `json:"locale"`
	CodeLength   int             `json:"code_length"`
	CreatedAt    time.Time       `json:"created_at"`
	ExpiresAt    time.Time       `json:"expires_at"`
	FailedChecks int             `json:"failed_checks"`
	MaxChecks    int             `json:"max_checks"`
	CallbackURL  string          `json:"callback_url,omitempty"`
	CallerID     string          `json:"caller_id,omitempty"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	Calls        []Call          `json:"calls"`
	Secret       Secret          `json:"-"`
}

// storeEncoding is the document MarshalBinary writes.
type storeEncoding struct {
	Version int `json:"version"`
	record
	// SecretBin is Secret.MarshalBinary (base64 in JSON).
	SecretBin []byte `json:"secret"`
}

const verificationVersion = 1

// MarshalBinary encodes v completely, including the check counters and the Secret, for a Store that
// keeps verifications as bytes (a Redis store). The encoding is a versioned JSON document; it carries
// the secret, so never log it and never send it to a client. API responses use encoding/json on v, which
// leaves the secret out.
func (v *Verification) MarshalBinary() ([]byte, error) {
	sec, err := v.Secret.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return json.Marshal(storeEncoding{Version: verificationVersion, record: record(*v), SecretBin: sec})
}

// UnmarshalBinary decodes what MarshalBinary wrote into v. The error never quotes the input.
func (v *Verification) UnmarshalBinary(b []byte) error {
	var e storeEncoding
	if err := json.Unmarshal(b, &e); err != nil {
		return fmt.Errorf("otp: decoding stored verification: %w", err)
	}
	if e.Version != verificationVersion {
		return fmt.Errorf("otp: stored verification has unknown version %d", e.Version)
	}
	var sec Secret
	if err := sec.UnmarshalBinary(e.SecretBin); err != nil {
		return err
	}
	*v = Verification(e.record)
	v.Secret = sec
	return nil
}
