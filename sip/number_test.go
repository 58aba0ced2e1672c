package sip

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateE164(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"us", "+15551234567", true},
		{"shortest 8 digits", "+12345678", true},
		{"longest 15 digits", "+123456789012345", true},
		{"uk", "+442071838750", true},
		{"empty", "", false},
		{"plus only", "+", false},
		{"7 digits", "+1234567", false},
		{"16 digits", "+1234567890123456", false},
		{"no plus", "15551234567", false},
		{"double plus", "++15551234567", false},
		{"leading zero", "+05551234567", false},
		{"letters", "+1555CALLNOW", false},
		{"space", "+1 5551234567", false},
		{"trailing space", "+15551234567 ", false},
		{"dash", "+1-555-123-4567", false},
		{"CRLF injection", "+15551234567\r\nX: y", false},
		{"LF", "+15551234567\n", false},
		{"NUL", "+1555123\x004567", false},
		{"arabic-indic digits", "+١٥٥٥١٢٣٤٥٦٧", false},
		{"fullwidth digits", "+１５５５１２３４５６７", false},
		{"uri params", "+15551234567;user=phone", false},
		{"at sign", "+15551234567@evil", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateE164(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateE164(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidNumber) {
					t.Errorf("error %v does not wrap ErrInvalidNumber", err)
				}
				if strings.ContainsAny(err.Error(), "\r\n\x00") {
					t.Errorf("error text echoes control characters: %q", err.Error())
				}
			}
		})
	}
}

func FuzzValidateE164(f *testing.F) {
	for _, s := range []string{"+15551234567", "+12345678", "+1555\r\n", "+١٢٣٤٥٦٧٨٩", "", "+0123456789"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateE164(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidNumber) || strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("bad error for %q: %v", s, err)
			}
			return
		}
		// Accepted numbers must be safe in a URI and a header.
		if len(s) < 9 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
			t.Fatalf("accepted %q", s)
		}
		for _, c := range []byte(s[1:]) {
			if c < '0' || c > '9' {
				t.Fatalf("accepted %q", s)
			}
		}
		if _, err := (Trunk{Host: "127.0.0.1", Port: 5060}).RequestURI(s); err != nil {
			t.Fatalf("RequestURI(%q): %v", s, err)
		}
	})
}

func TestParseTrunk(t *testing.T) {
	tests := []struct {
		in   string
		want Trunk
		ok   bool
	}{
		{"sip:127.0.0.1:5060", Trunk{Host: "127.0.0.1", Port: 5060}, true},
		{"127.0.0.1:5080", Trunk{Host: "127.0.0.1", Port: 5080}, true},
		{"sip:trunk.example.com", Trunk{Host: "trunk.example.com", Port: 5060}, true},
		{"trunk.example.com", Trunk{Host: "trunk.example.com", Port: 5060}, true},
		{"SIP:trunk.example.com:5062", Trunk{Host: "trunk.example.com", Port: 5062}, true},
		{"sip:10.0.0.1:5060;transport=udp", Trunk{Host: "10.0.0.1", Port: 5060}, true},
		{"sip:10.0.0.1;transport=UDP", Trunk{Host: "10.0.0.1", Port: 5060}, true},
		{"[2001:db8::1]:5060", Trunk{Host: "2001:db8::1", Port: 5060}, true},
		{"sip:10.0.0.1:5060;transport=tcp", Trunk{Host: "10.0.0.1", Port: 5060, Transport: TransportTCP}, true},
		{"sip:10.0.0.1;transport=TCP", Trunk{Host: "10.0.0.1", Port: 5060, Transport: TransportTCP}, true},
		{"sip:10.0.0.1;transport=tls", Trunk{Host: "10.0.0.1", Port: 5061, Transport: TransportTLS}, true},
		{"sips:10.0.0.1", Trunk{Host: "10.0.0.1", Port: 5061, Transport: TransportTLS}, true},
		{"SIPS:sbc.example:5071", Trunk{Host: "sbc.example", Port: 5071, Transport: TransportTLS}, true},
		{"sips:10.0.0.1;transport=tls", Trunk{Host: "10.0.0.1", Port: 5061, Transport: TransportTLS}, true},
		{"sips:10.0.0.1;transport=udp", Trunk{}, false},
		{"sips:10.0.0.1;transport=tcp", Trunk{}, false},
		{"sip:10.0.0.1;transport=sctp", Trunk{}, false},
		{"sip:10.0.0.1;transport=", Trunk{}, false},
		{"sip:10.0.0.1;lr", Trunk{}, false},
		{"sip:user@10.0.0.1", Trunk{}, false},
		{"", Trunk{}, false},
		{"sip:", Trunk{}, false},
		{"10.0.0.1:0", Trunk{}, false},
		{"10.0.0.1:70000", Trunk{}, false},
		{"10.0.0.1:port", Trunk{}, false},
		{"2001:db8::1", Trunk{}, false},
		{"host name", Trunk{}, false},
		{"host\r\nX: y", Trunk{}, false},
		{"-bad.example.com", Trunk{}, false},
		{"bad..example.com", Trunk{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTrunk(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseTrunk(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if got != tt.want {
				t.Errorf("ParseTrunk(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if err != nil && strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error echoes control characters: %q", err.Error())
			}
		})
	}
}

func FuzzParseTrunk(f *testing.F) {
	for _, s := range []string{"sip:127.0.0.1:5060", "[::1]:5060", "a.b;transport=udp", "sip:@;=", "[::1", "sips:a.b", "sip:a.b;transport=TLS", "a:1;transport=tcp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tr, err := ParseTrunk(s)
		if err != nil {
			return
		}
		if _, err := tr.RequestURI("+15551234567"); err != nil {
			t.Fatalf("ParseTrunk(%q) = %+v, but RequestURI fails: %v", s, tr, err)
		}
		back, err := ParseTrunk(tr.String())
		if err != nil || back != tr {
			t.Fatalf("ParseTrunk(%q) = %+v; its String %q parses to %+v, %v", s, tr, tr.String(), back, err)
		}
	})
}

func TestTrunkStringAndRequestURIByTransport(t *testing.T) {
	tests := []struct {
		in, str, ruri string
	}{
		{"sip:10.0.0.1", "sip:10.0.0.1:5060", "sip:+15551234567@10.0.0.1:5060"},
		{"sip:10.0.0.1:5070;transport=tcp", "sip:10.0.0.1:5070;transport=tcp", "sip:+15551234567@10.0.0.1:5070;transport=tcp"},
		{"sip:sbc.example;transport=tls", "sips:sbc.example:5061", "sip:+15551234567@sbc.example:5061;transport=tls"},
		{"sips:sbc.example:5071", "sips:sbc.example:5071", "sip:+15551234567@sbc.example:5071;transport=tls"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			tr, err := ParseTrunk(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			ruri, err := tr.RequestURI("+15551234567")
			if tr.String() != tt.str || ruri != tt.ruri || err != nil {
				t.Errorf("String %q, RequestURI %q, %v; want %q, %q", tr.String(), ruri, err, tt.str, tt.ruri)
			}
		})
	}
}

func TestRequestURI(t *testing.T) {
	tr := Trunk{Host: "127.0.0.1", Port: 5070}
	got, err := tr.RequestURI("+15551234567")
	if err != nil || got != "sip:+15551234567@127.0.0.1:5070" {
		t.Fatalf("RequestURI = %q, %v", got, err)
	}
	if _, err := tr.RequestURI("+15551234567\r\nX: y"); !errors.Is(err, ErrInvalidNumber) {
		t.Errorf("injection accepted: %v", err)
	}
	if _, err := (Trunk{Host: "bad host", Port: 5060}).RequestURI("+15551234567"); err == nil {
		t.Error("bad trunk host accepted")
	}
	v6, err := (Trunk{Host: "2001:db8::1", Port: 5060}).RequestURI("+15551234567")
	if err != nil || v6 != "sip:+15551234567@[2001:db8::1]:5060" {
		t.Errorf("IPv6 RequestURI = %q, %v", v6, err)
	}
}
