package otp

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"

	potp "github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// Code lengths.
const (
	// MinCodeLength is the shortest code allowed by default.
	MinCodeLength = 6
	// MinShortCodeLength is the shortest code allowed when Config.AllowShortCodes is set.
	MinShortCodeLength = 4
	// MaxCodeLength is the longest code: HOTP truncation yields 31 bits, at most 10 decimal digits.
	MaxCodeLength = 10
	// DefaultCodeLength is the length used when neither the request nor the Config sets one.
	DefaultCodeLength = 6
)

// SecretSize is the size in bytes of the random HOTP key of a verification: 160 bits, the size of an
// HMAC-SHA1 output, as RFC 4226 §4 recommends.
const SecretSize = 20

// redacted is what every printing or encoding of a Secret shows, except MarshalBinary.
const redacted = "[redacted]"

// ErrMalformedSecret: Secret.UnmarshalBinary was given bytes that are not a Secret encoding.
var ErrMalformedSecret = errors.New("otp: malformed secret encoding")

// errNoSecret: the zero Secret has no code; a verification without a secret never approves.
var errNoSecret = errors.New("otp: verification has no secret")

// Secret is what a verification needs to derive and check its code: either an HOTP key and counter
// (the code is HOTP(key, counter) truncated to a number of digits, RFC 4226 §5.3), or a custom code
// chosen by the caller. The zero Secret has no code and approves nothing.
//
// A Secret is immutable and safe to copy and share. It is write-only by design: fmt (every verb,
// including %#v), encoding/json, encoding.TextMarshaler and log/slog all print "[redacted]". The only
// encoding that carries it is MarshalBinary, which exists for Store implementations and must never be
// logged. Compare Secrets with Equal, not reflect.DeepEqual.
type Secret struct {
	// load returns the immutable data. A func rather than a pointer: fmt cannot call the methods of a
	// Secret in an unexported field and prints its fields by reflection, and it prints a func as an
	// address where it would print a pointed-to struct in full.
	load func() *secretData
}

func newSecret(d *secretData) Secret { return Secret{load: func() *secretData { return d }} }

// data returns the secret's data, nil for the zero Secret.
func (s Secret) data() *secretData {
	if s.load == nil {
		return nil
	}
	return s.load()
}

type secretKind uint8

const (
	kindNone   secretKind = 0
	kindHOTP   secretKind = 1
	kindCustom secretKind = 2
)

// secretData is never modified after construction.
type secretData struct {
	kind    secretKind
	digits  int    // code length, MinShortCodeLength..MaxCodeLength
	counter uint64 // HOTP moving factor (kindHOTP)
	key     []byte // HOTP key (kindHOTP)
	custom  string // the code itself (kindCustom), decimal digits only
}

// NewSecret returns an HOTP secret for codes of the given number of digits (MinShortCodeLength to
// MaxCodeLength): SecretSize bytes read from r, counter 0. A nil r means crypto/rand.Reader.
func NewSecret(r io.Reader, digits int) (Secret, error) {
	if digits < MinShortCodeLength || digits > MaxCodeLength {
		return Secret{}, fmt.Errorf("otp: code length %d is outside %d..%d", digits, MinShortCodeLength, MaxCodeLength)
	}
	if r == nil {
		r = rand.Reader
	}
	key := make([]byte, SecretSize)
	if _, err := io.ReadFull(r, key); err != nil {
		return Secret{}, fmt.Errorf("otp: reading random secret: %w", err)
	}
	return newSecret(&secretData{kind: kindHOTP, digits: digits, key: key}), nil
}

// NewCustomSecret returns a secret whose code is code itself. code must be MinShortCodeLength to
// MaxCodeLength decimal digits; the error never repeats it.
func NewCustomSecret(code string) (Secret, error) {
	if reason := customCodeProblem(code, MinShortCodeLength); reason != "" {
		return Secret{}, &RequestError{Field: "custom_code", Reason: reason}
	}
	return newSecret(&secretData{kind: kindCustom, digits: len(code), custom: code}), nil
}

// customCodeProblem says what is wrong with a custom code, "" if nothing. It never quotes the code.
func customCodeProblem(code string, minLen int) string {
	if len(code) < minLen || len(code) > MaxCodeLength {
		return fmt.Sprintf("must be between %d and %d digits long", minLen, MaxCodeLength)
	}
	if !allDigits(code) {
		return "must contain only the digits 0-9"
	}
	return ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// IsZero reports whether s is the zero Secret, which has no code.
func (s Secret) IsZero() bool { d := s.data(); return d == nil || d.kind == kindNone }

// Equal reports whether s and t derive the same code in the same way, comparing in constant time.
// Store tests use it to prove a Secret survives a round trip.
func (s Secret) Equal(t Secret) bool {
	a, _ := s.MarshalBinary()
	b, _ := t.MarshalBinary()
	return subtle.ConstantTimeCompare(a, b) == 1
}

// code derives the code. Only Service.Code and Service.Check call it.
func (s Secret) code() (string, error) {
	d := s.data()
	if d == nil {
		return "", errNoSecret
	}
	switch d.kind {
	case kindHOTP:
		// pquerna/otp takes the key base32-encoded; 20 bytes encode to 32 characters, no padding.
		// Digits is always explicit: the library would otherwise default to 6.
		code, err := hotp.GenerateCodeCustom(base32.StdEncoding.EncodeToString(d.key), d.counter,
			hotp.ValidateOpts{Digits: potp.Digits(d.digits), Algorithm: potp.AlgorithmSHA1})
		if err != nil {
			return "", fmt.Errorf("otp: deriving code: %w", err)
		}
		if len(code) != d.digits {
			return "", fmt.Errorf("otp: derived code has %d digits, want %d", len(code), d.digits)
		}
		return code, nil
	case kindCustom:
		return d.custom, nil
	}
	return "", errNoSecret
}

// String returns "[redacted]".
func (s Secret) String() string { return redacted }

// GoString returns "[redacted]", so %#v does not print the key either.
func (s Secret) GoString() string { return redacted }

// Format writes "[redacted]" for every fmt verb, including %d and %x, which would otherwise print the
// fields.
func (s Secret) Format(f fmt.State, verb rune) { _, _ = io.WriteString(f, redacted) }

// MarshalJSON returns the JSON string "[redacted]".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns "[redacted]", for encoders that prefer encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue implements slog.LogValuer: a Secret logs as "[redacted]" with every handler.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// Binary encoding of a Secret (version 1). Lengths in bytes; integers big-endian.
//
//	zero Secret:
//	 0                   1
//	+-------------------+-------------------+
//	|  version = 1      |  kind = 0         |
//	+-------------------+-------------------+
//
//	HOTP:
//	+---------+---------+---------+-------------------------------+---------+------------------+
//	| ver = 1 | kind= 1 | digits  | counter (8, uint64)           | keylen  | key (keylen)     |
//	+---------+---------+---------+-------------------------------+---------+------------------+
//	  0         1         2         3                               11        12
//
//	custom code:
//	+---------+---------+---------+----------------------------------+
//	| ver = 1 | kind= 2 | len     | code (len ASCII digits)          |
//	+---------+---------+---------+----------------------------------+
//	  0         1         2         3
//
// digits and len are MinShortCodeLength..MaxCodeLength; keylen is 16..64 (RFC 4226 §4 asks for at least
// 128 bits).
const (
	secretVersion = 1
	minKeyLen     = 16
	maxKeyLen     = 64
)

// MarshalBinary encodes the secret for a Store, in the format drawn above. It is the only encoding that
// carries the key or the custom code: never log its output.
func (s Secret) MarshalBinary() ([]byte, error) {
	d := s.data()
	if d == nil || d.kind == kindNone {
		return []byte{secretVersion, byte(kindNone)}, nil
	}
	switch d.kind {
	case kindHOTP:
		b := make([]byte, 12+len(d.key))
		b[0], b[1], b[2] = secretVersion, byte(kindHOTP), byte(d.digits)
		binary.BigEndian.PutUint64(b[3:11], d.counter)
		b[11] = byte(len(d.key))
		copy(b[12:], d.key)
		return b, nil
	case kindCustom:
		b := make([]byte, 3+len(d.custom))
		b[0], b[1], b[2] = secretVersion, byte(kindCustom), byte(len(d.custom))
		copy(b[3:], d.custom)
		return b, nil
	}
	return nil, fmt.Errorf("otp: secret of unknown kind %d", d.kind)
}

// UnmarshalBinary decodes what MarshalBinary wrote. It validates every field and wraps
// ErrMalformedSecret on any deviation, without quoting the input; it never panics.
func (s *Secret) UnmarshalBinary(b []byte) error {
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrMalformedSecret, why) }
	if len(b) < 2 {
		return bad("too short")
	}
	if b[0] != secretVersion {
		return bad(fmt.Sprintf("unknown version %d", b[0]))
	}
	switch secretKind(b[1]) {
	case kindNone:
		if len(b) != 2 {
			return bad("trailing bytes")
		}
		*s = Secret{}
		return nil
	case kindHOTP:
		if len(b) < 12 {
			return bad("truncated")
		}
		digits, keyLen := int(b[2]), int(b[11])
		if digits < MinShortCodeLength || digits > MaxCodeLength {
			return bad("digits out of range")
		}
		if keyLen < minKeyLen || keyLen > maxKeyLen {
			return bad("key length out of range")
		}
		if len(b) != 12+keyLen {
			return bad("length mismatch")
		}
		key := make([]byte, keyLen)
		copy(key, b[12:])
		*s = newSecret(&secretData{kind: kindHOTP, digits: digits, counter: binary.BigEndian.Uint64(b[3:11]), key: key})
		return nil
	case kindCustom:
		if len(b) < 3 {
			return bad("truncated")
		}
		n := int(b[2])
		if n < MinShortCodeLength || n > MaxCodeLength || len(b) != 3+n {
			return bad("custom code length mismatch")
		}
		code := string(b[3:])
		if !allDigits(code) {
			return bad("custom code is not decimal")
		}
		*s = newSecret(&secretData{kind: kindCustom, digits: n, custom: code})
		return nil
	}
	return bad(fmt.Sprintf("unknown kind %d", b[1]))
}
