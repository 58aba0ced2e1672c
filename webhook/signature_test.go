package webhook

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var (
	testSecret = []byte("whsec_test_0123456789")
	testNow    = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	testBody   = []byte(`{"id":"EV1","type":"call.answered","created_at":"2026-03-04T05:06:07Z","data":{}}`)
)

func TestSignVerify(t *testing.T) {
	good := Sign(testSecret, testNow, testBody)
	ts := fmt.Sprint(testNow.Unix())
	sig := strings.TrimPrefix(good, "t="+ts+",v1=")
	other := strings.TrimPrefix(Sign([]byte("another secret"), testNow, testBody), "t="+ts+",v1=")

	tests := []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		want   error // nil: valid
	}{
		{"round trip", testSecret, good, testBody, testNow, nil},
		{"receiver clock a little behind", testSecret, good, testBody, testNow.Add(-4 * time.Minute), nil},
		{"receiver clock a little ahead", testSecret, good, testBody, testNow.Add(4 * time.Minute), nil},
		{"body changed", testSecret, good, append(append([]byte{}, testBody...), ' '), testNow, ErrMismatch},
		{"body empty", testSecret, good, nil, testNow, ErrMismatch},
		{"t changed", testSecret, "t=" + fmt.Sprint(testNow.Unix()+1) + ",v1=" + sig, testBody, testNow, ErrMismatch},
		{"wrong secret", []byte("another secret"), good, testBody, testNow, ErrMismatch},
		{"signed by another secret", testSecret, "t=" + ts + ",v1=" + other, testBody, testNow, ErrMismatch},
		{"stale", testSecret, good, testBody, testNow.Add(6 * time.Minute), ErrStale},
		{"from the future", testSecret, good, testBody, testNow.Add(-6 * time.Minute), ErrStale},
		{"one of two v1 matches (rotation)", testSecret, "t=" + ts + ",v1=" + other + ",v1=" + sig, testBody, testNow, nil},
		{"unknown scheme ignored", testSecret, "t=" + ts + ",v0=abc,v1=" + sig, testBody, testNow, nil},
		{"spaces after commas", testSecret, "t=" + ts + ", v1=" + sig, testBody, testNow, nil},
		{"empty secret", nil, good, testBody, testNow, ErrNoSecret},
		{"no header", testSecret, "", testBody, testNow, ErrNoSignature},
		{"no t", testSecret, "v1=" + sig, testBody, testNow, ErrBadHeader},
		{"no v1", testSecret, "t=" + ts, testBody, testNow, ErrBadHeader},
		{"two t", testSecret, "t=" + ts + ",t=" + ts + ",v1=" + sig, testBody, testNow, ErrBadHeader},
		{"negative t", testSecret, "t=-" + ts + ",v1=" + sig, testBody, testNow, ErrBadHeader},
		{"signed t", testSecret, "t=+" + ts + ",v1=" + sig, testBody, testNow, ErrBadHeader},
		{"t not a number", testSecret, "t=yesterday,v1=" + sig, testBody, testNow, ErrBadHeader},
		{"t too long", testSecret, "t=99999999999999999999,v1=" + sig, testBody, testNow, ErrBadHeader},
		{"t at the end of time", testSecret, "t=9223372036854775807,v1=" + sig, testBody, testNow, ErrStale},
		{"v1 short", testSecret, "t=" + ts + ",v1=" + sig[:62], testBody, testNow, ErrBadHeader},
		{"v1 not hex", testSecret, "t=" + ts + ",v1=" + strings.Repeat("zz", 32), testBody, testNow, ErrBadHeader},
		{"v1 upper-case hex", testSecret, "t=" + ts + ",v1=" + strings.ToUpper(sig), testBody, testNow, nil},
		{"no equals sign", testSecret, "t" + ts + ",v1=" + sig, testBody, testNow, ErrBadHeader},
		{"garbage", testSecret, "Bearer abc", testBody, testNow, ErrBadHeader},
		{"only commas", testSecret, ",,,", testBody, testNow, ErrBadHeader},
		{"huge", testSecret, good + strings.Repeat(",x=y", 2000), testBody, testNow, ErrBadHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secret, tt.header, tt.body, tt.now, 0)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), string(testSecret)) {
				t.Errorf("error %q holds the secret", err)
			}
		})
	}
}

func TestVerifyTolerance(t *testing.T) {
	h := Sign(testSecret, testNow, testBody)
	tests := []struct {
		name      string
		tolerance time.Duration
		age       time.Duration
		want      error
	}{
		{"default allows 5m", 0, 5 * time.Minute, nil},
		{"default refuses 5m1s", 0, 5*time.Minute + time.Second, ErrStale},
		{"negative means default", -time.Second, 5 * time.Minute, nil},
		{"tight", 10 * time.Second, 11 * time.Second, ErrStale},
		{"tight, in time", 10 * time.Second, 10 * time.Second, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Verify(testSecret, h, testBody, testNow.Add(tt.age), tt.tolerance); !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(Sign(testSecret, testNow, testBody), testBody)
	f.Add("t=1,v1=00", []byte("x"))
	f.Add("t=,v1=", []byte{})
	f.Add("t=1772600767,v1="+strings.Repeat("0", 64)+",v1=", []byte("{}"))
	f.Add(",,=,=", []byte(nil))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		err := Verify(testSecret, header, body, testNow, time.Hour)
		if err == nil {
			// Only a header holding the true MAC of its own t may pass.
			ts, _, perr := parseHeader(header)
			if perr != nil {
				t.Fatalf("Verify accepted %q, which parseHeader refuses: %v", header, perr)
			}
			var unix int64
			fmt.Sscan(ts, &unix)
			if want := Sign(testSecret, time.Unix(unix, 0), body); !strings.Contains(strings.ToLower(header), want[strings.Index(want, "v1="):]) {
				t.Fatalf("Verify accepted %q without the right signature", header)
			}
		}
		// A fresh signature of any body verifies.
		if err := Verify(testSecret, Sign(testSecret, testNow, body), body, testNow, time.Minute); err != nil {
			t.Fatalf("round trip of %q: %v", body, err)
		}
	})
}
