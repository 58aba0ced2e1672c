package sip

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"
)

const testOffer = "v=0\r\no=voiceotp 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() && os.Getenv("SIP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

func newTestUA(t *testing.T, cfg Config) *UA {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.CancelWait == 0 {
		cfg.CancelWait = 2 * time.Second
	}
	ua, err := NewUA(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	return ua
}

func dialReq(p *sippPeer) DialRequest {
	return DialRequest{Trunk: p.Trunk, Number: "+15551234567", Offer: []byte(testOffer), RingTimeout: 3 * time.Second}
}

func TestDialAnswerThenHangup(t *testing.T) {
	p := startSIPp(t, "answer.xml")
	ua := newTestUA(t, Config{})
	var got []int
	req := dialReq(p)
	req.OnProgress = func(pr Progress) { got = append(got, pr.Status) }
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	call, err := ua.Dial(ctx, req)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if call.Status() != 200 || !bytes.Contains(call.AnswerSDP(), []byte("m=audio")) {
		t.Errorf("status %d, answer %q", call.Status(), call.AnswerSDP())
	}
	if call.CallID() == "" || call.HangupBy() != "" {
		t.Errorf("call id %q, hangup by %q", call.CallID(), call.HangupBy())
	}
	if len(got) != 2 || got[0] != 100 || got[1] != 180 {
		t.Errorf("progress %v, want [100 180]", got)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	select {
	case <-call.Done():
	default:
		t.Error("Done not closed after Hangup")
	}
	if call.HangupBy() != "local" {
		t.Errorf("HangupBy %q, want local", call.HangupBy())
	}
	if err := call.Hangup(ctx); err != nil {
		t.Errorf("second Hangup: %v", err)
	}
	p.wait()
}

func TestDialBusy(t *testing.T) {
	p := startSIPp(t, "busy.xml")
	ua := newTestUA(t, Config{})
	_, err := ua.Dial(context.Background(), dialReq(p))
	var se *Error
	if !errors.Is(err, ErrBusy) || !errors.As(err, &se) || se.Status != 486 || se.Canceled {
		t.Fatalf("err = %v, want ErrBusy with status 486", err)
	}
	if got, want := err.Error(), "sip: busy (486 Busy Here)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	p.wait()
}

func TestDialRingTimeoutCancels(t *testing.T) {
	p := startSIPp(t, "ring_forever.xml")
	ua := newTestUA(t, Config{})
	req := dialReq(p)
	req.RingTimeout = time.Second
	start := time.Now()
	_, err := ua.Dial(context.Background(), req)
	var se *Error
	if !errors.Is(err, ErrNoAnswer) || !errors.As(err, &se) || se.Status != 487 || !se.Canceled {
		t.Fatalf("err = %v, want ErrNoAnswer, 487, cancelled", err)
	}
	if errors.Is(err, ErrCanceled) {
		t.Error("ring timeout must not report ErrCanceled")
	}
	if d := time.Since(start); d < time.Second || d > 4*time.Second {
		t.Errorf("Dial took %v", d)
	}
	p.wait()
}

func TestDialContextCancelled(t *testing.T) {
	p := startSIPp(t, "ring_forever.xml")
	ua := newTestUA(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	req := dialReq(p)
	req.OnProgress = func(pr Progress) {
		if pr.Status == 180 {
			cancel()
		}
	}
	_, err := ua.Dial(ctx, req)
	var se *Error
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) || !errors.As(err, &se) || !se.Canceled || se.Status != 487 {
		t.Fatalf("err = %v, want ErrCanceled wrapping context.Canceled with 487", err)
	}
	p.wait()
}

func TestDialEarlyMedia(t *testing.T) {
	p := startSIPp(t, "early_media.xml")
	ua := newTestUA(t, Config{})
	var early []byte
	req := dialReq(p)
	req.OnProgress = func(pr Progress) {
		if pr.Status == 183 {
			early = pr.SDP
		}
	}
	call, err := ua.Dial(context.Background(), req)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if !bytes.Contains(call.EarlySDP(), []byte("s=early")) || !bytes.Equal(early, call.EarlySDP()) {
		t.Errorf("EarlySDP %q, progress SDP %q", call.EarlySDP(), early)
	}
	if !bytes.Contains(call.AnswerSDP(), []byte("s=answer")) {
		t.Errorf("AnswerSDP %q", call.AnswerSDP())
	}
	if err := call.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.wait()
}

func TestDialRemoteBye(t *testing.T) {
	p := startSIPp(t, "remote_bye.xml")
	ua := newTestUA(t, Config{})
	call, err := ua.Dial(context.Background(), dialReq(p))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	select {
	case <-call.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after remote BYE")
	}
	if call.HangupBy() != "remote" {
		t.Errorf("HangupBy %q, want remote", call.HangupBy())
	}
	if err := call.Hangup(context.Background()); err != nil {
		t.Errorf("Hangup after remote BYE: %v", err)
	}
	p.wait()
}

func TestDialManyProvisionals(t *testing.T) {
	p := startSIPp(t, "many_ringing.xml")
	ua := newTestUA(t, Config{})
	n := 0
	req := dialReq(p)
	req.OnProgress = func(Progress) { n++ }
	call, err := ua.Dial(context.Background(), req)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if n != 16 {
		t.Errorf("got %d provisionals, want 16 (100 + 15x180)", n)
	}
	if err := call.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.wait()
}

func TestDialDigestAuth(t *testing.T) {
	p := startSIPp(t, "auth.xml")
	ua := newTestUA(t, Config{Username: "alice", Password: "s3cret"})
	call, err := ua.Dial(context.Background(), dialReq(p))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if err := call.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.wait()
}

func TestDialAuthWithoutCredentials(t *testing.T) {
	p := startSIPp(t, "auth.xml")
	ua := newTestUA(t, Config{})
	_, err := ua.Dial(context.Background(), dialReq(p))
	var se *Error
	if !errors.Is(err, ErrAuth) || !errors.As(err, &se) || se.Status != 401 {
		t.Fatalf("err = %v, want ErrAuth with 401", err)
	}
	// The scenario waits for a retry that never comes; cleanup stops SIPp.
}

func TestDialWrongPassword(t *testing.T) {
	p := startSIPp(t, "auth.xml")
	ua := newTestUA(t, Config{Username: "alice", Password: "wrong"})
	_, err := ua.Dial(context.Background(), dialReq(p))
	var se *Error
	if !errors.Is(err, ErrRejected) || !errors.As(err, &se) || se.Status != 403 {
		t.Fatalf("err = %v, want ErrRejected with 403 from the verifying peer", err)
	}
	p.wait()
}

func TestDialOKCrossesCancel(t *testing.T) {
	p := startSIPp(t, "cancel_crossing.xml")
	ua := newTestUA(t, Config{})
	req := dialReq(p)
	req.RingTimeout = time.Second
	_, err := ua.Dial(context.Background(), req)
	var se *Error
	if !errors.Is(err, ErrNoAnswer) || !errors.As(err, &se) || !se.Canceled {
		t.Fatalf("err = %v, want ErrNoAnswer, cancelled", err)
	}
	p.wait() // SIPp saw our ACK and BYE
}
