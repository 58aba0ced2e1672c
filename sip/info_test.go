package sip

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseDTMFInfo(t *testing.T) {
	const relay, plain = "application/dtmf-relay", "application/dtmf"
	tests := []struct {
		name    string
		ct      string
		body    string
		digit   byte
		dur     time.Duration
		wantErr bool
	}{
		{name: "relay crlf", ct: relay, body: "Signal=5\r\nDuration=160\r\n", digit: '5', dur: 160 * time.Millisecond},
		{name: "relay lf, no final newline", ct: relay, body: "Signal=9\nDuration=250", digit: '9', dur: 250 * time.Millisecond},
		{name: "relay duration first", ct: relay, body: "Duration=100\r\nSignal=#\r\n", digit: '#', dur: 100 * time.Millisecond},
		{name: "relay without duration", ct: relay, body: "Signal=*", digit: '*'},
		{name: "relay keys in any case", ct: relay, body: "SIGNAL=1\r\nduration=80\r\n", digit: '1', dur: 80 * time.Millisecond},
		{name: "relay spaces", ct: relay, body: "  Signal = 7 \r\n Duration = 200 \r\n", digit: '7', dur: 200 * time.Millisecond},
		{name: "relay extra keys", ct: relay, body: "Signal=0\r\nVolume=10\r\nDuration=160\r\n\r\n", digit: '0', dur: 160 * time.Millisecond},
		{name: "relay 10 is star", ct: relay, body: "Signal=10\r\nDuration=160", digit: '*', dur: 160 * time.Millisecond},
		{name: "relay 11 is hash", ct: relay, body: "Signal=11", digit: '#'},
		{name: "relay 12 is A", ct: relay, body: "Signal=12", digit: 'A'},
		{name: "relay 15 is D", ct: relay, body: "Signal=15", digit: 'D'},
		{name: "relay lower-case letter", ct: relay, body: "Signal=b", digit: 'B'},
		{name: "relay upper-case letter", ct: relay, body: "Signal=C", digit: 'C'},
		{name: "relay bad duration is ignored", ct: relay, body: "Signal=3\r\nDuration=soon", digit: '3'},
		{name: "relay negative duration is ignored", ct: relay, body: "Signal=3\r\nDuration=-5", digit: '3'},
		{name: "relay lines without = are ignored", ct: relay, body: "hello\r\nSignal=4\r\n", digit: '4'},
		{name: "content type with parameters and case", ct: " Application/DTMF-Relay ; charset=utf-8", body: "Signal=2", digit: '2'},
		{name: "plain digit", ct: plain, body: "5", digit: '5'},
		{name: "plain with newline", ct: plain, body: "#\r\n", digit: '#'},
		{name: "plain 10", ct: plain, body: "10", digit: '*'},
		{name: "plain 11", ct: plain, body: "11", digit: '#'},
		{name: "plain letter", ct: plain, body: "d", digit: 'D'},
		{name: "plain content type upper case", ct: "APPLICATION/DTMF;x=y", body: "8", digit: '8'},

		{name: "other content type", ct: "application/sdp", body: "Signal=5", wantErr: true},
		{name: "no content type", ct: "", body: "5", wantErr: true},
		{name: "prefix of a content type", ct: "application/dtmf-relayx", body: "Signal=5", wantErr: true},
		{name: "relay empty", ct: relay, body: "", wantErr: true},
		{name: "relay without signal", ct: relay, body: "Duration=160\r\n", wantErr: true},
		{name: "relay empty signal", ct: relay, body: "Signal=\r\n", wantErr: true},
		{name: "relay signal 16", ct: relay, body: "Signal=16", wantErr: true},
		{name: "relay signal 99", ct: relay, body: "Signal=99", wantErr: true},
		{name: "relay signal word", ct: relay, body: "Signal=five", wantErr: true},
		{name: "relay signal E", ct: relay, body: "Signal=E", wantErr: true},
		{name: "relay signal +5", ct: relay, body: "Signal=+5", wantErr: true},
		{name: "relay two signals", ct: relay, body: "Signal=1\r\nSignal=2\r\n", wantErr: true},
		{name: "relay key with a prefix", ct: relay, body: "XSignal=1", wantErr: true},
		{name: "plain empty", ct: plain, body: "", wantErr: true},
		{name: "plain two keys", ct: plain, body: "12 3", wantErr: true},
		{name: "plain relay body", ct: plain, body: "Signal=5", wantErr: true},
		{name: "plain binary", ct: plain, body: "\x00", wantErr: true},
		{name: "body over 1 KiB", ct: relay, body: "Signal=5\r\n" + strings.Repeat(" ", 1024), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			digit, dur, err := ParseDTMFInfo(tt.ct, []byte(tt.body))
			if tt.wantErr {
				if !errors.Is(err, ErrBadInfo) {
					t.Fatalf("ParseDTMFInfo = %q, %v, %v; want an ErrBadInfo", digit, dur, err)
				}
				if digit != 0 || dur != 0 {
					t.Errorf("failed with digit %q and duration %v, want zeros", digit, dur)
				}
				return
			}
			if err != nil || digit != tt.digit || dur != tt.dur {
				t.Fatalf("ParseDTMFInfo = %q, %v, %v; want %q, %v, nil", digit, dur, err, tt.digit, tt.dur)
			}
		})
	}
}

func TestParseDTMFInfoBodyLimit(t *testing.T) {
	// Exactly 1 KiB is read; one byte more is refused.
	body := []byte("Signal=6\r\n" + strings.Repeat("x", maxInfoBody-10))
	if d, _, err := ParseDTMFInfo("application/dtmf-relay", body); err != nil || d != '6' {
		t.Fatalf("1024-byte body: %q, %v", d, err)
	}
	if _, _, err := ParseDTMFInfo("application/dtmf-relay", append(body, 'x')); !errors.Is(err, ErrBadInfo) {
		t.Fatalf("1025-byte body: %v, want ErrBadInfo", err)
	}
}

func TestParseDTMFInfoErrorHidesBody(t *testing.T) {
	// The body can come from anyone on the path; it never reaches an error string (and so a log line).
	const secret = "Signal=QQsecret-bodyQQ"
	_, _, err := ParseDTMFInfo("application/dtmf-relay", []byte(secret))
	if err == nil || strings.Contains(err.Error(), "secret-body") {
		t.Fatalf("error %v, want one that does not quote the body", err)
	}
}

func FuzzParseDTMFInfo(f *testing.F) {
	f.Add("application/dtmf-relay", []byte("Signal=5\r\nDuration=160\r\n"))
	f.Add("application/dtmf-relay; charset=utf-8", []byte("duration=100\nSIGNAL=11\n"))
	f.Add("application/dtmf", []byte("#"))
	f.Add("application/dtmf", []byte("10\r\n"))
	f.Add("application/sdp", []byte("v=0\r\n"))
	f.Add("application/dtmf-relay", []byte("Signal=\r\nSignal==\r\n=\n"))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		digit, dur, err := ParseDTMFInfo(ct, body)
		if err != nil {
			if !errors.Is(err, ErrBadInfo) {
				t.Fatalf("error %v does not wrap ErrBadInfo", err)
			}
			if digit != 0 || dur != 0 {
				t.Fatalf("error with digit %q, duration %v", digit, dur)
			}
			return
		}
		if strings.IndexByte(infoKeys, digit) < 0 {
			t.Fatalf("digit %q is not a key", digit)
		}
		if dur < 0 || len(body) > maxInfoBody {
			t.Fatalf("duration %v from a %d-byte body", dur, len(body))
		}
	})
}

func ExampleParseDTMFInfo() {
	digit, dur, err := ParseDTMFInfo("application/dtmf-relay", []byte("Signal=11\r\nDuration=160\r\n"))
	fmt.Printf("%c %v %v\n", digit, dur, err)
	_, _, err = ParseDTMFInfo("text/plain", []byte("5"))
	fmt.Println(errors.Is(err, ErrBadInfo), err)
	// Output:
	// # 160ms <nil>
	// true sip: bad dtmf info: content type "text/plain" is not application/dtmf-relay or application/dtmf
}
