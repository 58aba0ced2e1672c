package webhook_test

import (
	"fmt"
	"time"

	"github.com/voiceotp/voiceotp/webhook"
)

func ExampleSign() {
	secret := []byte("whsec_example")
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	body := []byte(`{"id":"EV0123","type":"verification.approved"}`)
	fmt.Println(webhook.Sign(secret, at, body))
	// Output: t=1767323045,v1=b30cad58e78d537d1af75c155443a308b0daec168e228ec00b892d6198c3239a
}

// A receiver checks the header against the raw body before parsing it.
func ExampleVerify() {
	secret := []byte("whsec_example")
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	body := []byte(`{"id":"EV0123","type":"verification.approved"}`)
	header := webhook.Sign(secret, at, body)

	fmt.Println(webhook.Verify(secret, header, body, at.Add(30*time.Second), 5*time.Minute))
	fmt.Println(webhook.Verify(secret, header, []byte(`{"id":"EV0123","type":"verification.canceled"}`), at, 0))
	fmt.Println(webhook.Verify(secret, header, body, at.Add(time.Hour), 5*time.Minute))
	// Output:
	// <nil>
	// webhook: signature mismatch
	// webhook: signature timestamp outside tolerance
}
