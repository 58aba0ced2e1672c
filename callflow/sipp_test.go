package callflow

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/media"
	"github.com/voiceotp/voiceotp/prompts"
	"github.com/voiceotp/voiceotp/sip"
)

// The integration tests place real calls from a real UA over UDP on
// 127.0.0.1 to SIPp running a committed scenario from testdata/. Each test
// starts its own SIPp, so they run in parallel.

const testCode = "482913"

// syncBuffer is a log sink shared by the UA and the runner.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testCatalog is loaded once: it is immutable and safe to share.
var testCatalog = sync.OnceValues(func() (*prompts.Catalog, error) { return prompts.Load("en") })

func catalog(t *testing.T) *prompts.Catalog {
	t.Helper()
	c, err := testCatalog()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fastConfig keeps each call to a few seconds.
func fastConfig(ch Challenge) Config {
	return Config{
		Challenge:       ch,
		Tries:           2,
		KeyTimeout:      800 * time.Millisecond,
		RingTimeout:     5 * time.Second,
		MaxCallDuration: 40 * time.Second,
		RepeatWait:      500 * time.Millisecond,
		MaxRepeats:      1,
		RTPTimeout:      -1, // SIPp sends RTP only when it presses a key
		MediaIP:         netip.MustParseAddr("127.0.0.1"),
		Ports:           media.PortRange{Min: 20000, Max: 29999},
	}
}

type placed struct {
	res  *Result
	logs string
}

// callSIPp dials the SIPp peer with a fresh UA and runner.
func callSIPp(t *testing.T, peer *sippPeer, cfg Config) placed {
	t.Helper()
	return callSIPpFrom(t, peer, cfg, "")
}

// callSIPpFrom is callSIPp presenting callerID (empty: the UA's From user).
func callSIPpFrom(t *testing.T, peer *sippPeer, cfg Config, callerID string) placed {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ua, err := sip.NewUA(sip.Config{ListenAddr: "127.0.0.1:0", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	r, err := New(ua, catalog(t), cfg, WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	trunk, err := sip.ParseTrunk("sip:127.0.0.1:" + strconv.Itoa(peer.Port))
	if err != nil {
		t.Fatal(err)
	}
	res := r.Run(ctx, Request{Trunk: trunk, Number: "+15551234567", CallerID: callerID, Code: testCode}, nil)
	return placed{res: res, logs: logs.String()}
}

func eventTypes(res *Result) []EventType {
	var ts []EventType
	for _, e := range res.Events {
		ts = append(ts, e.Type)
	}
	return ts
}

func findEvent(res *Result, typ EventType) (Event, bool) {
	for _, e := range res.Events {
		if e.Type == typ {
			return e, true
		}
	}
	return Event{}, false
}

func countEvents(res *Result, typ EventType) int {
	n := 0
	for _, e := range res.Events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// assertNoCode fails if the code appears in the logs or the serialised result.
func assertNoCode(t *testing.T, p placed) {
	t.Helper()
	js, err := json.Marshal(p.res)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{"logs": p.logs, "result": string(js)} {
		if strings.Contains(s, testCode) {
			t.Errorf("the code appears in the %s", name)
		}
	}
}

func assertOutcome(t *testing.T, res *Result, want Outcome) {
	t.Helper()
	if res.Outcome != want {
		js, _ := json.MarshalIndent(res, "", "  ")
		t.Fatalf("outcome = %s, want %s\n%s", res.Outcome, want, js)
	}
}

// (a) The callee answers and presses the challenge digit over RFC 4733.
func TestSIPpAnswerAndPress(t *testing.T) {
	t.Parallel()
	dtmf, err := os.ReadFile("/usr/share/sip-tester/dtmf_2833_5.pcap")
	if err != nil {
		dtmf = dtmfPCAP('5', 101)
	}
	peer := startSIPp(t, "answer_dtmf.xml", dtmf, nil)
	p := callSIPp(t, peer, fastConfig(Challenge{Mode: ChallengeFixed, Digit: '5'}))
	peer.wait(t)

	res := p.res
	assertOutcome(t, res, Delivered)
	if res.SIPStatus != 200 || res.HangupBy != ByLocal || res.HangupCause != CauseCompleted {
		t.Errorf("sip %d hangup %s/%s, want 200 local/completed", res.SIPStatus, res.HangupBy, res.HangupCause)
	}
	if !res.ChallengeDigitOK || res.ChallengeDigit != "5" {
		t.Errorf("challenge digit %q ok=%v", res.ChallengeDigit, res.ChallengeDigitOK)
	}
	if res.CodePlays != 2 {
		t.Errorf("code plays = %d, want 2", res.CodePlays)
	}
	want := []EventType{EventDialing, EventProvisional, EventAnswered, EventChallenge, EventDigit,
		EventGatePassed, EventCodePlayed, EventCodePlayed, EventHangup}
	if got := eventTypes(res); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if e, _ := findEvent(res, EventProvisional); e.SIPStatus != 180 {
		t.Errorf("provisional = %d, want 180", e.SIPStatus)
	}
	for _, ts := range []time.Time{res.DialedAt, res.RingingAt, res.AnsweredAt, res.GatePassedAt, res.EndedAt} {
		if ts.IsZero() {
			t.Errorf("a timestamp is missing: %+v", res)
		}
	}
	if !(res.DialedAt.Before(res.RingingAt) && res.RingingAt.Before(res.AnsweredAt) &&
		res.AnsweredAt.Before(res.GatePassedAt) && res.GatePassedAt.Before(res.EndedAt)) {
		t.Errorf("timestamps out of order: %+v", res)
	}
	if res.Media == nil || res.Media.Codec != "PCMU" || res.Media.PacketsSent == 0 || res.Media.PacketsRecv == 0 {
		t.Errorf("media report = %+v", res.Media)
	}
	assertNoCode(t, p)
}

// (b) The callee answers and never presses: no code is ever sent.
func TestSIPpNoKey(t *testing.T) {
	t.Parallel()
	phone := newPhoneMedia(t, 101, nil)
	peer := startSIPp(t, "answer_silent.xml", nil, map[string]string{"count_port": strconv.Itoa(phone.port())})
	cfg := fastConfig(Challenge{Mode: ChallengeFixed, Digit: '7'})
	p := callSIPp(t, peer, cfg)
	peer.wait(t)

	res := p.res
	assertOutcome(t, res, NoInput)
	if res.CodePlays != 0 || res.ChallengeDigitOK || !res.GatePassedAt.IsZero() {
		t.Errorf("code plays %d, challenge ok %v, gate %v", res.CodePlays, res.ChallengeDigitOK, res.GatePassedAt)
	}
	if n := countEvents(res, EventChallenge); n != cfg.Tries {
		t.Errorf("challenge played %d times, want %d", n, cfg.Tries)
	}
	if res.HangupBy != ByLocal || res.HangupCause != CauseNoInput {
		t.Errorf("hangup %s/%s", res.HangupBy, res.HangupCause)
	}

	// Every frame the phone heard belongs to the challenge, the no-key
	// prompt, goodbye, or silence: nothing of the code.
	cat := catalog(t)
	allowed := map[string]bool{string(cat.SilenceFrame(prompts.ULaw)): true}
	for _, id := range []prompts.ID{prompts.Press, prompts.DigitID('7'), prompts.NoKey, prompts.Goodbye} {
		for _, f := range cat.Frames(id, prompts.ULaw) {
			allowed[string(f)] = true
		}
	}
	packets, _ := phone.snapshot()
	if len(packets) == 0 {
		t.Fatal("the phone heard nothing")
	}
	for i, h := range packets {
		if h.pt != 0 {
			t.Fatalf("packet %d has payload type %d, want 0 (PCMU)", i, h.pt)
		}
		if !allowed[string(h.payload)] {
			t.Fatalf("packet %d of %d is not challenge audio", i, len(packets))
		}
	}
	assertNoCode(t, p)
}

// (c) 486 Busy Here.
func TestSIPpBusy(t *testing.T) {
	t.Parallel()
	peer := startSIPp(t, "busy.xml", nil, nil)
	p := callSIPp(t, peer, fastConfig(Challenge{}))
	peer.wait(t)
	assertOutcome(t, p.res, Busy)
	if p.res.SIPStatus != 486 || p.res.HangupBy != ByRemote {
		t.Errorf("sip %d by %s, want 486 by remote", p.res.SIPStatus, p.res.HangupBy)
	}
	if p.res.Media != nil || !p.res.AnsweredAt.IsZero() {
		t.Error("a busy call has no media and no answer time")
	}
}

// The request's caller ID is the From user and P-Asserted-Identity of the
// INVITE SIPp receives (the scenario fails otherwise).
func TestSIPpCallerID(t *testing.T) {
	t.Parallel()
	peer := startSIPp(t, "caller_id_busy.xml", nil, nil)
	p := callSIPpFrom(t, peer, fastConfig(Challenge{}), "+15557654321")
	peer.wait(t)
	assertOutcome(t, p.res, Busy)
}

// (d) Rings forever: CANCEL at the ring timeout, 487, no_answer.
func TestSIPpRingTimeout(t *testing.T) {
	t.Parallel()
	peer := startSIPp(t, "ring_forever.xml", nil, nil)
	cfg := fastConfig(Challenge{})
	cfg.RingTimeout = time.Second
	start := time.Now()
	p := callSIPp(t, peer, cfg)
	peer.wait(t) // SIPp saw CANCEL and the ACK of its 487
	assertOutcome(t, p.res, NoAnswer)
	if p.res.HangupBy != ByLocal || p.res.HangupCause != CauseRingTimeout {
		t.Errorf("hangup %s/%s, want local/ring_timeout", p.res.HangupBy, p.res.HangupCause)
	}
	if p.res.SIPStatus != 487 {
		t.Errorf("sip status %d, want 487", p.res.SIPStatus)
	}
	if p.res.RingingAt.IsZero() {
		t.Error("ringing time missing")
	}
	// Bounded: the ring timeout plus the CANCEL transaction, not SIPp's timeout.
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the call took %s", d)
	}
}

// (e) 183 with SDP, then 200: nothing is sent before the 200 and our ACK.
func TestSIPpEarlyMedia(t *testing.T) {
	t.Parallel()
	phone := newPhoneMedia(t, 101, pressOnPacket(10, '3'))
	peer := startSIPp(t, "early_media.xml", nil, map[string]string{"count_port": strconv.Itoa(phone.port())})
	p := callSIPp(t, peer, fastConfig(Challenge{Mode: ChallengeFixed, Digit: '3'}))
	peer.wait(t)

	res := p.res
	assertOutcome(t, res, Delivered)
	e, ok := findEvent(res, EventProvisional)
	if !ok || e.SIPStatus != 183 {
		t.Fatalf("first provisional = %+v, want 183", e)
	}
	packets, pressed := phone.snapshot()
	if len(packets) == 0 {
		t.Fatal("the phone heard nothing")
	}
	if packets[0].at.Before(res.AnsweredAt) {
		t.Errorf("first RTP packet at %s, before the answer at %s", packets[0].at, res.AnsweredAt)
	}
	// No frame of "your code is" before the key press.
	codeIs := map[string]bool{}
	for _, f := range catalog(t).Frames(prompts.CodeIs, prompts.ULaw) {
		codeIs[string(f)] = true
	}
	seen := false
	for _, h := range packets {
		if codeIs[string(h.payload)] {
			seen = true
			if h.at.Before(pressed) {
				t.Fatal("code audio was heard before the key was pressed")
			}
		}
	}
	if !seen {
		t.Error("the code was never heard")
	}
	assertNoCode(t, p)
}

// (f) A-law only, telephone-event on payload type 96 (ours is 101).
func TestSIPpALawPT96(t *testing.T) {
	t.Parallel()
	peer := startSIPp(t, "alaw_pt96.xml", dtmfPCAP('8', 96), nil)
	p := callSIPp(t, peer, fastConfig(Challenge{Mode: ChallengeFixed, Digit: '8'}))
	peer.wait(t)
	assertOutcome(t, p.res, Delivered)
	if m := p.res.Media; m == nil || m.Codec != "PCMA" || m.DTMFPayloadType != 96 {
		t.Errorf("media = %+v, want PCMA with telephone-event 96", m)
	}
}

// (g) The callee hangs up while the code is being read: abandoned.
func TestSIPpHangupDuringCode(t *testing.T) {
	t.Parallel()
	peer := startSIPp(t, "hangup_during_code.xml", dtmfPCAP('2', 101), nil)
	p := callSIPp(t, peer, fastConfig(Challenge{Mode: ChallengeFixed, Digit: '2'}))
	peer.wait(t)
	res := p.res
	assertOutcome(t, res, Abandoned)
	if !res.ChallengeDigitOK || res.CodePlays != 0 {
		t.Errorf("challenge ok %v, code plays %d", res.ChallengeDigitOK, res.CodePlays)
	}
	if res.HangupBy != ByRemote || res.HangupCause != CauseRemoteBye {
		t.Errorf("hangup %s/%s, want remote/remote_bye", res.HangupBy, res.HangupCause)
	}
}
