package otp

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"
)

// rfcKey is the key of the RFC 4226 Appendix D test vectors.
var rfcKey = []byte("12345678901234567890")

func rfcSecret(t *testing.T, digits int, counter uint64) Secret {
	t.Helper()
	s, err := NewSecret(bytes.NewReader(rfcKey), digits)
	if err != nil {
		t.Fatal(err)
	}
	d := *s.data()
	d.counter = counter
	return newSecret(&d)
}

// TestHOTPCodeLengths checks the codes against RFC 4226 Appendix D for every supported length. The
// truncated values there are 1284755224 (counter 0) and 137359152 (counter 2), so the longer lengths
// show zero padding and the 31-bit limit of 10-digit codes.
func TestHOTPCodeLengths(t *testing.T) {
	tests := []struct {
		name    string
		digits  int
		counter uint64
		want    string
	}{
		{"4DigitsCounter0", 4, 0, "5224"},
		{"5DigitsCounter0", 5, 0, "55224"},
		{"6DigitsCounter0", 6, 0, "755224"},
		{"6DigitsCounter1", 6, 1, "287082"},
		{"6DigitsCounter9", 6, 9, "520489"},
		{"7DigitsCounter0", 7, 0, "4755224"},
		{"8DigitsCounter0", 8, 0, "84755224"},
		{"9DigitsCounter0", 9, 0, "284755224"},
		{"10DigitsCounter0", 10, 0, "1284755224"},
		{"10DigitsZeroPadded", 10, 2, "0137359152"},
		{"8DigitsCounter2", 8, 2, "37359152"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rfcSecret(t, tc.digits, tc.counter).code()
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("code = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestNewSecretRefusesLengths(t *testing.T) {
	for _, n := range []int{-1, 0, 3, 11, 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if _, err := NewSecret(nil, n); err == nil {
				t.Errorf("NewSecret(%d) succeeded", n)
			}
		})
	}
}

func TestNewSecretIsRandom(t *testing.T) {
	a, err := NewSecret(nil, 6)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSecret(nil, 6)
	if err != nil {
		t.Fatal(err)
	}
	if a.Equal(b) || len(a.data().key) != SecretSize {
		t.Errorf("two secrets equal or of size %d", len(a.data().key))
	}
}

func TestZeroSecretHasNoCode(t *testing.T) {
	var s Secret
	if !s.IsZero() {
		t.Error("zero Secret: IsZero = false")
	}
	if _, err := s.code(); err == nil {
		t.Error("zero Secret produced a code")
	}
}

func TestSecretBinaryRoundTrip(t *testing.T) {
	custom, err := NewCustomSecret("0042")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		s    Secret
	}{
		{"Zero", Secret{}},
		{"HOTP", rfcSecret(t, 8, 1<<40+7)},
		{"Custom", custom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.s.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var got Secret
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.s) {
				t.Error("round trip changed the secret")
			}
			w, _ := tc.s.code()
			g, _ := got.code()
			if g != w {
				t.Error("round trip changed the code")
			}
		})
	}
}

func TestSecretUnmarshalBinaryRefuses(t *testing.T) {
	hotpBytes, _ := rfcSecret(t, 6, 0).MarshalBinary()
	tests := []struct {
		name string
		b    []byte
	}{
		{"Nil", nil},
		{"OneByte", []byte{1}},
		{"UnknownVersion", []byte{2, 0}},
		{"UnknownKind", []byte{1, 9}},
		{"ZeroWithTrailing", []byte{1, 0, 0}},
		{"HOTPTruncated", hotpBytes[:11]},
		{"HOTPKeyCut", hotpBytes[:len(hotpBytes)-1]},
		{"HOTPTrailing", append(append([]byte{}, hotpBytes...), 0)},
		{"HOTPDigits3", append([]byte{1, 1, 3}, hotpBytes[3:]...)},
		{"HOTPDigits11", append([]byte{1, 1, 11}, hotpBytes[3:]...)},
		{"HOTPShortKey", []byte{1, 1, 6, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'k'}},
		{"CustomTruncated", []byte{1, 2}},
		{"CustomLengthMismatch", []byte{1, 2, 6, '1', '2', '3', '4'}},
		{"CustomTooShort", []byte{1, 2, 3, '1', '2', '3'}},
		{"CustomNotDigits", []byte{1, 2, 4, '1', '2', 'x', '4'}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s Secret
			err := s.UnmarshalBinary(tc.b)
			if !errors.Is(err, ErrMalformedSecret) {
				t.Errorf("err = %v, want ErrMalformedSecret", err)
			}
		})
	}
}

func FuzzSecretUnmarshalBinary(f *testing.F) {
	for _, s := range []Secret{{}, rfcSecret(&testing.T{}, 6, 3)} {
		b, _ := s.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{1, 2, 4, '1', '2', '3', '4'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Secret
		if err := s.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Errorf("decoded %x but re-encodes as %x", b, again)
		}
		if !s.IsZero() {
			if c, err := s.code(); err != nil || len(c) != s.data().digits {
				t.Errorf("decoded secret gives code of %d digits, err %v", len(c), err)
			}
		}
	})
}

// leaks returns the forms in which a secret could show up in text: the code and the key in raw, hex,
// base32, base64 and fmt's byte-list form.
func leaks(t *testing.T, s Secret) []string {
	t.Helper()
	code, err := s.code()
	if err != nil {
		t.Fatal(err)
	}
	out := []string{code}
	if k := s.data().key; k != nil {
		out = append(out, string(k), hex.EncodeToString(k), base32.StdEncoding.EncodeToString(k),
			base64.StdEncoding.EncodeToString(k), strings.Trim(fmt.Sprint(k), "[]"))
	}
	return out
}

// TestSecretIsRedacted prints and encodes a secret, alone and inside a verification, in every way a
// log line or a response could, and looks for the code and the key in the output.
func TestSecretIsRedacted(t *testing.T) {
	custom, err := NewCustomSecret("739184")
	if err != nil {
		t.Fatal(err)
	}
	secrets := []struct {
		name string
		s    Secret
	}{
		{"HOTP", rfcSecret(t, 10, 0)},
		{"Custom", custom},
	}
	for _, sc := range secrets {
		v := &Verification{
			ID: "VEfixed", To: "+15550001111", Status: StatusPending, Locale: "en", CodeLength: 6,
			CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Calls: []Call{}, Secret: sc.s,
		}
		type holder struct{ s Secret } // an unexported field: fmt cannot call its methods
		values := []struct {
			name string
			x    any
		}{
			{"Secret", sc.s}, {"*Secret", &sc.s}, {"Verification", *v}, {"*Verification", v},
			{"[]*Verification", []*Verification{v}}, {"map", map[string]any{"v": v}},
			{"UnexportedField", holder{sc.s}},
		}
		var outputs []struct{ name, text string }
		add := func(name, text string) { outputs = append(outputs, struct{ name, text string }{name, text}) }
		for _, val := range values {
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%X", "%q", "%o", "%b"} {
				add(val.name+" "+verb, fmt.Sprintf(verb, val.x))
			}
			j, err := json.Marshal(val.x)
			if err == nil { // holder has no exported fields: "{}"
				add(val.name+" json", string(j))
			}
			for _, h := range []struct {
				name string
				new  func(*bytes.Buffer) slog.Handler
			}{
				{"slog JSON", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
				{"slog text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
			} {
				var buf bytes.Buffer
				slog.New(h.new(&buf)).Info("msg", "value", val.x, slog.Any("any", val.x))
				add(val.name+" "+h.name, buf.String())
			}
		}
		text, _ := sc.s.MarshalText()
		add("MarshalText", string(text))
		for _, o := range outputs {
			t.Run(sc.name+"/"+o.name, func(t *testing.T) {
				for _, l := range leaks(t, sc.s) {
					if strings.Contains(o.text, l) {
						t.Errorf("output contains the secret (%d-byte form): %s", len(l), o.text)
					}
				}
			})
		}
	}
}

func TestSecretPrintsRedacted(t *testing.T) {
	s := rfcSecret(t, 6, 0)
	j, _ := json.Marshal(s)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "secret", s)
	tests := []struct {
		name, got, want string
	}{
		{"%v", fmt.Sprintf("%v", s), "[redacted]"},
		{"%#v", fmt.Sprintf("%#v", s), "[redacted]"},
		{"String", s.String(), "[redacted]"},
		{"json", string(j), `"[redacted]"`},
		{"slog", buf.String(), `"secret":"[redacted]"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(tc.got, tc.want) {
				t.Errorf("got %s, want it to contain %s", tc.got, tc.want)
			}
		})
	}
}

func TestDefaultEqualIsConstantTime(t *testing.T) {
	s, err := NewService(nopStore{}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if reflect.ValueOf(s.equal).Pointer() != reflect.ValueOf(subtle.ConstantTimeCompare).Pointer() {
		t.Error("Service does not compare codes with crypto/subtle.ConstantTimeCompare")
	}
}

// nopStore satisfies Store for tests that never reach it.
type nopStore struct{}

func (nopStore) CreatePending(context.Context, *Verification, time.Time) (*Verification, bool, error) {
	return nil, false, errors.New("nop")
}
func (nopStore) Get(context.Context, string) (*Verification, error) { return nil, ErrNotFound }
func (nopStore) Update(context.Context, string, func(*Verification) error) (*Verification, error) {
	return nil, ErrNotFound
}
func (nopStore) ClaimIdempotency(context.Context, string, IdempotencyRecord, time.Duration) (*IdempotencyRecord, error) {
	return nil, nil
}
func (nopStore) CompleteIdempotency(context.Context, string, IdempotencyRecord, time.Duration) error {
	return nil
}

func TestVerificationBinaryRoundTrip(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	yes := true
	v := &Verification{
		ID: "VE1", To: "+15550001111", Status: StatusMaxAttempts, Locale: "en", CodeLength: 8,
		CreatedAt: now, ExpiresAt: now.Add(time.Minute), FailedChecks: 5, MaxChecks: 5,
		CallbackURL: "https://example.com", CallerID: "+15550009999", Metadata: json.RawMessage(`{"a":1}`),
		Calls: []Call{{ID: "CA1", Status: CallDelivered, QueuedAt: now, EndedAt: &now, CodePlays: 2,
			Events: []Event{{Type: "digit", At: now, Digit: "7", Accepted: &yes}}}},
		Secret: rfcSecret(t, 8, 0),
	}
	b, err := v.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Verification
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !got.Secret.Equal(v.Secret) {
		t.Error("secret lost")
	}
	got.Secret, v.Secret = Secret{}, Secret{}
	if !reflect.DeepEqual(&got, v) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, *v)
	}
	t.Run("Refuses", func(t *testing.T) {
		for _, in := range []string{``, `{`, `{"version":2}`, `{"version":1,"secret":"AQk="}`} {
			var x Verification
			if err := x.UnmarshalBinary([]byte(in)); err == nil {
				t.Errorf("UnmarshalBinary(%s) succeeded", in)
			}
		}
	})
}
