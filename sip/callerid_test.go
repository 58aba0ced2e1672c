package sip

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

const testCallerID = "+15557654321"

// dialAndHangUp places req with dial, hangs up the answered call and waits
// for SIPp's verdict on what it received.
func dialAndHangUp(t *testing.T, p *sippPeer, dial func(context.Context, DialRequest) (*Call, error), req DialRequest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, err := dial(ctx, req)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	p.wait()
}

// TestDialCallerID: SIPp fails the scenario unless From is
// <sip:+15557654321@…> with no display name and P-Asserted-Identity carries
// the same number.
func TestDialCallerID(t *testing.T) {
	p := startSIPp(t, "caller_id.xml")
	ua := newTestUA(t, Config{})
	req := dialReq(p)
	req.CallerID = testCallerID
	dialAndHangUp(t, p, ua.Dial, req)
}

// TestDialWithoutCallerID: SIPp fails the scenario unless From is the
// configured user (the default, voiceotp) and no P-Asserted-Identity is sent.
func TestDialWithoutCallerID(t *testing.T) {
	p := startSIPp(t, "from_default.xml")
	ua := newTestUA(t, Config{})
	dialAndHangUp(t, p, ua.Dial, dialReq(p))
}

// TestDialCallerIDAfterChallenge: the INVITE resent with digest credentials
// presents the same caller ID as the challenged one.
func TestDialCallerIDAfterChallenge(t *testing.T) {
	p := startSIPp(t, "caller_id_auth.xml")
	ua := newTestUA(t, Config{Username: "alice", Password: "s3cret"})
	req := dialReq(p)
	req.CallerID = testCallerID
	dialAndHangUp(t, p, ua.Dial, req)
}

// TestTrunksCallerIDFailover: the caller ID replaces each trunk's own From
// user and P-Asserted-Identity on the first trunk (which never answers) and
// on the trunk the call fails over to (SIPp checks it there); the trunk's
// From domain and Privacy stay.
func TestTrunksCallerIDFailover(t *testing.T) {
	silent := newPeer(t)
	answer := startSIPp(t, "caller_id.xml")
	ua := newTestUA(t, Config{})
	own := func(c TrunkConfig) TrunkConfig {
		c.FromUser, c.FromDomain = "trunkuser", "otp.example"
		c.PAssertedIdentity, c.Privacy = "sip:+15550001111@carrier.example", "id"
		return c
	}
	tr, _ := newTestTrunks(t, ua,
		own(TrunkConfig{Name: "silent", URI: silent.trunk().String(), Priority: 1, NoResponseTimeout: 500 * time.Millisecond}),
		own(TrunkConfig{Name: "good", URI: answer.Trunk.String(), Priority: 2}),
	)
	type result struct {
		call *Call
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := tr.Dial(context.Background(), DialRequest{Number: "+15551234567", CallerID: testCallerID, Offer: []byte(testOffer), RingTimeout: 3 * time.Second})
		done <- result{c, err}
	}()

	inv, _ := silent.readRequest(sip.INVITE)
	checkCallerID(t, inv, testCallerID, "otp.example")
	if h := inv.GetHeader("Privacy"); h == nil || h.Value() != "id" {
		t.Errorf("Privacy = %v, want the trunk's id", h)
	}

	r := <-done
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	if r.call.Trunk().Name != "good" {
		t.Errorf("answered by %s, want good", r.call.Trunk().Name)
	}
	if err := r.call.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	answer.wait()
}

// checkCallerID checks that inv presents id: From sip:id@domain with no
// display name, and exactly one P-Asserted-Identity, <sip:id@domain>.
func checkCallerID(t *testing.T, inv *sip.Request, id, domain string) {
	t.Helper()
	from := inv.From()
	if from.Address.User != id || from.Address.Host != domain || from.DisplayName != "" {
		t.Errorf("From = %s, want <sip:%s@%s> without display name", from.Value(), id, domain)
	}
	pai := inv.GetHeaders("P-Asserted-Identity")
	if want := "<sip:" + id + "@" + domain + ">"; len(pai) != 1 || pai[0].Value() != want {
		t.Errorf("P-Asserted-Identity = %v, want one: %s", pai, want)
	}
}

// TestDialCallerIDAuthRetryRaw checks, on the wire, that the INVITE resent
// after a 407 keeps the From (user and tag) and the P-Asserted-Identity.
func TestDialCallerIDAuthRetryRaw(t *testing.T) {
	p := newPeer(t)
	ua := newTestUA(t, Config{Username: "alice", Password: "s3cret"})
	done := make(chan error, 1)
	go func() {
		_, err := ua.Dial(context.Background(), DialRequest{Trunk: p.trunk(), Number: "+15551234567", CallerID: testCallerID, RingTimeout: 3 * time.Second})
		done <- err
	}()
	inv, from := p.readRequest(sip.INVITE)
	checkCallerID(t, inv, testCallerID, "127.0.0.1")
	p.reply(from, inv, 407, "Proxy Authentication Required", "peer1",
		"Proxy-Authenticate: Digest realm=\"voiceotp.test\", nonce=\"abc\", algorithm=MD5\n")
	var retry *sip.Request
	for retry == nil {
		r, _ := p.readRequest(sip.INVITE)
		if r.CSeq().SeqNo != inv.CSeq().SeqNo {
			retry = r
		}
	}
	checkCallerID(t, retry, testCallerID, "127.0.0.1")
	if retry.From().Value() != inv.From().Value() {
		t.Errorf("retry From = %s, want %s", retry.From().Value(), inv.From().Value())
	}
	p.reply(from, retry, 486, "Busy Here", "peer1", "")
	if err := <-done; !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
}

func TestValidateCallerID(t *testing.T) {
	tests := []struct {
		name, id string
		ok       bool
	}{
		{"empty keeps the configured one", "", true},
		{"e164", testCallerID, true},
		{"shortest", "+12345678", true},
		{"longest", "+123456789012345", true},
		{"CRLF header injection", "+15557654321\r\nX-Evil: 1", false},
		{"LF inside", "+1555\n7654321", false},
		{"CR only", "+15557654321\r", false},
		{"letters", "+1555765432a", false},
		{"name", "anonymous", false},
		{"no plus", "15557654321", false},
		{"leading zero", "+05557654321", false},
		{"URI", "sip:+15557654321@evil.example", false},
		{"angle bracket", "+15557654321>", false},
		{"too long", "+1234567890123456", false},
		{"NUL", "+1555765432\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateCallerID(tt.id)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateCallerID(%q) = %v, want ok %v", tt.id, err, tt.ok)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrInvalidNumber) {
				t.Errorf("err = %v, want ErrInvalidNumber", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n\x00") {
				t.Errorf("error echoes control characters: %q", err.Error())
			}
		})
	}
}

// TestDialBadCallerIDSendsNothing: UA.Dial and Trunks.Dial refuse a caller
// ID that is not E.164 before any byte is sent (and before a trunk is
// reserved).
func TestDialBadCallerIDSendsNothing(t *testing.T) {
	p := newPeer(t)
	ua := newTestUA(t, Config{})
	tr, _ := newTestTrunks(t, ua, TrunkConfig{Name: "only", URI: "sip:127.0.0.1:" + strconv.Itoa(p.trunk().Port), MaxChannels: 1})
	dialers := []struct {
		name string
		dial func(context.Context, DialRequest) (*Call, error)
	}{
		{"UA", ua.Dial},
		{"Trunks", tr.Dial},
	}
	for _, d := range dialers {
		for _, id := range []string{"+15557654321\r\nX-Evil: 1", "+1555765432a", "anonymous", "15557654321", "+"} {
			t.Run(d.name+"/"+strconv.Quote(id), func(t *testing.T) {
				_, err := d.dial(context.Background(), DialRequest{Trunk: p.trunk(), Number: "+15551234567", CallerID: id, Offer: []byte(testOffer)})
				if !errors.Is(err, ErrInvalidNumber) || !strings.Contains(err.Error(), "caller ID") {
					t.Errorf("err = %v, want ErrInvalidNumber naming the caller ID", err)
				}
			})
		}
	}
	p.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _, err := p.conn.ReadFromUDP(make([]byte, 1500)); err == nil {
		t.Errorf("peer received %d bytes", n)
	}
	if st := tr.Status(); st[0].Active != 0 {
		t.Errorf("trunk has %d active calls, want 0", st[0].Active)
	}
}
