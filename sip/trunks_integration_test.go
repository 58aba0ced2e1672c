package sip

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Integration tests of Trunks against a real Kamailio (registrar and
// digest-authenticating proxy) in front of a SIPp callee, all on 127.0.0.1.

const kamUser, kamPass = "alice", "s3cret"

// newTestTrunks builds a Trunks whose state changes signal the returned
// channel.
func newTestTrunks(t *testing.T, ua *UA, cfgs ...TrunkConfig) (*Trunks, <-chan struct{}) {
	t.Helper()
	tr, err := NewTrunks(ua, cfgs)
	if err != nil {
		t.Fatal(err)
	}
	changed := make(chan struct{}, 1)
	tr.changed = func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	return tr, changed
}

// waitStatus waits until ok holds for the status of trunk name, or fails
// after d.
func waitStatus(t *testing.T, tr *Trunks, changed <-chan struct{}, name string, d time.Duration, ok func(TrunkStatus) bool) TrunkStatus {
	t.Helper()
	deadline := time.After(d)
	for {
		for _, st := range tr.Status() {
			if st.Name == name && ok(st) {
				return st
			}
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("trunk %s: condition not met in %s; status %+v", name, d, tr.Status())
		}
	}
}

// runTrunks runs tr until the test ends (or stop is called) and returns
// stop, which cancels Run and waits for it.
func runTrunks(t *testing.T, tr *Trunks) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(8 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func kamTrunk(name, uri string) TrunkConfig {
	return TrunkConfig{Name: name, URI: uri, Username: kamUser, Password: kamPass}
}

func TestKamailioRegisterAndUnregister(t *testing.T) {
	k := startKamailio(t, kamailioOptions{})
	ua := newTestUA(t, Config{})
	cfg := kamTrunk("kam", k.uri("udp"))
	cfg.Register, cfg.RegisterExpiry = true, 60*time.Second
	tr, changed := newTestTrunks(t, ua, cfg)
	stop := runTrunks(t, tr)

	st := waitStatus(t, tr, changed, "kam", 5*time.Second, func(st TrunkStatus) bool { return st.Registered })
	if left := time.Until(st.RegisterExpires); left < 50*time.Second || left > 61*time.Second {
		t.Errorf("RegisterExpires in %s, want about 60s", left)
	}
	if st.LastStatus != 200 || st.LastError != "" {
		t.Errorf("LastStatus %d, LastError %q", st.LastStatus, st.LastError)
	}
	// The registrar knows our contact: a request for alice reaches our UA,
	// which answers OPTIONS itself.
	if got := k.optionsStatus(kamUser); got != 200 {
		t.Fatalf("OPTIONS to registered %s: %d, want 200 from our UA", kamUser, got)
	}

	stop() // un-registers
	if st := tr.Status()[0]; st.Registered || !st.RegisterExpires.IsZero() {
		t.Errorf("after Run: %+v", st)
	}
	if got := k.optionsStatus(kamUser); got != 404 {
		t.Errorf("OPTIONS to %s after un-registration: %d, want 404 (no binding)", kamUser, got)
	}
}

func TestKamailioRegisterWrongPassword(t *testing.T) {
	k := startKamailio(t, kamailioOptions{})
	ua := newTestUA(t, Config{})
	cfg := kamTrunk("kam", k.uri("udp"))
	cfg.Password = "wrong"
	cfg.Register = true
	tr, _ := newTestTrunks(t, ua, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	start := time.Now()
	st := tr.Check(ctx)[0]
	if time.Since(start) > 5*time.Second {
		t.Errorf("Check took %s", time.Since(start))
	}
	if !st.Up || st.Registered || st.LastStatus != 401 || !strings.Contains(st.LastError, "register: sip: authentication failed (401") {
		t.Errorf("status %+v, want up, not registered, 401 authentication failed", st)
	}
	if strings.Contains(st.LastError, "wrong") {
		t.Error("LastError shows the password")
	}
}

func TestKamailioCheck(t *testing.T) {
	k := startKamailio(t, kamailioOptions{})
	ua := newTestUA(t, Config{})
	reg := kamTrunk("kam", k.uri("udp"))
	reg.Register = true
	dead := TrunkConfig{Name: "dead", URI: "sip:127.0.0.1:" + strconv.Itoa(freeUDPPort(t))}
	tr, _ := newTestTrunks(t, ua, reg, dead)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := tr.Check(ctx)
	if st := got[0]; !st.Up || !st.Probed || st.RTT <= 0 || !st.Registered || st.RegisterExpires.IsZero() || st.LastStatus != 200 {
		t.Errorf("kam: %+v, want up, probed, registered", st)
	}
	if st := got[1]; st.Up || !st.Probed || !strings.Contains(st.LastError, "options: sip: unreachable") {
		t.Errorf("dead: %+v, want down with an options error", st)
	}
	// Check un-registered again.
	if code := k.optionsStatus(kamUser); code != 404 {
		t.Errorf("after Check, OPTIONS to %s: %d, want 404", kamUser, code)
	}
}

func TestKamailioInviteAuthThroughProxy(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			p := startSIPp(t, filepath.Join("kamailio", "uas_rr.xml"))
			k := startKamailio(t, kamailioOptions{calleePort: p.Trunk.Port})
			ua := newTestUA(t, Config{})
			tr, _ := newTestTrunks(t, ua, kamTrunk("kam", k.uri(transport)))
			var attempts []Attempt
			req := DialRequest{Number: "+15551234567", Offer: []byte(testOffer), RingTimeout: 5 * time.Second,
				OnAttempt: func(a Attempt) { attempts = append(attempts, a) }}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			call, err := tr.Dial(ctx, req)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			if call.Trunk() == nil || call.Trunk().Name != "kam" || len(attempts) != 0 {
				t.Errorf("Trunk() = %+v, attempts %+v", call.Trunk(), attempts)
			}
			if len(call.d.routes) == 0 {
				t.Error("no route set learnt from Record-Route")
			} else if v, _ := call.d.routes[0].Address.UriParams.Get("transport"); transport == "tcp" && v != "tcp" {
				t.Errorf("first route %s, want transport=tcp", call.d.routes[0].Address.String())
			}
			if st := tr.Status()[0]; st.Active != 1 {
				t.Errorf("Active = %d during the call", st.Active)
			}
			if err := call.Hangup(ctx); err != nil {
				t.Fatalf("Hangup: %v", err)
			}
			if st := tr.Status()[0]; st.Active != 0 {
				t.Errorf("Active = %d after the call", st.Active)
			}
			p.wait() // SIPp saw ACK and BYE arrive through the proxy
		})
	}
}

func TestKamailioInviteWrongPassword(t *testing.T) {
	k := startKamailio(t, kamailioOptions{})
	ua := newTestUA(t, Config{})
	cfg := kamTrunk("kam", k.uri("udp"))
	cfg.Password = "not-the-password"
	tr, _ := newTestTrunks(t, ua, cfg)
	var attempts []Attempt
	start := time.Now()
	_, err := tr.Dial(context.Background(), DialRequest{Number: "+15551234567", Offer: []byte(testOffer),
		RingTimeout: 5 * time.Second, OnAttempt: func(a Attempt) { attempts = append(attempts, a) }})
	var se *Error
	if !errors.Is(err, ErrAuth) || !errors.As(err, &se) || se.Status != 407 {
		t.Fatalf("err = %v, want ErrAuth with 407", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("failure took %s", d)
	}
	if len(attempts) != 1 || attempts[0].FailedOver || attempts[0].Status != 407 {
		t.Errorf("attempts %+v, want one 407 without failover", attempts)
	}
	if strings.Contains(err.Error(), "not-the-password") {
		t.Error("error shows the password")
	}
}

func TestKamailioTLS(t *testing.T) {
	pki := testPKI(t)
	p := startSIPp(t, filepath.Join("kamailio", "uas_rr.xml"))
	k := startKamailio(t, kamailioOptions{calleePort: p.Trunk.Port, tlsDir: pki})
	ua := newTestUA(t, Config{})
	cfg := kamTrunk("kam-tls", k.uri("tls"))
	cfg.TLS.CAFile = filepath.Join(pki, "ca.pem")
	tr, _ := newTestTrunks(t, ua, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, err := tr.Dial(ctx, DialRequest{Number: "+15551234567", Offer: []byte(testOffer), RingTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("Dial over TLS: %v", err)
	}
	if v, _ := call.d.routes[0].Address.UriParams.Get("transport"); v != "tls" {
		t.Errorf("first route %s, want transport=tls", call.d.routes[0].Address.String())
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	p.wait()
}

func TestKamailioTLSUnknownCA(t *testing.T) {
	pki := testPKI(t)
	k := startKamailio(t, kamailioOptions{tlsDir: pki})
	tests := []struct {
		name string
		tls  TLSConfig
		want string
	}{
		{"system roots", TLSConfig{}, "certificate signed by unknown authority"},
		{"wrong server name", TLSConfig{CAFile: filepath.Join(pki, "ca.pem"), ServerName: "other.test"}, "other.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ua := newTestUA(t, Config{})
			cfg := kamTrunk("kam-tls", k.uri("tls"))
			cfg.TLS = tt.tls
			tr, _ := newTestTrunks(t, ua, cfg)
			start := time.Now()
			_, err := tr.Dial(context.Background(), DialRequest{Number: "+15551234567", Offer: []byte(testOffer), RingTimeout: 5 * time.Second})
			var se *Error
			if !errors.Is(err, ErrUnreachable) || !errors.As(err, &se) || se.Status != 0 {
				t.Fatalf("err = %v, want ErrUnreachable without status", err)
			}
			if !strings.Contains(err.Error(), "TLS handshake") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want a TLS handshake error mentioning %q", err, tt.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("failure took %s", d)
			}
		})
	}
	// Nothing fell back to cleartext: Kamailio never saw an INVITE.
	if strings.Contains(k.out.String(), "INVITE sip:") {
		t.Errorf("Kamailio received an INVITE:\n%s", tail(k.out.String(), 2000))
	}
}

func TestKamailioInfoDTMF(t *testing.T) {
	p := startSIPp(t, filepath.Join("kamailio", "uas_info.xml"))
	k := startKamailio(t, kamailioOptions{calleePort: p.Trunk.Port})
	ua := newTestUA(t, Config{})
	tr, _ := newTestTrunks(t, ua, kamTrunk("kam", k.uri("udp")))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, err := tr.Dial(ctx, DialRequest{Number: "+15551234567", Offer: []byte(testOffer), RingTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	select {
	case d := <-call.Digits():
		if d.Digit != '5' || d.Duration != 160*time.Millisecond || d.At.IsZero() {
			t.Errorf("digit %+v, want '5' for 160ms", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no INFO digit")
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	p.wait() // SIPp got 200 for its INFO, then our BYE
}

func TestKamailioOptionsProbe(t *testing.T) {
	k := startKamailio(t, kamailioOptions{})
	ua := newTestUA(t, Config{})
	up := TrunkConfig{Name: "kam", URI: k.uri("tcp"), OptionsInterval: time.Second}
	down := TrunkConfig{Name: "dead", URI: "sip:127.0.0.1:" + strconv.Itoa(freeUDPPort(t)), OptionsInterval: time.Second}
	tr, changed := newTestTrunks(t, ua, up, down)
	runTrunks(t, tr)
	st := waitStatus(t, tr, changed, "kam", 5*time.Second, func(st TrunkStatus) bool { return st.Probed })
	if !st.Up || st.RTT <= 0 || st.LastStatus != 200 || st.LastProbe.IsZero() || st.Transport != TransportTCP {
		t.Errorf("kam: %+v, want up over tcp with an RTT", st)
	}
	st = waitStatus(t, tr, changed, "dead", 8*time.Second, func(st TrunkStatus) bool { return !st.Up })
	if !st.Probed || st.LastError == "" {
		t.Errorf("dead: %+v", st)
	}
	// A down trunk takes no calls.
	if got := tr.pick(map[*trunk]bool{tr.trunks[0]: true}, false); got != nil {
		t.Errorf("picked %s although it is down", got.cfg.Name)
	}
}

// TestTraceRedactsAuthorization places a call through the authenticating
// proxy with Trace on and a debug-level log: every message is logged, and
// the digest credentials never are.
func TestTraceRedactsAuthorization(t *testing.T) {
	p := startSIPp(t, filepath.Join("kamailio", "uas_rr.xml"))
	k := startKamailio(t, kamailioOptions{calleePort: p.Trunk.Port})
	var buf lockedBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ua := newTestUA(t, Config{Trace: true, Logger: log})
	tr, _ := newTestTrunks(t, ua, kamTrunk("kam", k.uri("udp")))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, err := tr.Dial(ctx, DialRequest{Number: "+15551234567", Offer: []byte(testOffer), RingTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	p.wait()
	ua.Close()
	out := buf.String()
	for _, want := range []string{"sip: trace sent", "sip: trace received", "INVITE sip:+15551234567@", "Proxy-Authenticate: Digest", "Proxy-Authorization: [redacted]", "SIP/2.0 200 OK", "BYE sip:"} {
		if !strings.Contains(out, want) {
			t.Errorf("trace lacks %q", want)
		}
	}
	for _, bad := range []string{"response=", "Proxy-Authorization: Digest", "Authorization: Digest", kamPass} {
		if strings.Contains(out, bad) {
			t.Errorf("log contains %q", bad)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", tail(out, 5000))
	}
}

// TestTrunksFailover: a dead UDP port (no response at all), a TCP port
// nobody listens on (connection refused) and a trunk answering 503 are each
// failed over from, in priority order, and the call is answered by the last
// trunk; OnAttempt hears of every failed attempt.
func TestTrunksFailover(t *testing.T) {
	unavailable := startSIPp(t, "unavailable.xml")
	answer := startSIPp(t, "answer.xml")
	ua := newTestUA(t, Config{})
	tr, _ := newTestTrunks(t, ua,
		TrunkConfig{Name: "silent", URI: "sip:127.0.0.1:" + strconv.Itoa(freeUDPPort(t)), Priority: 1, NoResponseTimeout: 500 * time.Millisecond},
		TrunkConfig{Name: "refused", URI: "sip:127.0.0.1:" + strconv.Itoa(freePort(t)) + ";transport=tcp", Priority: 2},
		TrunkConfig{Name: "unavailable", URI: unavailable.Trunk.String(), Priority: 3},
		TrunkConfig{Name: "good", URI: answer.Trunk.String(), Priority: 4},
	)
	var attempts []Attempt
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, err := tr.Dial(ctx, DialRequest{Number: "+15551234567", Offer: []byte(testOffer), RingTimeout: 3 * time.Second,
		OnAttempt: func(a Attempt) { attempts = append(attempts, a) }})
	if err != nil {
		t.Fatalf("Dial: %v (attempts %+v)", err, attempts)
	}
	if call.Trunk().Name != "good" {
		t.Errorf("answered by %s, want good", call.Trunk().Name)
	}
	want := []struct {
		trunk  string
		status int
		text   string
	}{
		{"silent", 0, "no response within 500ms"},
		{"refused", 0, "connection refused"},
		{"unavailable", 503, "503 Service Unavailable"},
	}
	if len(attempts) != len(want) {
		t.Fatalf("attempts %+v, want %d", attempts, len(want))
	}
	for i, w := range want {
		a := attempts[i]
		if a.Trunk != w.trunk || a.Status != w.status || !a.FailedOver || !errors.Is(a.Err, ErrUnreachable) ||
			!strings.Contains(a.Err.Error(), w.text) || a.At.IsZero() {
			t.Errorf("attempt %d = %+v (err %v), want %s status %d failed over with %q", i, a, a.Err, w.trunk, w.status, w.text)
		}
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	unavailable.wait()
	answer.wait()
}

// TestTrunksNoFailover: an answer from the callee ends the call on the
// first trunk, whatever it is.
func TestTrunksNoFailover(t *testing.T) {
	tests := []struct {
		scenario string
		kind     error
		status   int
	}{
		{"busy.xml", ErrBusy, 486},
		{"ring_forever.xml", ErrNoAnswer, 487}, // our ring timeout: not the trunk's fault
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			first := startSIPp(t, tt.scenario)
			ua := newTestUA(t, Config{})
			tr, _ := newTestTrunks(t, ua,
				TrunkConfig{Name: "first", URI: first.Trunk.String(), Priority: 1},
				// Never tried: nothing listens there.
				TrunkConfig{Name: "second", URI: "sip:127.0.0.1:" + strconv.Itoa(freeUDPPort(t)), Priority: 2},
			)
			var attempts []Attempt
			_, err := tr.Dial(context.Background(), DialRequest{Number: "+15551234567", Offer: []byte(testOffer), RingTimeout: time.Second,
				OnAttempt: func(a Attempt) { attempts = append(attempts, a) }})
			var se *Error
			if !errors.Is(err, tt.kind) || !errors.As(err, &se) || se.Status != tt.status {
				t.Fatalf("err = %v, want %v with %d", err, tt.kind, tt.status)
			}
			if len(attempts) != 1 || attempts[0].Trunk != "first" || attempts[0].FailedOver || attempts[0].Status != tt.status {
				t.Errorf("attempts %+v, want one on first without failover", attempts)
			}
			first.wait()
		})
	}
}

func TestTrunksNoneAvailable(t *testing.T) {
	ua := newTestUA(t, Config{})
	// Registration required but Run never ran: not available.
	tr, _ := newTestTrunks(t, ua, TrunkConfig{Name: "reg", URI: "sip:127.0.0.1:9", Username: "u", Password: "p", Register: true})
	_, err := tr.Dial(context.Background(), DialRequest{Number: "+15551234567"})
	var se *Error
	if !errors.Is(err, ErrUnreachable) || !errors.As(err, &se) || se.Reason != "no trunk available" {
		t.Fatalf("err = %v, want ErrUnreachable: no trunk available", err)
	}
	if got := err.Error(); got != "sip: unreachable (no trunk available)" {
		t.Errorf("Error() = %q", got)
	}
}
