// Package webhook delivers signed event notifications to the callback URLs
// of verifications, and verifies such signatures on the receiving side.
//
// It owns the signature scheme ([Sign], [Verify]), the wire shape of an
// [Event], and delivery ([Sender]): a bounded queue, a fixed pool of
// workers, retries with exponential backoff and jitter, and a guard against
// delivering to private addresses. It does not decide which events exist or
// what their data holds (its callers do), and it stores nothing: an event
// that cannot be delivered before its retries run out, or before the server
// stops, is counted and logged, not kept.
//
// # Signature
//
// Each request carries
//
//	X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//
// as Stripe does: the timestamp is inside the MAC, so a receiver that rejects
// old timestamps ([Verify]'s tolerance) is safe from replays of captured
// requests, and the raw body is signed byte for byte, so the receiver must
// verify the body before parsing it. Each delivery attempt is signed afresh.
// X-Webhook-Id carries the event ID, the same on every attempt, for the
// receiver to drop duplicates: delivery is at least once.
//
// Neither the secret nor a request body is ever written to a log line or an
// error string.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Errors from Verify. Each says what was wrong without echoing the header.
var (
	// ErrNoSignature: the header is empty.
	ErrNoSignature = errors.New("webhook: no signature header")
	// ErrBadHeader: the header is not t=<unix>,v1=<hex>.
	ErrBadHeader = errors.New("webhook: malformed signature header")
	// ErrStale: the timestamp is further from now than the tolerance.
	ErrStale = errors.New("webhook: signature timestamp outside tolerance")
	// ErrMismatch: no v1 signature matches the body and the secret.
	ErrMismatch = errors.New("webhook: signature mismatch")
	// ErrNoSecret: the secret is empty; nothing can be signed or verified.
	ErrNoSecret = errors.New("webhook: empty secret")
)

// SignatureHeader is the request header that carries the signature.
const SignatureHeader = "X-Signature"

// DefaultTolerance is the tolerance Verify uses when given zero: how far the
// signature's timestamp may be from the receiver's clock, either way.
const DefaultTolerance = 5 * time.Minute

// maxHeaderLen bounds the work Verify does on untrusted input.
const maxHeaderLen = 4096

// Sign returns the X-Signature header value for body sent at t:
// "t=<unix>,v1=<hex HMAC-SHA256(secret, "<unix>.<body>")>".
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks that header is a valid signature of body by secret, made
// within tolerance of now (either way; zero or negative means
// DefaultTolerance). The header is "t=<unix>,v1=<hex>"; more than one v1 is
// accepted (any may match, as during a secret rotation) and unknown keys are
// ignored, so that a later scheme can be added beside v1. Signatures are
// compared in constant time. It returns nil, or an error matching one of
// ErrNoSecret, ErrNoSignature, ErrBadHeader, ErrStale, ErrMismatch.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if len(secret) == 0 {
		return ErrNoSecret
	}
	if header == "" {
		return ErrNoSignature
	}
	ts, sigs, err := parseHeader(header)
	if err != nil {
		return err
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrBadHeader
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	// Sub saturates, so extreme timestamps cannot overflow the comparison.
	if age := now.Sub(time.Unix(unix, 0)); age > tolerance || age < -tolerance {
		return ErrStale
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrMismatch
}

// parseHeader splits "t=<digits>,v1=<hex>[,v1=<hex>...][,k=v...]" into the
// timestamp digits and the decoded v1 signatures.
func parseHeader(header string) (ts string, sigs [][]byte, err error) {
	if len(header) > maxHeaderLen {
		return "", nil, ErrBadHeader
	}
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return "", nil, ErrBadHeader
		}
		switch k {
		case "t":
			if ts != "" || !isUnixDigits(v) {
				return "", nil, ErrBadHeader
			}
			ts = v
		case "v1":
			if len(v) != 2*sha256.Size {
				return "", nil, ErrBadHeader
			}
			b, derr := hex.DecodeString(v)
			if derr != nil {
				return "", nil, ErrBadHeader
			}
			sigs = append(sigs, b)
		}
	}
	if ts == "" || len(sigs) == 0 {
		return "", nil, ErrBadHeader
	}
	return ts, sigs, nil
}

// isUnixDigits accepts what Sign writes: 1 to 19 decimal digits, no sign.
func isUnixDigits(s string) bool {
	if len(s) == 0 || len(s) > 19 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
