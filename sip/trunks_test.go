package sip

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func TestRewriteApply(t *testing.T) {
	tests := []struct {
		name string
		r    Rewrite
		in   string
		want string
	}{
		{"zero keeps E.164", Rewrite{}, "+15551234567", "+15551234567"},
		{"strip plus", Rewrite{StripPlus: true}, "+15551234567", "15551234567"},
		{"prefix", Rewrite{Prefix: "9"}, "+15551234567", "9+15551234567"},
		{"strip plus and prefix", Rewrite{StripPlus: true, Prefix: "*31#"}, "+15551234567", "*31#15551234567"},
		{"national with trunk prefix", Rewrite{CountryCode: "44", NationalPrefix: "0"}, "+442071838750", "02071838750"},
		{"national without trunk prefix", Rewrite{CountryCode: "45"}, "+4532123456", "32123456"},
		{"other country untouched", Rewrite{CountryCode: "44", NationalPrefix: "0"}, "+15551234567", "+15551234567"},
		{"other country, strip plus", Rewrite{CountryCode: "44", NationalPrefix: "0", StripPlus: true}, "+15551234567", "15551234567"},
		{"national wins over strip plus", Rewrite{CountryCode: "44", NationalPrefix: "0", StripPlus: true}, "+442071838750", "02071838750"},
		{"national then prefix", Rewrite{CountryCode: "49", NationalPrefix: "0", Prefix: "0"}, "+4930123456", "0030123456"},
		{"country code is a prefix of digits only", Rewrite{CountryCode: "1"}, "+15551234567", "5551234567"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.r.validate(); err != nil {
				t.Fatalf("validate: %v", err)
			}
			if got := tt.r.Apply(tt.in); got != tt.want {
				t.Errorf("Apply(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestTrunkConfigValidate(t *testing.T) {
	ok := TrunkConfig{Name: "carrier-a", URI: "sip:carrier.example:5060"}
	tests := []struct {
		name string
		edit func(*TrunkConfig)
		want string // "" = valid; else a substring of the error
	}{
		{"minimal", func(*TrunkConfig) {}, ""},
		{"everything", func(c *TrunkConfig) {
			*c = TrunkConfig{Name: "sbc.1", URI: "sips:sbc.example", Username: "u", Password: "p", Realm: "sbc.example",
				Register: true, RegisterExpiry: time.Hour, OutboundProxy: "sip:proxy.example;lr;transport=tls",
				FromUser: "+15550001111", FromDomain: "otp.example", PAssertedIdentity: "sip:+15550001111@carrier.example",
				Privacy: "id", Rewrite: Rewrite{StripPlus: true, Prefix: "*1#", CountryCode: "1", NationalPrefix: "1"},
				Codecs: []string{"PCMA", "PCMU"}, DTMFMode: "auto", SendDigits: "12,,#", MaxChannels: 30, MaxCPS: 2.5,
				Priority: 2, Weight: 3, OptionsInterval: 30 * time.Second, NoResponseTimeout: time.Second,
				TLS: TLSConfig{CAFile: "/etc/ca.pem", ServerName: "sbc.example"}}
		}, ""},
		{"tel PAI", func(c *TrunkConfig) { c.PAssertedIdentity = "tel:+15550001111" }, ""},
		{"name empty", func(c *TrunkConfig) { c.Name = "" }, `trunk "": name:`},
		{"name space", func(c *TrunkConfig) { c.Name = "a b" }, "name:"},
		{"uri empty", func(c *TrunkConfig) { c.URI = "" }, `trunk "carrier-a": uri: required`},
		{"uri bad", func(c *TrunkConfig) { c.URI = "sip:carrier.example;transport=sctp" }, `trunk "carrier-a": uri: sip: invalid trunk`},
		{"username CRLF", func(c *TrunkConfig) { c.Username, c.Password = "a\r\nb", "p" }, "username:"},
		{"username without password", func(c *TrunkConfig) { c.Username = "u" }, "password: required"},
		{"password without username", func(c *TrunkConfig) { c.Password = "p" }, "username: required"},
		{"password CRLF", func(c *TrunkConfig) { c.Username, c.Password = "u", "p\r\n" }, "password: control"},
		{"register without user", func(c *TrunkConfig) { c.Register = true }, "register:"},
		{"expiry too short", func(c *TrunkConfig) { c.RegisterExpiry = time.Second }, "register_expiry:"},
		{"proxy bad", func(c *TrunkConfig) { c.OutboundProxy = "sip:user@proxy" }, "outbound_proxy:"},
		{"from user bad", func(c *TrunkConfig) { c.FromUser = "a@b" }, "from_user:"},
		{"from domain bad", func(c *TrunkConfig) { c.FromDomain = "a b" }, "from_domain:"},
		{"PAI name-addr", func(c *TrunkConfig) { c.PAssertedIdentity = "<sip:a@b>" }, "p_asserted_identity:"},
		{"PAI http", func(c *TrunkConfig) { c.PAssertedIdentity = "http://x" }, "p_asserted_identity:"},
		{"PAI CRLF", func(c *TrunkConfig) { c.PAssertedIdentity = "sip:a@b\r\nX: y" }, "p_asserted_identity:"},
		{"privacy", func(c *TrunkConfig) { c.Privacy = "header" }, "privacy:"},
		{"prefix", func(c *TrunkConfig) { c.Rewrite.Prefix = "9a" }, "rewrite.prefix:"},
		{"country code", func(c *TrunkConfig) { c.Rewrite.CountryCode = "0044" }, "rewrite.country_code:"},
		{"national prefix alone", func(c *TrunkConfig) { c.Rewrite.NationalPrefix = "0" }, "rewrite.national_prefix:"},
		{"codec", func(c *TrunkConfig) { c.Codecs = []string{"PCMU", "G729"} }, "codecs[1]:"},
		{"codec twice", func(c *TrunkConfig) { c.Codecs = []string{"PCMU", "PCMU"} }, "codecs[1]:"},
		{"dtmf mode", func(c *TrunkConfig) { c.DTMFMode = "sip" }, "dtmf_mode:"},
		{"send digits", func(c *TrunkConfig) { c.SendDigits = "12;3" }, "send_digits:"},
		{"channels", func(c *TrunkConfig) { c.MaxChannels = -1 }, "max_channels:"},
		{"cps", func(c *TrunkConfig) { c.MaxCPS = -0.5 }, "max_cps:"},
		{"weight", func(c *TrunkConfig) { c.Weight = -1 }, "weight:"},
		{"options interval", func(c *TrunkConfig) { c.OptionsInterval = time.Millisecond }, "options_interval:"},
		{"tls without tls", func(c *TrunkConfig) { c.TLS.CAFile = "/ca.pem" }, "tls:"},
		{"tls server name", func(c *TrunkConfig) { c.URI, c.TLS.ServerName = "sips:x.example", "a b" }, "tls.server_name:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
			if c.Password != "" && strings.Contains(err.Error(), strings.TrimSpace(c.Password)) && len(strings.TrimSpace(c.Password)) > 1 {
				t.Errorf("error shows the password: %v", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error echoes control characters: %q", err)
			}
		})
	}
}

// fakeTrunks is a Trunks on unstarted trunks, with a fixed clock and a
// scripted random source.
func fakeTrunks(t *testing.T, rolls []int, cfgs ...TrunkConfig) (*Trunks, *time.Time) {
	t.Helper()
	ua := newTestUA(t, Config{})
	tr, err := NewTrunks(ua, cfgs)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tr.now = func() time.Time { return now }
	tr.intn = func(n int) int {
		if len(rolls) == 0 {
			return 0
		}
		r := rolls[0] % n
		rolls = rolls[1:]
		return r
	}
	return tr, &now
}

func names(ts []*trunk) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.cfg.Name)
	}
	return out
}

// order picks trunks until none is left, each excluded after its pick.
func order(tr *Trunks, reserve bool) []string {
	tried := map[*trunk]bool{}
	var picked []*trunk
	for {
		p := tr.pick(tried, reserve)
		if p == nil {
			return names(picked)
		}
		tried[p] = true
		picked = append(picked, p)
	}
}

func TestTrunkSelection(t *testing.T) {
	cfg := func(name string, prio, weight int) TrunkConfig {
		return TrunkConfig{Name: name, URI: "sip:127.0.0.1:5060", Priority: prio, Weight: weight}
	}
	tests := []struct {
		name  string
		cfgs  []TrunkConfig
		rolls []int
		setup func(tr *Trunks)
		want  string
	}{
		{"priority order", []TrunkConfig{cfg("c", 3, 0), cfg("a", 1, 0), cfg("b", 2, 0)}, nil, nil, "a b c"},
		{"weight: low roll takes the first", []TrunkConfig{cfg("x", 1, 1), cfg("y", 1, 3)}, []int{0, 0}, nil, "x y"},
		{"weight: high roll takes the heavier", []TrunkConfig{cfg("x", 1, 1), cfg("y", 1, 3)}, []int{1, 0}, nil, "y x"},
		{"weight: last slot", []TrunkConfig{cfg("x", 1, 1), cfg("y", 1, 3)}, []int{3, 0}, nil, "y x"},
		{"zero weight counts as 1", []TrunkConfig{cfg("x", 1, 0), cfg("y", 1, 0)}, []int{1, 0}, nil, "y x"},
		{"weight only within a priority", []TrunkConfig{cfg("low", 2, 100), cfg("high", 1, 1)}, []int{0, 99}, nil, "high low"},
		{"skip down", []TrunkConfig{cfg("a", 1, 0), cfg("b", 2, 0)}, nil, func(tr *Trunks) {
			tr.trunks[0].probed, tr.trunks[0].up = true, false
		}, "b"},
		{"probed up is fine", []TrunkConfig{cfg("a", 1, 0)}, nil, func(tr *Trunks) {
			tr.trunks[0].probed = true
		}, "a"},
		{"skip at capacity", []TrunkConfig{{Name: "a", URI: "sip:h", MaxChannels: 2}, cfg("b", 1, 0)}, nil, func(tr *Trunks) {
			tr.trunks[0].active = 2
		}, "b"},
		{"skip unregistered", []TrunkConfig{{Name: "a", URI: "sip:h", Username: "u", Password: "p", Register: true}, cfg("b", 1, 0)}, nil, nil, "b"},
		{"skip expired registration", []TrunkConfig{{Name: "a", URI: "sip:h", Username: "u", Password: "p", Register: true}, cfg("b", 1, 0)}, nil, func(tr *Trunks) {
			tr.trunks[0].registered, tr.trunks[0].regExpires = true, tr.now().Add(-time.Second)
		}, "b"},
		{"registered", []TrunkConfig{{Name: "a", URI: "sip:h", Username: "u", Password: "p", Register: true}, cfg("b", 1, 0)}, nil, func(tr *Trunks) {
			tr.trunks[0].registered, tr.trunks[0].regExpires = true, tr.now().Add(time.Minute)
		}, "a b"},
		{"none", []TrunkConfig{cfg("a", 1, 0)}, nil, func(tr *Trunks) {
			tr.trunks[0].probed, tr.trunks[0].up = true, false
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, _ := fakeTrunks(t, tt.rolls, tt.cfgs...)
			if tt.setup != nil {
				tt.setup(tr)
			}
			if got := strings.Join(order(tr, false), " "); got != tt.want {
				t.Errorf("order %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTrunkSelectionLimits(t *testing.T) {
	t.Run("max channels", func(t *testing.T) {
		tr, _ := fakeTrunks(t, nil, TrunkConfig{Name: "a", URI: "sip:h", MaxChannels: 2})
		for i := range 2 {
			if tr.pick(nil, true) == nil {
				t.Fatalf("pick %d failed", i)
			}
		}
		if p := tr.pick(nil, true); p != nil {
			t.Fatal("third call taken at MaxChannels 2")
		}
		tr.release(tr.trunks[0])
		if tr.pick(nil, true) == nil {
			t.Fatal("released channel not reusable")
		}
		if st := tr.Status()[0]; st.Active != 2 {
			t.Errorf("Active = %d", st.Active)
		}
	})
	t.Run("max cps", func(t *testing.T) {
		tr, now := fakeTrunks(t, nil, TrunkConfig{Name: "a", URI: "sip:h", MaxCPS: 2}, TrunkConfig{Name: "b", URI: "sip:h", Priority: 1})
		var got []string
		for range 4 {
			got = append(got, tr.pick(nil, true).cfg.Name)
		}
		if strings.Join(got, " ") != "a a b b" {
			t.Errorf("burst picks %v, want a a b b (burst 2 on a)", got)
		}
		*now = now.Add(500 * time.Millisecond) // one token back at 2/s
		if p := tr.pick(nil, true); p.cfg.Name != "a" {
			t.Errorf("after 500ms picked %s, want a", p.cfg.Name)
		}
		if p := tr.pick(nil, true); p.cfg.Name != "b" {
			t.Errorf("then picked %s, want b", p.cfg.Name)
		}
	})
}

func TestFailsOver(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"503", &Error{Status: 503, Kind: ErrUnreachable}, true},
		{"500", &Error{Status: 500, Kind: ErrUnreachable}, true},
		{"408 from trunk", &Error{Status: 408, Kind: ErrNoAnswer}, true},
		{"no response", &Error{Kind: ErrUnreachable, Reason: "no response"}, true},
		{"no response after ring timeout", &Error{Kind: ErrUnreachable, Reason: "no response", Canceled: true}, true},
		{"transport", &Error{Kind: ErrUnreachable, Reason: "transport error"}, true},
		{"5xx crossing our CANCEL", &Error{Status: 503, Kind: ErrUnreachable, Canceled: true}, false},
		{"408 after our CANCEL", &Error{Status: 408, Kind: ErrNoAnswer, Canceled: true}, false},
		{"486", &Error{Status: 486, Kind: ErrBusy}, false},
		{"404", &Error{Status: 404, Kind: ErrInvalidNumber}, false},
		{"480", &Error{Status: 480, Kind: ErrNoAnswer}, false},
		{"487", &Error{Status: 487, Kind: ErrNoAnswer, Canceled: true}, false},
		{"603", &Error{Status: 603, Kind: ErrRejected}, false},
		{"407", &Error{Status: 407, Kind: ErrAuth}, false},
		{"caller cancelled", &Error{Kind: ErrCanceled}, false},
		{"closed", ErrClosed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := failsOver(tt.err); got != tt.want {
				t.Errorf("failsOver(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestNewTrunksErrors(t *testing.T) {
	ua := newTestUA(t, Config{})
	tests := []struct {
		name string
		cfgs []TrunkConfig
		want string
	}{
		{"none", nil, "no trunk"},
		{"duplicate", []TrunkConfig{{Name: "a", URI: "sip:h"}, {Name: "a", URI: "sip:i"}}, `trunk "a": name: used twice`},
		{"invalid", []TrunkConfig{{Name: "a", URI: "sip:h;transport=x"}}, `trunk "a": uri:`},
		{"missing CA", []TrunkConfig{{Name: "a", URI: "sips:h", TLS: TLSConfig{CAFile: "/nonexistent/ca.pem"}}}, `trunk "a": tls.ca_file:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTrunks(ua, tt.cfgs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewTrunks error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestRedactMessage(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"authorization", "REGISTER sip:x SIP/2.0\r\nAuthorization: Digest username=\"a\", response=\"abc\"\r\nCSeq: 2 REGISTER\r\n\r\n",
			"REGISTER sip:x SIP/2.0\r\nAuthorization: [redacted]\r\nCSeq: 2 REGISTER\r\n\r\n"},
		{"proxy-authorization, any case", "INVITE sip:x SIP/2.0\r\nproxy-AUTHORIZATION :Digest response=\"abc\"\r\n\r\nv=0\r\n",
			"INVITE sip:x SIP/2.0\r\nproxy-AUTHORIZATION: [redacted]\r\n\r\nv=0\r\n"},
		{"folded continuation", "INVITE sip:x SIP/2.0\r\nAuthorization: Digest username=\"a\",\r\n  response=\"abc\"\r\nTo: <sip:x>\r\n\r\n",
			"INVITE sip:x SIP/2.0\r\nAuthorization: [redacted]\r\nTo: <sip:x>\r\n\r\n"},
		{"challenges kept", "SIP/2.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\n\r\n",
			"SIP/2.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\n\r\n"},
		{"LF only", "BYE sip:x SIP/2.0\nAuthorization: Digest response=\"abc\"\n\n", "BYE sip:x SIP/2.0\nAuthorization: [redacted]\n\n"},
		{"body untouched", "INFO sip:x SIP/2.0\r\n\r\nAuthorization: not a header\r\n", "INFO sip:x SIP/2.0\r\n\r\nAuthorization: not a header\r\n"},
		{"no final newline", "BYE sip:x SIP/2.0\r\nAuthorization: Digest response=\"abc\"", "BYE sip:x SIP/2.0\r\nAuthorization: [redacted]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redactMessage(tt.in); got != tt.want {
				t.Errorf("redactMessage =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func FuzzRedactMessage(f *testing.F) {
	f.Add("INVITE sip:x SIP/2.0\r\nAuthorization: Digest response=\"secret\"\r\n\r\n")
	f.Add("A\nProxy-Authorization: secret\n secret\n\n")
	f.Fuzz(func(t *testing.T, msg string) {
		out := redactMessage(msg)
		// Whatever the input, no line of the header section (up to the
		// first empty line after a non-empty one) is an authorization
		// header holding anything else.
		started := false
		for _, line := range strings.Split(out, "\n") {
			line = strings.TrimSuffix(line, "\r")
			if line == "" && started {
				break
			}
			started = started || line != ""
			name, val, ok := strings.Cut(line, ":")
			n := strings.TrimSpace(name)
			if ok && (strings.EqualFold(n, "Authorization") || strings.EqualFold(n, "Proxy-Authorization")) && val != " [redacted]" {
				t.Fatalf("unredacted line %q in %q", line, out)
			}
		}
	})
}

func TestGrantedExpiry(t *testing.T) {
	req := sipReq(t, "REGISTER sip:reg.example SIP/2.0\r\nContact: <sip:alice@192.0.2.1:5060>;expires=600\r\nContent-Length: 0\r\n\r\n")
	tests := []struct {
		name, headers string
		want          time.Duration
	}{
		{"our contact's expires", "Contact: <sip:bob@192.0.2.9:5060>;expires=30\r\nContact: <sip:alice@192.0.2.1:5060>;expires=120\r\nExpires: 90\r\n", 120 * time.Second},
		{"Expires header", "Contact: <sip:bob@192.0.2.9:5060>;expires=30\r\nExpires: 90\r\n", 90 * time.Second},
		{"nothing: what we asked", "", 600 * time.Second},
		{"garbage ignored", "Contact: <sip:alice@192.0.2.1:5060>;expires=soon\r\nExpires: -1\r\n", 600 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := sipRes(t, "SIP/2.0 200 OK\r\n"+tt.headers+"Content-Length: 0\r\n\r\n")
			if got := grantedExpiry(res, req, 600*time.Second); got != tt.want {
				t.Errorf("grantedExpiry = %s, want %s", got, tt.want)
			}
		})
	}
}

func sipReq(t *testing.T, s string) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

func sipRes(t *testing.T, s string) *sip.Response {
	t.Helper()
	m, err := sip.ParseMessage([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Response)
}
