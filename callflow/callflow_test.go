package callflow

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zaf/g711"

	"github.com/voiceotp/voiceotp/prompts"
	"github.com/voiceotp/voiceotp/sip"
)

// These tests run the script against a fake dialer (no SIP) and a real RTP
// phone endpoint on 127.0.0.1, to walk the state machine's branches
// quickly. The SIPp tests in sipp_test.go prove the same against a real peer.

type fakeCall struct {
	sdp   []byte
	trunk *sip.TrunkConfig
	info  chan sip.InfoDigit

	mu      sync.Mutex // guards by, hangups and done closing
	done    chan struct{}
	by      string
	hangups int
}

func (c *fakeCall) CallID() string        { return "fake-call-id" }
func (c *fakeCall) AnswerSDP() []byte     { return c.sdp }
func (c *fakeCall) Done() <-chan struct{} { return c.done }

func (c *fakeCall) Trunk() *sip.TrunkConfig { return c.trunk }

func (c *fakeCall) Digits() <-chan sip.InfoDigit { return c.info }

func (c *fakeCall) HangupBy() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.by
}

func (c *fakeCall) Hangup(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hangups++
	if c.by == "" {
		c.by = ByLocal
		close(c.done)
	}
	return nil
}

// remoteBye plays the callee hanging up.
func (c *fakeCall) remoteBye() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.by == "" {
		c.by = ByRemote
		close(c.done)
	}
}

// fakeDialer records dials and answers with sdp, or fails with err.
type fakeDialer struct {
	sdp      []byte
	trunk    *sip.TrunkConfig
	info     chan sip.InfoDigit
	err      error
	progress []sip.Progress

	mu       sync.Mutex // guards dials, callerID, offer and call
	dials    int
	callerID string // of the last dial
	offer    []byte // the offer made for trunk
	call     *fakeCall
	ready    chan struct{} // closed when call is set
}

func newFakeDialer(sdp []byte, err error) *fakeDialer {
	return &fakeDialer{sdp: sdp, err: err, ready: make(chan struct{})}
}

func (d *fakeDialer) dial(ctx context.Context, req sip.DialRequest) (sipCall, error) {
	d.mu.Lock()
	d.dials++
	d.callerID = req.CallerID
	d.mu.Unlock()
	for _, p := range d.progress {
		req.OnProgress(p)
	}
	if d.trunk != nil && req.OfferFor != nil {
		d.mu.Lock()
		d.offer = req.OfferFor(d.trunk)
		d.mu.Unlock()
	}
	if d.err != nil {
		return nil, d.err
	}
	c := &fakeCall{sdp: d.sdp, trunk: d.trunk, info: d.info, done: make(chan struct{})}
	d.mu.Lock()
	d.call = c
	d.mu.Unlock()
	close(d.ready)
	return c, nil
}

func (d *fakeDialer) dialCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials
}

func (d *fakeDialer) answered() *fakeCall {
	<-d.ready
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.call
}

func answerSDP(port int, formats string) []byte {
	return fmt.Appendf(nil, "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP %s\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"+
		"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n", port, formats)
}

func unitRunner(t *testing.T, d dialer, cfg Config) *Runner {
	t.Helper()
	r, err := newRunner(d, catalog(t), cfg, netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var unitTrunk = sip.Trunk{Host: "127.0.0.1", Port: 5060}

func runUnit(t *testing.T, r *Runner, ctx context.Context) *Result {
	t.Helper()
	return r.Run(ctx, Request{Trunk: unitTrunk, Number: "+15551234567", Code: testCode}, nil)
}

func TestWrongKeyReprompts(t *testing.T) {
	t.Parallel()
	phone := newPhoneMedia(t, 101, func(n int, _ []byte) (byte, bool) {
		switch n {
		case 5:
			return '9', true // wrong
		case 60:
			return '4', true // right, during the second try
		}
		return 0, false
	})
	d := newFakeDialer(answerSDP(phone.port(), "0 101"), nil)
	cfg := fastConfig(Challenge{Mode: ChallengeFixed, Digit: '4'})
	cfg.Tries = 3
	cfg.MaxRepeats = -1
	res := runUnit(t, unitRunner(t, d, cfg), context.Background())
	assertOutcome(t, res, Delivered)
	var digits []string
	for _, e := range res.Events {
		if e.Type == EventDigit {
			digits = append(digits, fmt.Sprintf("%s:%v", e.Digit, *e.Accepted))
		}
	}
	if fmt.Sprint(digits) != "[9:false 4:true]" {
		t.Errorf("digits = %v, want 9 rejected then 4 accepted", digits)
	}
	if n := countEvents(res, EventChallenge); n != 2 {
		t.Errorf("challenge played %d times, want 2", n)
	}
	if d.answered().hangups != 1 {
		t.Errorf("BYE sent %d times, want 1", d.answered().hangups)
	}
}

func TestAnyKeyOpensTheGate(t *testing.T) {
	t.Parallel()
	phone := newPhoneMedia(t, 101, pressOnPacket(5, '9'))
	d := newFakeDialer(answerSDP(phone.port(), "0 101"), nil)
	cfg := fastConfig(Challenge{Mode: ChallengeAny})
	cfg.MaxRepeats = -1
	cfg.CodePlays = 1
	res := runUnit(t, unitRunner(t, d, cfg), context.Background())
	assertOutcome(t, res, Delivered)
	if res.ChallengeDigit != "" || !res.ChallengeDigitOK || res.CodePlays != 1 {
		t.Errorf("challenge %q ok=%v plays=%d", res.ChallengeDigit, res.ChallengeDigitOK, res.CodePlays)
	}
}

func TestRandomChallengeDigit(t *testing.T) {
	t.Parallel()
	d := newFakeDialer(nil, nil)
	r := unitRunner(t, d, Config{})
	seen := map[byte]bool{}
	for i := 0; i < 500; i++ {
		c := r.digit()
		if c < '0' || c > '9' {
			t.Fatalf("digit %q", c)
		}
		seen[c] = true
	}
	if len(seen) != 10 {
		t.Errorf("500 random digits covered only %d of 10", len(seen))
	}
}

// The phone presses 1 when it hears the first frame of "press 1 to hear it again".
func TestRepeatOnRequest(t *testing.T) {
	t.Parallel()
	cat := catalog(t)
	first := string(cat.Frames(prompts.Repeat, prompts.ULaw)[0])
	phone := newPhoneMedia(t, 101, func(n int, payload []byte) (byte, bool) {
		if n == 5 {
			return '6', true
		}
		return '1', string(payload) == first
	})
	d := newFakeDialer(answerSDP(phone.port(), "0 101"), nil)
	cfg := fastConfig(Challenge{Mode: ChallengeFixed, Digit: '6'})
	cfg.CodePlays = 1
	cfg.MaxRepeats = 1
	res := runUnit(t, unitRunner(t, d, cfg), context.Background())
	assertOutcome(t, res, Delivered)
	if res.CodePlays != 2 {
		t.Errorf("code plays = %d, want 2 (1 + 1 repeat)", res.CodePlays)
	}
	if n := countEvents(res, EventRepeatAsked); n != 1 {
		t.Errorf("repeat_asked %d times, want 1", n)
	}
}

func TestRemoteHangupBeforeCode(t *testing.T) {
	t.Parallel()
	d := newFakeDialer(nil, nil)
	phone := newPhoneMedia(t, 101, func(n int, _ []byte) (byte, bool) {
		if n == 10 {
			d.answered().remoteBye()
		}
		return 0, false
	})
	d.sdp = answerSDP(phone.port(), "0 101") // read by dial, on this goroutine
	res := runUnit(t, unitRunner(t, d, fastConfig(Challenge{})), context.Background())
	assertOutcome(t, res, Abandoned)
	if res.HangupBy != ByRemote || d.answered().hangups != 0 {
		t.Errorf("hangup by %s, our BYEs %d; want remote and none", res.HangupBy, d.answered().hangups)
	}
}

func TestCancelAnsweredCall(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	phone := newPhoneMedia(t, 101, func(n int, _ []byte) (byte, bool) {
		if n == 10 {
			cancel()
		}
		return 0, false
	})
	d := newFakeDialer(answerSDP(phone.port(), "0 101"), nil)
	res := runUnit(t, unitRunner(t, d, fastConfig(Challenge{})), ctx)
	assertOutcome(t, res, Canceled)
	if res.HangupBy != ByLocal || d.answered().hangups != 1 {
		t.Errorf("hangup by %s, our BYEs %d; want local and 1", res.HangupBy, d.answered().hangups)
	}
}

func TestMaxCallDuration(t *testing.T) {
	t.Parallel()
	phone := newPhoneMedia(t, 101, nil)
	d := newFakeDialer(answerSDP(phone.port(), "0 101"), nil)
	cfg := fastConfig(Challenge{})
	cfg.MaxCallDuration = 300 * time.Millisecond
	res := runUnit(t, unitRunner(t, d, cfg), context.Background())
	assertOutcome(t, res, Failed)
	if res.HangupCause != CauseMaxDuration || d.answered().hangups != 1 {
		t.Errorf("cause %s, BYEs %d", res.HangupCause, d.answered().hangups)
	}
}

func TestRTPInactivity(t *testing.T) {
	t.Parallel()
	phone := newPhoneMedia(t, 101, nil) // hears, never sends
	d := newFakeDialer(answerSDP(phone.port(), "0 101"), nil)
	cfg := fastConfig(Challenge{})
	cfg.RTPTimeout = 400 * time.Millisecond
	res := runUnit(t, unitRunner(t, d, cfg), context.Background())
	assertOutcome(t, res, Failed)
	if res.HangupCause != CauseRTPTimeout {
		t.Errorf("cause %s, want %s", res.HangupCause, CauseRTPTimeout)
	}
}

func TestBadAnswerSDP(t *testing.T) {
	t.Parallel()
	for name, sdp := range map[string][]byte{
		"garbage":   []byte("\x00\xffnot sdp at all"),
		"port zero": answerSDP(0, "0 101"),
		"no codec":  answerSDP(30000, "18"),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			d := newFakeDialer(sdp, nil)
			res := runUnit(t, unitRunner(t, d, fastConfig(Challenge{})), context.Background())
			assertOutcome(t, res, Failed)
			if res.HangupCause != CauseBadSDP || d.answered().hangups != 1 || res.Media != nil {
				t.Errorf("cause %s, BYEs %d, media %v", res.HangupCause, d.answered().hangups, res.Media)
			}
		})
	}
}

func TestDialFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		want   Outcome
		status int
		by     string
		cause  string
	}{
		{"busy", &sip.Error{Status: 486, Reason: "Busy Here", Kind: sip.ErrBusy}, Busy, 486, ByRemote, CauseSIPFinal},
		{"declined", &sip.Error{Status: 603, Reason: "Decline", Kind: sip.ErrRejected}, Rejected, 603, ByRemote, CauseSIPFinal},
		{"not found", &sip.Error{Status: 404, Reason: "Not Found", Kind: sip.ErrInvalidNumber}, InvalidNumber, 404, ByRemote, CauseSIPFinal},
		{"temporarily unavailable", &sip.Error{Status: 480, Kind: sip.ErrNoAnswer}, NoAnswer, 480, ByRemote, CauseSIPFinal},
		{"ring timeout", &sip.Error{Status: 487, Kind: sip.ErrNoAnswer, Canceled: true}, NoAnswer, 487, ByLocal, CauseRingTimeout},
		{"server error", &sip.Error{Status: 503, Kind: sip.ErrUnreachable}, Unreachable, 503, ByRemote, CauseSIPFinal},
		{"timeout", &sip.Error{Kind: sip.ErrUnreachable}, Unreachable, 0, "", CauseSIPFinal},
		{"auth", &sip.Error{Status: 407, Kind: sip.ErrAuth}, Failed, 407, ByRemote, CauseSIPFinal},
		{"canceled while ringing", &sip.Error{Status: 487, Kind: sip.ErrCanceled, Canceled: true}, Canceled, 487, ByLocal, CauseCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newFakeDialer(nil, tt.err)
			res := runUnit(t, unitRunner(t, d, fastConfig(Challenge{})), context.Background())
			if res.Outcome != tt.want || res.SIPStatus != tt.status || res.HangupBy != tt.by || res.HangupCause != tt.cause {
				t.Errorf("got %s %d %q %s, want %s %d %q %s", res.Outcome, res.SIPStatus, res.HangupBy, res.HangupCause,
					tt.want, tt.status, tt.by, tt.cause)
			}
			if e := res.Events[len(res.Events)-1]; e.Type != EventHangup {
				t.Errorf("last event %s, want hangup", e.Type)
			}
		})
	}
}

func TestInvalidInputIsNeverDialled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, number, code string
		want               Outcome
	}{
		{"header injection", "+15551234567\r\nX-Evil: 1", testCode, InvalidNumber},
		{"not e164", "5551234567", testCode, InvalidNumber},
		{"empty", "", testCode, InvalidNumber},
		{"code with letters", "+15551234567", "12a456", Failed},
		{"code too short", "+15551234567", "123", Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newFakeDialer(nil, errors.New("must not dial"))
			res := unitRunner(t, d, Config{}).Run(context.Background(), Request{Trunk: unitTrunk, Number: tt.number, Code: tt.code}, nil)
			if res.Outcome != tt.want || d.dialCount() != 0 {
				t.Errorf("outcome %s, dials %d; want %s and none", res.Outcome, d.dialCount(), tt.want)
			}
		})
	}
}

func TestInvalidCallerIDIsNeverDialled(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"+15557654321\r\nX-Evil: 1", "+1555765432a", "anonymous", "15557654321", "+05557654321"} {
		t.Run(strconv.Quote(id), func(t *testing.T) {
			t.Parallel()
			d := newFakeDialer(nil, errors.New("must not dial"))
			res := unitRunner(t, d, Config{}).Run(context.Background(),
				Request{Trunk: unitTrunk, Number: "+15551234567", CallerID: id, Code: testCode}, nil)
			if res.Outcome != Failed || res.HangupCause != CauseInvalid || d.dialCount() != 0 {
				t.Errorf("outcome %s cause %s, dials %d; want failed, %s and none", res.Outcome, res.HangupCause, d.dialCount(), CauseInvalid)
			}
			if !strings.Contains(res.Error, "caller ID") || strings.ContainsAny(res.Error, "\r\n") {
				t.Errorf("error %q: want one naming the caller ID, without raw control characters", res.Error)
			}
		})
	}
}

func TestCallerIDReachesTheDial(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"+15557654321", ""} {
		t.Run(strconv.Quote(id), func(t *testing.T) {
			t.Parallel()
			d := newFakeDialer(nil, &sip.Error{Status: 486, Reason: "Busy Here", Kind: sip.ErrBusy})
			res := unitRunner(t, d, Config{}).Run(context.Background(),
				Request{Trunk: unitTrunk, Number: "+15551234567", CallerID: id, Code: testCode}, nil)
			d.mu.Lock()
			got := d.callerID
			d.mu.Unlock()
			if res.Outcome != Busy || d.dialCount() != 1 || got != id {
				t.Errorf("outcome %s, dials %d, caller ID %q; want busy, one dial with %q", res.Outcome, d.dialCount(), got, id)
			}
		})
	}
}

func TestProvisionalEvents(t *testing.T) {
	t.Parallel()
	d := newFakeDialer(nil, &sip.Error{Status: 486, Kind: sip.ErrBusy})
	d.progress = []sip.Progress{{Status: 100, Reason: "Trying"}, {Status: 183, Reason: "Session Progress"}, {Status: 180, Reason: "Ringing"}}
	res := runUnit(t, unitRunner(t, d, fastConfig(Challenge{})), context.Background())
	var got []int
	for _, e := range res.Events {
		if e.Type == EventProvisional {
			got = append(got, e.SIPStatus)
		}
	}
	if fmt.Sprint(got) != "[100 183 180]" {
		t.Errorf("provisional events %v", got)
	}
	if res.RingingAt.IsZero() {
		t.Error("ringing_at not set by 183")
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"random", "any", "any_key", "0", "9"} {
		if _, err := ParseChallenge(s); err != nil {
			t.Errorf("ParseChallenge(%q): %v", s, err)
		}
	}
	for _, s := range []string{"10", "x", "#", "any key"} {
		if _, err := ParseChallenge(s); err == nil {
			t.Errorf("ParseChallenge(%q) accepted", s)
		}
	}
	if _, err := newRunner(newFakeDialer(nil, nil), catalog(t), Config{}, netip.IPv4Unspecified()); err == nil {
		t.Error("an unspecified media IP was accepted")
	}
	if _, err := newRunner(newFakeDialer(nil, nil), catalog(t), Config{Tries: 50}, netip.MustParseAddr("127.0.0.1")); err == nil {
		t.Error("50 tries accepted")
	}
}

func TestCanceledBeforeDial(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := newFakeDialer(nil, errors.New("must not dial"))
	res := runUnit(t, unitRunner(t, d, Config{}), ctx)
	if res.Outcome != Canceled || d.dialCount() != 0 {
		t.Errorf("outcome %s, dials %d; want canceled and none", res.Outcome, d.dialCount())
	}
}

// A key press by SIP INFO opens the gate on a trunk in info mode, and the
// same press also signalled over RFC 4733 is not counted twice in auto mode.
func TestDTMFModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mode      string
		rtpPress  bool // the phone presses over RFC 4733
		infoPress bool // and/or by SIP INFO
		want      Outcome
		digits    int // digit events
	}{
		{"info opens the gate", "info", false, true, Delivered, 1},
		{"info mode ignores rfc4733", "info", true, false, NoInput, 0},
		{"rfc4733 mode ignores info", "rfc4733", false, true, NoInput, 0},
		{"auto takes either, once", "auto", true, true, Delivered, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newFakeDialer(nil, nil)
			d.trunk = &sip.TrunkConfig{Name: "carrier-a", DTMFMode: tt.mode}
			d.info = make(chan sip.InfoDigit, 1)
			phone := newPhoneMedia(t, 101, func(n int, _ []byte) (byte, bool) {
				if n == 5 && tt.infoPress {
					d.info <- sip.InfoDigit{Digit: '4', At: time.Now()}
				}
				return '4', n == 5 && tt.rtpPress
			})
			d.sdp = answerSDP(phone.port(), "0 101")
			cfg := fastConfig(Challenge{Mode: ChallengeFixed, Digit: '4'})
			cfg.Tries = 1
			cfg.CodePlays = 1
			cfg.MaxRepeats = -1
			res := runUnit(t, unitRunner(t, d, cfg), context.Background())
			assertOutcome(t, res, tt.want)
			if n := countEvents(res, EventDigit); n != tt.digits {
				t.Errorf("%d digit events, want %d: %+v", n, tt.digits, res.Events)
			}
			if res.Trunk != "carrier-a" {
				t.Errorf("trunk %q", res.Trunk)
			}
			if e, _ := findEvent(res, EventAnswered); e.Trunk != "carrier-a" {
				t.Errorf("answered event names trunk %q", e.Trunk)
			}
		})
	}
}

// A trunk's send_digits go out as RFC 4733 events before the challenge.
func TestSendDigitsAfterAnswer(t *testing.T) {
	t.Parallel()
	phone := newPhoneMedia(t, 101, nil)
	d := newFakeDialer(answerSDP(phone.port(), "0 101"), nil)
	d.trunk = &sip.TrunkConfig{Name: "pbx", SendDigits: "1,2"}
	cfg := fastConfig(Challenge{Mode: ChallengeFixed, Digit: '4'})
	cfg.Tries = 1
	res := runUnit(t, unitRunner(t, d, cfg), context.Background())
	assertOutcome(t, res, NoInput)
	if _, ok := findEvent(res, EventSentDigits); !ok {
		t.Fatal("no sent_digits event")
	}
	packets, _ := phone.snapshot()
	var events []byte
	firstAudio := -1
	press := string(catalog(t).Frames(prompts.Press, prompts.ULaw)[0])
	for i, h := range packets {
		if h.pt == 101 && len(h.payload) == 4 && (len(events) == 0 || events[len(events)-1] != h.payload[0]) {
			events = append(events, h.payload[0])
		}
		if firstAudio < 0 && h.pt == 0 && string(h.payload) == press {
			firstAudio = i
		}
	}
	if string(events) != "\x01\x02" {
		t.Errorf("telephone-events sent: %v, want 1 then 2", events)
	}
	for i, h := range packets {
		if h.pt == 101 && i > firstAudio {
			t.Errorf("a digit was sent after the challenge began (packet %d > %d)", i, firstAudio)
			break
		}
	}
}

// ulawTone is d seconds of the DTMF key k (Q.23 frequencies) at about
// -10 dBm0, µ-law encoded in 20 ms frames.
func ulawTone(k byte, d time.Duration) [][]byte {
	rows := map[byte]float64{'1': 697, '2': 697, '3': 697, '4': 770, '5': 770, '6': 770, '7': 852, '8': 852, '9': 852, '0': 941}
	cols := map[byte]float64{'1': 1209, '4': 1209, '7': 1209, '2': 1336, '5': 1336, '8': 1336, '0': 1336, '3': 1477, '6': 1477, '9': 1477}
	n := int(d / (20 * time.Millisecond))
	var frames [][]byte
	for f := 0; f < n; f++ {
		pcm := make([]byte, 320)
		for i := 0; i < 160; i++ {
			t := float64(f*160+i) / 8000
			v := 7000 * (math.Sin(2*math.Pi*rows[k]*t) + math.Sin(2*math.Pi*cols[k]*t))
			binary.LittleEndian.PutUint16(pcm[2*i:], uint16(int16(v)))
		}
		frames = append(frames, g711.EncodeUlaw(pcm))
	}
	return frames
}

func silenceFrames(n int) [][]byte {
	f := bytes.Repeat([]byte{0xff}, 160)
	out := make([][]byte, n)
	for i := range out {
		out[i] = f
	}
	return out
}

// In-band mode: a tone in the callee's audio opens the gate.
func TestInbandKeyOpensTheGate(t *testing.T) {
	t.Parallel()
	phone := newPhoneMedia(t, 101, nil)
	phone.onFirstPacket(func(from netip.AddrPort) {
		frames := append(silenceFrames(25), ulawTone('4', 120*time.Millisecond)...)
		phone.stream(from, 0, append(frames, silenceFrames(300)...))
	})
	d := newFakeDialer(answerSDP(phone.port(), "0"), nil) // no telephone-event
	d.trunk = &sip.TrunkConfig{Name: "tdm-gw", DTMFMode: "inband"}
	cfg := fastConfig(Challenge{Mode: ChallengeFixed, Digit: '4'})
	cfg.Tries = 1
	cfg.CodePlays = 1
	cfg.MaxRepeats = -1
	res := runUnit(t, unitRunner(t, d, cfg), context.Background())
	assertOutcome(t, res, Delivered)
	if e, _ := findEvent(res, EventDigit); e.Source != "inband" || e.Digit != "4" {
		t.Errorf("digit event %+v, want 4 from inband", e)
	}
}

// In-band mode: a callee that talks (all the catalog's speech, ~15 s) and
// presses nothing produces no digit.
func TestInbandSpeechIsNoKey(t *testing.T) {
	t.Parallel()
	cat := catalog(t)
	var speech [][]byte
	for _, id := range cat.IDs() {
		speech = append(speech, cat.Frames(id, prompts.ULaw)...)
		speech = append(speech, silenceFrames(10)...)
	}
	phone := newPhoneMedia(t, 101, nil)
	phone.onFirstPacket(func(from netip.AddrPort) { phone.stream(from, 0, speech) })
	d := newFakeDialer(answerSDP(phone.port(), "0"), nil)
	d.trunk = &sip.TrunkConfig{Name: "tdm-gw", DTMFMode: "inband"}
	cfg := fastConfig(Challenge{Mode: ChallengeFixed, Digit: '4'})
	cfg.Tries = 1
	cfg.KeyTimeout = prompts.Duration(speech)
	res := runUnit(t, unitRunner(t, d, cfg), context.Background())
	assertOutcome(t, res, NoInput)
	if n := countEvents(res, EventDigit); n != 0 {
		t.Errorf("%d digits detected in speech", n)
	}
	if res.Media.PacketsRecv < uint64(len(speech))*9/10 {
		t.Errorf("only %d of %d speech packets arrived", res.Media.PacketsRecv, len(speech))
	}
}

// A trunk's codec order shapes the offer, and the answer is negotiated
// against that offer.
func TestTrunkCodecOrder(t *testing.T) {
	t.Parallel()
	phone := newPhoneMedia(t, 101, pressOnPacket(5, '4'))
	d := newFakeDialer(answerSDP(phone.port(), "0 8 101"), nil)
	d.trunk = &sip.TrunkConfig{Name: "eu", Codecs: []string{"PCMA"}}
	cfg := fastConfig(Challenge{Mode: ChallengeFixed, Digit: '4'})
	cfg.CodePlays = 1
	cfg.MaxRepeats = -1
	res := runUnit(t, unitRunner(t, d, cfg), context.Background())
	assertOutcome(t, res, Delivered)
	d.mu.Lock()
	offer := string(d.offer)
	d.mu.Unlock()
	if !strings.Contains(offer, "RTP/AVP 8 101") || strings.Contains(offer, "PCMU") {
		t.Errorf("offer for a PCMA-only trunk:\n%s", offer)
	}
	if res.Media.Codec != "PCMA" {
		t.Errorf("negotiated %s, want PCMA (the answer's first format we offered)", res.Media.Codec)
	}
}

// auto takes in-band tones only when the answer has no telephone-event; any takes them always.
func TestInbandByMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, mode, formats string
		want                Outcome
	}{
		{"auto without telephone-event hears tones", "auto", "0", Delivered},
		{"auto with telephone-event ignores tones", "auto", "0 101", NoInput},
		{"any with telephone-event hears tones", "any", "0 101", Delivered},
		{"rfc4733 ignores tones", "rfc4733", "0", NoInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			phone := newPhoneMedia(t, 101, nil)
			phone.onFirstPacket(func(from netip.AddrPort) {
				frames := append(silenceFrames(25), ulawTone('4', 120*time.Millisecond)...)
				phone.stream(from, 0, append(frames, silenceFrames(300)...))
			})
			d := newFakeDialer(answerSDP(phone.port(), tt.formats), nil)
			d.trunk = &sip.TrunkConfig{Name: "gw", DTMFMode: tt.mode}
			cfg := fastConfig(Challenge{Mode: ChallengeFixed, Digit: '4'})
			cfg.Tries = 1
			cfg.CodePlays = 1
			cfg.MaxRepeats = -1
			cfg.KeyTimeout = 3 * time.Second
			res := runUnit(t, unitRunner(t, d, cfg), context.Background())
			assertOutcome(t, res, tt.want)
			if e, ok := findEvent(res, EventDigit); tt.want == Delivered && (!ok || e.Source != "inband") {
				t.Errorf("digit event %+v, want one from inband", e)
			}
		})
	}
}
