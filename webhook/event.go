package webhook

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Event is the JSON body of one webhook request.
//
// ID is "EV" followed by 32 hex digits, unique per event and the same on
// every delivery attempt (and in the X-Webhook-Id header), so a receiver can
// drop duplicates. Type names the event ("call.answered",
// "verification.approved"); Data is its type-specific payload, which never
// holds a code.
type Event struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

// NewEventID returns a fresh event ID: "EV" and 128 random bits in hex.
func NewEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "EV" + hex.EncodeToString(b[:])
}

// NewEvent returns an event of type typ created at now, with a fresh ID and
// data marshalled to JSON.
func NewEvent(typ string, data any, now time.Time) (Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("webhook: marshalling %s event data: %w", typ, err)
	}
	return Event{ID: NewEventID(), Type: typ, CreatedAt: now, Data: raw}, nil
}
