package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// peer is a hand-driven SIP endpoint on a raw UDP socket: the test reads
// what the UA sends and writes exactly what it wants back.
type peer struct {
	t    *testing.T
	conn *net.UDPConn
}

func newPeer(t *testing.T) *peer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &peer{t: t, conn: c}
}

func (p *peer) trunk() Trunk {
	a := p.conn.LocalAddr().(*net.UDPAddr)
	return Trunk{Host: "127.0.0.1", Port: a.Port}
}

// read returns the next SIP message and its source, skipping none.
func (p *peer) read(d time.Duration) (sip.Message, *net.UDPAddr) {
	p.t.Helper()
	buf := make([]byte, 65535)
	p.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := p.conn.ReadFromUDP(buf)
	if err != nil {
		p.t.Fatalf("peer read: %v", err)
	}
	m, err := sip.ParseMessage(buf[:n])
	if err != nil {
		p.t.Fatalf("peer parse: %v\n%s", err, buf[:n])
	}
	return m, from
}

// readRequest reads until a request with method arrives (skipping
// retransmissions of anything else).
func (p *peer) readRequest(method sip.RequestMethod) (*sip.Request, *net.UDPAddr) {
	p.t.Helper()
	for i := 0; i < 20; i++ {
		m, from := p.read(3 * time.Second)
		if r, ok := m.(*sip.Request); ok && r.Method == method {
			return r, from
		}
	}
	p.t.Fatalf("no %s", method)
	return nil, nil
}

func (p *peer) readResponse() *sip.Response {
	p.t.Helper()
	for i := 0; i < 20; i++ {
		m, _ := p.read(3 * time.Second)
		if r, ok := m.(*sip.Response); ok {
			return r
		}
	}
	p.t.Fatal("no response")
	return nil
}

func (p *peer) send(to *net.UDPAddr, msg string) {
	p.t.Helper()
	msg = strings.ReplaceAll(msg, "\n", "\r\n")
	if _, err := p.conn.WriteToUDP([]byte(msg), to); err != nil {
		p.t.Fatal(err)
	}
}

// reply answers req with status, copying the transaction headers.
func (p *peer) reply(to *net.UDPAddr, req *sip.Request, status int, reason, toTag, extra string) {
	p.t.Helper()
	toHdr := req.To().Value()
	if toTag != "" {
		toHdr += ";tag=" + toTag
	}
	p.send(to, fmt.Sprintf("SIP/2.0 %d %s\nVia: %s\nFrom: %s\nTo: %s\nCall-ID: %s\nCSeq: %s\n%sContent-Length: 0\n\n",
		status, reason, req.Via().Value(), req.From().Value(), toHdr, req.CallID().Value(), req.CSeq().Value(), extra))
}

func TestNewUAConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"all set", Config{UserAgent: "otp/1.0", FromUser: "+15550001111", FromDomain: "otp.example.com", Username: "u", Password: "p"}, true},
		{"from user CRLF", Config{FromUser: "x\r\nX: y"}, false},
		{"from user at", Config{FromUser: "a@b"}, false},
		{"from user space", Config{FromUser: "a b"}, false},
		{"from domain bad", Config{FromDomain: "evil.com>\r\n"}, false},
		{"user agent CRLF", Config{UserAgent: "ua\r\nX: y"}, false},
		{"username quote", Config{Username: `a"b`}, false},
		{"unspecified listen, no advertise", Config{ListenAddr: "0.0.0.0:0"}, false},
		{"unspecified listen, advertise", Config{ListenAddr: "0.0.0.0:0", AdvertiseHost: "192.0.2.10"}, true},
		{"bad listen", Config{ListenAddr: "nonsense"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ua, err := NewUA(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("NewUA error = %v, want ok=%v", err, tt.ok)
			}
			if err != nil {
				if strings.ContainsAny(err.Error(), "\r\n") {
					t.Errorf("error echoes control characters: %q", err)
				}
				return
			}
			if !ua.LocalAddr().IsValid() || ua.LocalAddr().Port() == 0 {
				t.Errorf("LocalAddr = %v", ua.LocalAddr())
			}
			if err := ua.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := ua.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestDialInvalidNumberSendsNothing(t *testing.T) {
	p := newPeer(t)
	ua := newTestUA(t, Config{})
	for _, n := range []string{"+1555\r\nX: y", "5551234567", ""} {
		_, err := ua.Dial(context.Background(), DialRequest{Trunk: p.trunk(), Number: n})
		if !errors.Is(err, ErrInvalidNumber) {
			t.Errorf("Dial(%q) = %v, want ErrInvalidNumber", n, err)
		}
	}
	p.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _, err := p.conn.ReadFromUDP(make([]byte, 1500)); err == nil {
		t.Errorf("peer received %d bytes", n)
	}
}

func TestDialAfterClose(t *testing.T) {
	ua := newTestUA(t, Config{})
	ua.Close()
	_, err := ua.Dial(context.Background(), DialRequest{Trunk: Trunk{Host: "127.0.0.1", Port: 9}, Number: "+15551234567"})
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
}

// TestDialDialog drives a whole call from a raw socket: it checks the INVITE
// on the wire, answers, sends an in-dialog INFO and ends the call with BYE.
func TestDialDialog(t *testing.T) {
	p := newPeer(t)
	ua := newTestUA(t, Config{FromUser: "+15550001111", UserAgent: "otp-test"})
	type result struct {
		call *Call
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ua.Dial(context.Background(), DialRequest{Trunk: p.trunk(), Number: "+15551234567", Offer: []byte(testOffer), RingTimeout: 5 * time.Second})
		ch <- result{c, err}
	}()

	inv, from := p.readRequest(sip.INVITE)
	if from.Port != int(ua.LocalAddr().Port()) {
		t.Errorf("INVITE came from port %d, want the listening port %d", from.Port, ua.LocalAddr().Port())
	}
	checks := map[string]bool{
		"Request-URI":    inv.Recipient.String() == "sip:+15551234567@127.0.0.1:"+fmt.Sprint(p.trunk().Port),
		"From tag":       inv.From().Params.Has("tag"),
		"From user":      inv.From().Address.User == "+15550001111",
		"To no tag":      !inv.To().Params.Has("tag"),
		"Via rport":      inv.Via().Params.Has("rport"),
		"Via port":       inv.Via().Port == int(ua.LocalAddr().Port()),
		"Contact port":   inv.Contact() != nil && inv.Contact().Address.Port == int(ua.LocalAddr().Port()),
		"Content-Type":   inv.ContentType() != nil && inv.ContentType().Value() == "application/sdp",
		"Max-Forwards":   inv.MaxForwards() != nil && inv.MaxForwards().Val() == 70,
		"User-Agent":     inv.GetHeader("User-Agent") != nil && inv.GetHeader("User-Agent").Value() == "otp-test",
		"Allow":          inv.GetHeader("Allow") != nil && strings.Contains(inv.GetHeader("Allow").Value(), "BYE"),
		"body":           string(inv.Body()) == testOffer,
		"Content-Length": inv.ContentLength() != nil && int(*inv.ContentLength()) == len(testOffer),
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("INVITE: %s wrong:\n%s", name, inv)
		}
	}

	contact := fmt.Sprintf("Contact: <sip:callee@127.0.0.1:%d>\nContent-Type: application/sdp\n", p.trunk().Port)
	p.reply(from, inv, 180, "Ringing", "peer1", "")
	// 200 with a body: build by hand to set Content-Length.
	body := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0\r\n"
	ok := fmt.Sprintf("SIP/2.0 200 OK\r\nVia: %s\r\nFrom: %s\r\nTo: %s;tag=peer1\r\nCall-ID: %s\r\nCSeq: %s\r\n%sContent-Length: %d\r\n\r\n%s",
		inv.Via().Value(), inv.From().Value(), inv.To().Value(), inv.CallID().Value(), inv.CSeq().Value(),
		strings.ReplaceAll(contact, "\n", "\r\n"), len(body), body)
	if _, err := p.conn.WriteToUDP([]byte(ok), from); err != nil {
		t.Fatal(err)
	}

	r := <-ch
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	call := r.call
	if string(call.AnswerSDP()) != body {
		t.Errorf("AnswerSDP = %q", call.AnswerSDP())
	}

	ack, _ := p.readRequest(sip.ACK)
	if ack.Recipient.User != "callee" || ack.CSeq().SeqNo != inv.CSeq().SeqNo {
		t.Errorf("ACK Request-URI %s CSeq %s; want the 200's Contact and INVITE CSeq", ack.Recipient.String(), ack.CSeq().Value())
	}
	if tag, _ := ack.To().Params.Get("tag"); tag != "peer1" {
		t.Errorf("ACK To tag %q", tag)
	}
	ackBranch, _ := ack.Via().Params.Get("branch")
	invBranch, _ := inv.Via().Params.Get("branch")
	if ackBranch == invBranch {
		// ACK for 2xx is a new transaction (RFC 3261 §13.2.2.4).
		t.Error("ACK reuses the INVITE branch")
	}

	// Retransmitting the 200 gets the ACK again.
	if _, err := p.conn.WriteToUDP([]byte(ok), from); err != nil {
		t.Fatal(err)
	}
	p.readRequest(sip.ACK)

	// In-dialog INFO: 200. Same INFO with the wrong tag: 481.
	info := func(toTag string, cseq int) string {
		return fmt.Sprintf("INFO sip:%s@127.0.0.1:%d SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKinfo%d\nFrom: <sip:callee@127.0.0.1>;tag=peer1\nTo: %s;tag=%s\nCall-ID: %s\nCSeq: %d INFO\nMax-Forwards: 70\nContent-Length: 0\n\n",
			"voiceotp", ua.LocalAddr().Port(), p.trunk().Port, cseq, inv.From().Address.String(), toTag, inv.CallID().Value(), cseq)
	}
	ourTag, _ := inv.From().Params.Get("tag")
	p.send(from, info(ourTag, 10))
	if res := p.readResponse(); res.StatusCode != 200 {
		t.Errorf("in-dialog INFO got %d", res.StatusCode)
	}
	p.send(from, info("nosuchtag", 11))
	if res := p.readResponse(); res.StatusCode != 481 {
		t.Errorf("INFO outside dialog got %d", res.StatusCode)
	}

	// INFO DTMF (RFC 6086): parsed bodies reach Digits, once each even when
	// the INFO is retransmitted; bad bodies are refused and yield nothing.
	infoBody := func(cseq int, ctype, body string) string {
		return fmt.Sprintf("INFO sip:voiceotp@127.0.0.1:%d SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKdtmf%d\nFrom: <sip:callee@127.0.0.1>;tag=peer1\nTo: %s;tag=%s\nCall-ID: %s\nCSeq: %d INFO\nMax-Forwards: 70\nContent-Type: %s\nContent-Length: %d\n\n%s",
			ua.LocalAddr().Port(), p.trunk().Port, cseq, inv.From().Address.String(), ourTag, inv.CallID().Value(), cseq, ctype, len(body), body)
	}
	infos := []struct {
		name, ctype, body string
		status            int
		digit             byte
		dur               time.Duration
	}{
		{"dtmf-relay", "application/dtmf-relay", "Signal=#\r\nDuration=250\r\n", 200, '#', 250 * time.Millisecond},
		{"dtmf", "application/dtmf", "7", 200, '7', 0},
		{"bad dtmf-relay", "application/dtmf-relay", "Volume=10\r\n", 400, 0, 0},
		{"other type", "text/plain", "5", 415, 0, 0},
	}
	for i, tc := range infos {
		msg := infoBody(20+i, tc.ctype, tc.body)
		p.send(from, msg)
		res := p.readResponse()
		if res.StatusCode != tc.status {
			t.Errorf("INFO %s: %d, want %d", tc.name, res.StatusCode, tc.status)
		}
		if tc.status == 415 && (res.GetHeader("Accept") == nil || !strings.Contains(res.GetHeader("Accept").Value(), "application/dtmf-relay")) {
			t.Errorf("415 without Accept:\n%s", res)
		}
		if tc.status != 200 {
			continue
		}
		p.send(from, msg) // retransmission: answered again, no second digit
		p.readResponse()
		select {
		case d := <-call.Digits():
			if d.Digit != tc.digit || d.Duration != tc.dur {
				t.Errorf("INFO %s: digit %q %s, want %q %s", tc.name, d.Digit, d.Duration, tc.digit, tc.dur)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("INFO %s: no digit", tc.name)
		}
	}
	select {
	case d := <-call.Digits():
		t.Errorf("unexpected digit %+v", d)
	default:
	}

	// Our BYE.
	done := make(chan error, 1)
	go func() { done <- call.Hangup(context.Background()) }()
	bye, byeFrom := p.readRequest(sip.BYE)
	if bye.CSeq().SeqNo <= inv.CSeq().SeqNo {
		t.Errorf("BYE CSeq %d not above INVITE %d", bye.CSeq().SeqNo, inv.CSeq().SeqNo)
	}
	if tag, _ := bye.To().Params.Get("tag"); tag != "peer1" || bye.CallID().Value() != inv.CallID().Value() {
		t.Errorf("BYE not in dialog:\n%s", bye)
	}
	p.reply(byeFrom, bye, 200, "OK", "", "")
	if err := <-done; err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	if call.HangupBy() != "local" {
		t.Errorf("HangupBy = %q", call.HangupBy())
	}
}

func TestOutOfDialogRequests(t *testing.T) {
	p := newPeer(t)
	ua := newTestUA(t, Config{})
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(ua.LocalAddr().Port())}
	port := p.trunk().Port
	req := func(method, toTag string, n int) string {
		tt := ""
		if toTag != "" {
			tt = ";tag=" + toTag
		}
		return fmt.Sprintf("%s sip:voiceotp@%s SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKood%d\nFrom: <sip:peer@127.0.0.1>;tag=p%d\nTo: <sip:voiceotp@127.0.0.1>%s\nCall-ID: ood-%d\nCSeq: 1 %s\nMax-Forwards: 70\nContact: <sip:peer@127.0.0.1:%d>\nContent-Length: 0\n\n",
			method, ua.LocalAddr(), port, n, n, tt, n, method, port)
	}
	tests := []struct {
		name   string
		msg    string
		status int
	}{
		{"OPTIONS", req("OPTIONS", "", 1), 200},
		{"BYE unknown dialog", req("BYE", "x", 2), 481},
		{"INFO unknown dialog", req("INFO", "x", 3), 481},
		{"CANCEL unknown", req("CANCEL", "", 4), 481},
		{"incoming INVITE", req("INVITE", "", 5), 403},
		{"re-INVITE unknown dialog", req("INVITE", "x", 6), 481},
		{"MESSAGE", req("MESSAGE", "", 7), 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.send(to, tt.msg)
			res := p.readResponse()
			if res.StatusCode != tt.status {
				t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, tt.status)
			}
			if tt.name == "OPTIONS" && (res.GetHeader("Allow") == nil || !strings.Contains(res.GetHeader("Allow").Value(), "INVITE")) {
				t.Errorf("OPTIONS response lacks Allow:\n%s", res)
			}
		})
	}
}

// TestGarbageInput sends malformed datagrams; the UA must survive and still
// answer OPTIONS.
func TestGarbageInput(t *testing.T) {
	p := newPeer(t)
	ua := newTestUA(t, Config{})
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(ua.LocalAddr().Port())}
	for _, g := range []string{
		"", "\r\n\r\n", "garbage", "SIP/2.0 200 OK\r\n\r\n", "INVITE sip:x SIP/2.0\r\n\r\n",
		"BYE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4\r\nCSeq: x\r\n\r\n",
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKnope\r\nCSeq: 1 INVITE\r\nCall-ID: c\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nContent-Length: 0\r\n\r\n",
		strings.Repeat("A", 4000),
	} {
		p.conn.WriteToUDP([]byte(g), to)
	}
	p.send(to, fmt.Sprintf("OPTIONS sip:voiceotp@%s SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKalive\nFrom: <sip:peer@127.0.0.1>;tag=p\nTo: <sip:voiceotp@127.0.0.1>\nCall-ID: alive\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n", ua.LocalAddr(), p.trunk().Port))
	for {
		res := p.readResponse()
		if res.CallID() != nil && res.CallID().Value() == "alive" {
			if res.StatusCode != 200 {
				t.Fatalf("OPTIONS got %d", res.StatusCode)
			}
			return
		}
	}
}

// TestSilentTrunk: a trunk that never answers anything. Ring timeout must
// not hang: no provisional means no CANCEL may be sent (RFC 3261 §9.1), so
// Dial gives up after CancelWait and reports the trunk unreachable.
func TestSilentTrunk(t *testing.T) {
	p := newPeer(t)
	ua := newTestUA(t, Config{CancelWait: 300 * time.Millisecond})
	start := time.Now()
	_, err := ua.Dial(context.Background(), DialRequest{Trunk: p.trunk(), Number: "+15551234567", RingTimeout: 500 * time.Millisecond})
	var se *Error
	if !errors.Is(err, ErrUnreachable) || !errors.As(err, &se) || se.Status != 0 {
		t.Fatalf("err = %v, want ErrUnreachable without status", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Dial took %v", d)
	}
	if strings.Contains(err.Error(), "CANCEL") {
		t.Logf("err: %v", err)
	}
	// Nothing but INVITE (and its retransmissions) reached the trunk.
	p.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 65535)
	for {
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			break
		}
		if !strings.HasPrefix(string(buf[:n]), "INVITE ") {
			t.Errorf("unexpected message to silent trunk:\n%s", buf[:n])
		}
	}
}

// TestLateAnswerAfterAbandon: the trunk stays silent until Dial gave up, then
// answers; the UA must ACK and BYE that late 200.
func TestLateAnswerAfterAbandon(t *testing.T) {
	p := newPeer(t)
	ua := newTestUA(t, Config{CancelWait: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := ua.Dial(ctx, DialRequest{Trunk: p.trunk(), Number: "+15551234567", RingTimeout: 5 * time.Second})
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrCanceled wrapping DeadlineExceeded", err)
	}
	inv, from := p.readRequest(sip.INVITE)
	body := "v=0\r\n"
	ok := fmt.Sprintf("SIP/2.0 200 OK\r\nVia: %s\r\nFrom: %s\r\nTo: %s;tag=late\r\nCall-ID: %s\r\nCSeq: %s\r\nContact: <sip:late@127.0.0.1:%d>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		inv.Via().Value(), inv.From().Value(), inv.To().Value(), inv.CallID().Value(), inv.CSeq().Value(), p.trunk().Port, len(body), body)
	if _, err := p.conn.WriteToUDP([]byte(ok), from); err != nil {
		t.Fatal(err)
	}
	ack, _ := p.readRequest(sip.ACK)
	bye, byeFrom := p.readRequest(sip.BYE)
	if ack.CallID().Value() != inv.CallID().Value() || bye.CallID().Value() != inv.CallID().Value() {
		t.Fatal("ACK/BYE for another call")
	}
	if tag, _ := bye.To().Params.Get("tag"); tag != "late" || bye.Recipient.User != "late" {
		t.Errorf("BYE not in the late dialog:\n%s", bye)
	}
	p.reply(byeFrom, bye, 200, "OK", "", "")
}

// TestTwoUAsIndependent runs two UAs in one process; each serves its own
// socket and its own dialogs.
func TestTwoUAsIndependent(t *testing.T) {
	a := newTestUA(t, Config{FromUser: "a"})
	b := newTestUA(t, Config{FromUser: "b"})
	if a.LocalAddr() == b.LocalAddr() {
		t.Fatal("same address")
	}
	pa, pb := newPeer(t), newPeer(t)
	for _, c := range []struct {
		ua *UA
		p  *peer
		u  string
	}{{a, pa, "a"}, {b, pb, "b"}} {
		go c.ua.Dial(context.Background(), DialRequest{Trunk: c.p.trunk(), Number: "+15551234567", RingTimeout: 200 * time.Millisecond})
		inv, from := c.p.readRequest(sip.INVITE)
		if inv.From().Address.User != c.u || from.Port != int(c.ua.LocalAddr().Port()) {
			t.Errorf("UA %s: From user %q from port %d", c.u, inv.From().Address.User, from.Port)
		}
		c.p.reply(from, inv, 486, "Busy Here", "t", "")
	}
	a.Close()
	// b still works after a is closed.
	p := newPeer(t)
	go func() {
		inv, from := p.readRequest(sip.INVITE)
		p.reply(from, inv, 603, "Decline", "t", "")
	}()
	_, err := b.Dial(context.Background(), DialRequest{Trunk: p.trunk(), Number: "+15551234567", RingTimeout: time.Second})
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("b.Dial after a.Close: %v", err)
	}
}

// TestCloseDuringDial: Close ends a pending Dial promptly with ErrClosed.
func TestCloseDuringDial(t *testing.T) {
	p := newPeer(t)
	ua := newTestUA(t, Config{})
	errc := make(chan error, 1)
	ringing := make(chan struct{})
	go func() {
		_, err := ua.Dial(context.Background(), DialRequest{Trunk: p.trunk(), Number: "+15551234567", RingTimeout: 10 * time.Second,
			OnProgress: func(Progress) { close(ringing) }})
		errc <- err
	}()
	inv, from := p.readRequest(sip.INVITE)
	p.reply(from, inv, 180, "Ringing", "t", "")
	<-ringing
	ua.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Dial did not return after Close")
	}
}
