package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

const testAnswer = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"

// callee is a UA taking calls; each Incoming is delivered on calls.
type callee struct {
	ua    *UA
	calls chan *Incoming
}

func newCallee(t *testing.T) *callee {
	t.Helper()
	c := &callee{calls: make(chan *Incoming, 4)}
	c.ua = newTestUA(t, Config{FromUser: "phone", OnInvite: func(in *Incoming) { c.calls <- in }})
	return c
}

func (c *callee) trunk() Trunk {
	return Trunk{Host: "127.0.0.1", Port: int(c.ua.LocalAddr().Port())}
}

func (c *callee) next(t *testing.T) *Incoming {
	t.Helper()
	select {
	case in := <-c.calls:
		return in
	case <-time.After(5 * time.Second):
		t.Fatal("no incoming call")
		return nil
	}
}

type dialed struct {
	call     *Call
	err      error
	progress []int
}

// dial places a call from a fresh UA in the background. ringing is closed when the caller has seen 180.
func dial(t *testing.T, to Trunk, ring time.Duration) (out <-chan dialed, ringing <-chan struct{}) {
	t.Helper()
	caller := newTestUA(t, Config{FromUser: "voiceotp"})
	res := make(chan dialed, 1)
	rang := make(chan struct{})
	go func() {
		var d dialed
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.call, d.err = caller.Dial(ctx, DialRequest{
			Trunk: to, Number: "+15551234567", Offer: []byte(testOffer), RingTimeout: ring,
			OnProgress: func(p Progress) {
				if p.Status == 180 && (len(d.progress) == 0 || d.progress[len(d.progress)-1] != 180) {
					close(rang)
				}
				d.progress = append(d.progress, p.Status)
			},
		})
		res <- d
	}()
	return res, rang
}

func wait[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out")
		var zero T
		return zero
	}
}

func closed(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func TestIncomingAnswer(t *testing.T) {
	for _, tt := range []struct {
		name     string
		hangupBy string // who sends BYE: "callee" or "caller"
	}{
		{"callee hangs up", "callee"},
		{"caller hangs up", "caller"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			phone := newCallee(t)
			res, ringing := dial(t, phone.trunk(), 5*time.Second)
			in := phone.next(t)
			if in.Number() != "+15551234567" || in.From() != "voiceotp" || in.CallID() == "" {
				t.Errorf("number %q from %q call-id %q", in.Number(), in.From(), in.CallID())
			}
			if string(in.OfferSDP()) != testOffer {
				t.Errorf("offer %q", in.OfferSDP())
			}
			if err := in.Ringing(); err != nil {
				t.Fatal(err)
			}
			// sipgo handles each response on a goroutine of its own: a 200 sent right behind the
			// 180 may overtake it, so answer once the caller has seen it ring.
			wait(t, ringing)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			callee, err := in.Answer(ctx, []byte(testAnswer))
			if err != nil {
				t.Fatalf("Answer: %v", err)
			}
			d := wait(t, res)
			if d.err != nil {
				t.Fatalf("Dial: %v", d.err)
			}
			caller := d.call
			if string(caller.AnswerSDP()) != testAnswer || caller.CallID() != in.CallID() {
				t.Errorf("caller sees answer %q call-id %q", caller.AnswerSDP(), caller.CallID())
			}
			if len(d.progress) == 0 || d.progress[len(d.progress)-1] != 180 {
				t.Errorf("progress %v, want … 180", d.progress)
			}
			if err := in.Reject(486, ""); !errors.Is(err, ErrAlreadyAnswered) {
				t.Errorf("Reject after Answer: %v", err)
			}
			hangup, other := callee, caller
			if tt.hangupBy == "caller" {
				hangup, other = caller, callee
			}
			if err := hangup.Hangup(ctx); err != nil {
				t.Fatalf("Hangup: %v", err)
			}
			if !closed(other.Done(), 5*time.Second) {
				t.Fatal("the other side's Done not closed after BYE")
			}
			if hangup.HangupBy() != "local" || other.HangupBy() != "remote" {
				t.Errorf("hangup by %q / %q", hangup.HangupBy(), other.HangupBy())
			}
		})
	}
}

func TestIncomingReject(t *testing.T) {
	tests := []struct {
		status int
		kind   error
	}{
		{486, ErrBusy},
		{480, ErrNoAnswer},
		{603, ErrRejected},
		{404, ErrInvalidNumber},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			phone := newCallee(t)
			res, _ := dial(t, phone.trunk(), 5*time.Second)
			in := phone.next(t)
			if err := in.Reject(tt.status, ""); err != nil {
				t.Fatal(err)
			}
			d := wait(t, res)
			var se *Error
			if !errors.As(d.err, &se) || se.Status != tt.status || !errors.Is(d.err, tt.kind) {
				t.Fatalf("Dial: %v, want %d %v", d.err, tt.status, tt.kind)
			}
			if _, err := in.Answer(context.Background(), []byte(testAnswer)); !errors.Is(err, ErrAlreadyAnswered) {
				t.Errorf("Answer after Reject: %v", err)
			}
		})
	}
	t.Run("bad status", func(t *testing.T) {
		in := &Incoming{}
		for _, s := range []int{0, 200, 299, 700} {
			if err := in.Reject(s, ""); err == nil {
				t.Errorf("Reject(%d) accepted", s)
			}
		}
	})
}

// The caller gives up while we ring: CANCEL, 200 for it, 487 for the INVITE
// (RFC 3261 §9.2), and Done closes.
func TestIncomingCancel(t *testing.T) {
	phone := newCallee(t)
	res, _ := dial(t, phone.trunk(), 400*time.Millisecond)
	in := phone.next(t)
	if err := in.Ringing(); err != nil {
		t.Fatal(err)
	}
	if !closed(in.Done(), 5*time.Second) {
		t.Fatal("Done not closed after CANCEL")
	}
	if !in.Canceled() {
		t.Error("Canceled() = false")
	}
	d := wait(t, res)
	var se *Error
	if !errors.As(d.err, &se) || se.Status != 487 || !errors.Is(d.err, ErrNoAnswer) {
		t.Fatalf("Dial: %v, want 487 no answer", d.err)
	}
	if _, err := in.Answer(context.Background(), []byte(testAnswer)); !errors.Is(err, ErrCallerCanceled) {
		t.Errorf("Answer after CANCEL: %v", err)
	}
	if err := in.Ringing(); !errors.Is(err, ErrCallerCanceled) {
		t.Errorf("Ringing after CANCEL: %v", err)
	}
}

// A caller that never ACKs: the 2xx is retransmitted with growing intervals
// (RFC 3261 §13.3.1.4) and, when Answer gives up, the dialog is ended with a
// BYE built from the callee's side of the dialog.
func TestIncomingNoAck(t *testing.T) {
	p := newPeer(t)
	phone := newCallee(t)
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(phone.ua.LocalAddr().Port())}
	port := p.trunk().Port
	p.send(to, fmt.Sprintf("INVITE sip:+15550001111@%s SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKnoack\nFrom: \"Server\" <sip:otp@127.0.0.1>;tag=srv1\nTo: <sip:+15550001111@127.0.0.1>\nCall-ID: noack-1\nCSeq: 7 INVITE\nMax-Forwards: 70\nContact: <sip:otp@127.0.0.1:%d;transport=udp>\nRecord-Route: <sip:127.0.0.1:%d;lr>\nContent-Type: application/sdp\nContent-Length: %d\n\n%s",
		phone.ua.LocalAddr(), port, port, port, len(testOffer), testOffer))
	in := phone.next(t)
	if in.Number() != "+15550001111" || in.From() != "otp" {
		t.Errorf("number %q from %q", in.Number(), in.From())
	}
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 1800*time.Millisecond)
		defer cancel()
		_, err := in.Answer(ctx, []byte(testAnswer))
		errc <- err
	}()
	var oks []time.Time
	var bye *sip.Request
	for bye == nil {
		m, _ := p.read(5 * time.Second)
		switch m := m.(type) {
		case *sip.Response:
			if m.StatusCode == 200 {
				oks = append(oks, time.Now())
				if tag, _ := m.To().Params.Get("tag"); tag == "" {
					t.Error("200 without To tag")
				}
			}
		case *sip.Request:
			if m.Method == sip.BYE {
				bye = m
			}
		}
	}
	// At 0, 0.5 s and 1.5 s; the next would be at 3.5 s.
	if len(oks) != 3 {
		t.Errorf("200 sent %d times before giving up, want 3", len(oks))
	} else if gap := oks[2].Sub(oks[1]); gap < 900*time.Millisecond || gap > 1500*time.Millisecond {
		t.Errorf("second retransmission after %s, want about 1 s", gap)
	}
	if !strings.Contains(bye.Recipient.String(), "otp@127.0.0.1:"+strconv.Itoa(port)) {
		t.Errorf("BYE Request-URI %s, want the caller's Contact", bye.Recipient.String())
	}
	if tag, _ := bye.To().Params.Get("tag"); tag != "srv1" || bye.To().Address.User != "otp" {
		t.Errorf("BYE To %s, want the INVITE's From", bye.To().Value())
	}
	if tag, _ := bye.From().Params.Get("tag"); tag == "" || bye.From().Address.User != "+15550001111" {
		t.Errorf("BYE From %s, want the INVITE's To with our tag", bye.From().Value())
	}
	if r := bye.GetHeader("Route"); r == nil || !strings.Contains(r.Value(), "127.0.0.1:"+strconv.Itoa(port)+";lr") {
		t.Errorf("BYE Route %v, want the INVITE's Record-Route", r)
	}
	if bye.CallID().Value() != "noack-1" {
		t.Errorf("BYE Call-ID %s", bye.CallID().Value())
	}
	p.reply(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: to.Port}, bye, 200, "OK", "", "")
	if err := wait(t, errc); !errors.Is(err, ErrNoAck) {
		t.Fatalf("Answer: %v, want ErrNoAck", err)
	}
}

// SIPp's built-in UAC scenario calls the UA: INVITE, 180, 200, ACK, its BYE.
func TestIncomingSIPpUAC(t *testing.T) {
	bin, err := exec.LookPath("sipp")
	if err != nil {
		t.Skip("sipp not on PATH (apt-get install -y sip-tester)")
	}
	phone := newCallee(t)
	answered := make(chan *Call, 1)
	go func() {
		in := phone.next(t)
		_ = in.Ringing()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := in.Answer(ctx, []byte(testAnswer))
		if err != nil {
			t.Errorf("Answer: %v", err)
		}
		answered <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-sn", "uac", phone.ua.LocalAddr().String(),
		"-i", "127.0.0.1", "-p", strconv.Itoa(freeUDPPort(t)), "-mp", strconv.Itoa(freeUDPPort(t)),
		"-m", "1", "-nostdin", "-timeout", "15s", "-timeout_error", "-d", "200", "-s", "+15551230000")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sipp uac: %v\n%s", err, tail(string(out), 3000))
	}
	c := wait(t, answered)
	if c == nil {
		t.Fatal("no call")
	}
	if !closed(c.Done(), 5*time.Second) || c.HangupBy() != "remote" {
		t.Errorf("call not ended by SIPp's BYE: %q", c.HangupBy())
	}
}
