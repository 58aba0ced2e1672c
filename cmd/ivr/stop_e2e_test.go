package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/internal/sipptest"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/prompts"
	"github.com/voiceotp/voiceotp/store/redis/redistest"
	"github.com/voiceotp/voiceotp/webhook"
)

// A verification that stops being pending while its call is live stops the call on the wire: the
// callee is SIPp (a real SIP peer that records when each message arrived), its media is a socket of
// this test that records every RTP payload it hears and presses keys, and the server is the whole
// `ivr serve` (newApp): one node on the memory store, or two nodes on Redis, where the cancel goes to
// the node that does not hold the call.

const (
	stopCode      = "202020" // custom code: its digits are not the challenge's
	stopChallenge = '7'
	stopNumber    = "+15551239000"
	// stopInFlight is how long after a cancel's response a frame of the code may still arrive: the
	// pacing tick that was already due, and the datagram on its way.
	stopInFlight = 100 * time.Millisecond
)

func TestE2EStopReachesTheLiveCall(t *testing.T) {
	stages := []string{"ringing", "challenge", "code", "expiry"}
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			var rs *redistest.Server
			if backend == "redis" {
				rs = redistest.New(t)
			}
			for _, stage := range stages {
				t.Run(stage, func(t *testing.T) {
					t.Parallel()
					runStopCase(t, rs, stage)
				})
			}
		})
	}
}

// runStopCase places one call and stops its verification at stage: while it rings, while the
// challenge plays, while the code is read (each by a cancel), or by the end of its TTL.
func runStopCase(t *testing.T, rs *redistest.Server, stage string) {
	phone := newWirePhone(t)
	scenario := "stop_answer.xml"
	if stage == "ringing" {
		scenario = "stop_ring.xml"
	}
	callee := startSIPpCallee(t, scenario, phone.port())
	hooks := newHookRecorder(t)
	ttl := time.Duration(0)
	if stage == "expiry" {
		ttl = 4 * time.Second
	}
	nodes := startStopNodes(t, rs, callee.Port, ttl)
	number := stopNumber

	status, v, _ := nodes[0].post(t, "/v1/verifications", map[string]any{
		"to": number, "custom_code": stopCode, "callback_url": hooks.url()})
	if status != http.StatusCreated {
		t.Fatalf("start: %d %v", status, v)
	}
	id := v["id"].(string)
	expiresAt, _ := time.Parse(time.RFC3339Nano, v["expires_at"].(string))

	// The call record and the socket's packets signal nothing: these poll them (eventually).
	heard := func(n int) func() error {
		return func() error {
			if got := phone.count(); got < n {
				return fmt.Errorf("%d packets heard", got)
			}
			return nil
		}
	}
	switch stage {
	case "ringing":
		eventually(t, 10*time.Second, "the call to ring", func() error {
			if _, v := nodes[0].get(t, id); len(v.Calls) == 0 || v.Calls[0].Status != otp.CallRinging {
				return fmt.Errorf("calls %v", v.Calls)
			}
			return nil
		})
	case "challenge":
		eventually(t, 10*time.Second, "the challenge to play", heard(10))
	case "code":
		eventually(t, 10*time.Second, "the challenge to play", heard(5))
		phone.press(t, stopChallenge)
		eventually(t, 15*time.Second, "the code to be read", func() error {
			if phone.codeFrames(time.Time{}) == 0 {
				return fmt.Errorf("%d packets heard, none of the code", phone.count())
			}
			return nil
		})
	}

	stoppedAt := expiresAt
	if stage != "expiry" {
		// The cancel goes to the node that does not hold the call.
		canceler := nodes[0]
		if len(nodes) > 1 {
			_, v := nodes[0].get(t, id)
			if len(v.Calls) == 0 || v.Calls[0].Node == "" {
				t.Fatalf("the call has no node: %+v", v.Calls)
			}
			for _, n := range nodes {
				if n.name != v.Calls[0].Node {
					canceler = n
				}
			}
			if canceler.name == v.Calls[0].Node {
				t.Fatalf("no node other than %s", v.Calls[0].Node)
			}
		}
		if status, body, _ := canceler.post(t, "/v1/verifications/"+id+"/cancel", nil); status != http.StatusOK {
			t.Fatalf("cancel on %s: %d %v", canceler.name, status, body)
		}
		stoppedAt = time.Now()
	}

	// On the wire: a CANCEL if it rang, a BYE if answered, within a second.
	callee.Wait(t)
	method := "BYE"
	if stage == "ringing" {
		method = "CANCEL"
	}
	got := callee.Received(t, method)
	t.Logf("%s reached SIPp %v after the verification stopped; %d RTP packets heard, %d of them the code's",
		method, got.Sub(stoppedAt).Round(time.Millisecond), phone.count(), phone.codeFrames(time.Time{}))
	if d := got.Sub(stoppedAt); d > time.Second {
		t.Errorf("SIPp received our %s %v after the verification stopped, want within 1s", method, d.Round(time.Millisecond))
	}

	// No frame of the code was sent, but those already in flight when a cancel came during the code.
	if stage == "code" {
		if n := phone.codeFrames(stoppedAt.Add(stopInFlight)); n > 0 {
			t.Errorf("%d frames of the code arrived more than %v after the cancel", n, stopInFlight)
		}
	} else if n := phone.codeFrames(time.Time{}); n > 0 {
		t.Errorf("%d frames of the code were sent", n)
	}
	if stage == "ringing" && phone.count() > 0 {
		t.Errorf("%d RTP packets arrived from a call that never answered", phone.count())
	}

	// The record says why the call ended.
	call := nodes[0].waitCallEnded(t, id)
	cause := "canceled"
	if stage == "expiry" {
		cause = "expired"
	}
	if call.Status != otp.CallCanceled || call.HangupCause != cause || call.HangupBy != "local" || call.CodePlays != 0 {
		t.Errorf("call record: status %s, hangup %s/%s, code plays %d; want canceled, local/%s, 0",
			call.Status, call.HangupBy, call.HangupCause, call.CodePlays, cause)
	}
	final := "verification.canceled"
	if stage == "expiry" {
		final = "verification.expired"
		if _, v := nodes[0].get(t, id); v.Status != string(otp.StatusExpired) {
			t.Errorf("status %s, want expired", v.Status)
		}
	}
	hooks.waitFor(t, final, "call.completed")
	hooks.checkSigned(t)

	// The number's slot is free at once: a new start is accepted (and canceled, so it ends here).
	status, v2, _ := nodes[len(nodes)-1].post(t, "/v1/verifications", map[string]any{"to": number})
	if status != http.StatusCreated {
		t.Fatalf("a new start for the number: %d %v, want 201", status, v2)
	}
	nodes[0].post(t, "/v1/verifications/"+v2["id"].(string)+"/cancel", nil)
}

// startStopNodes runs one server on the memory store, or two on the Redis rs, with the SIPp callee on
// port as their trunk, a fixed challenge digit, and ttl (0: the default).
func startStopNodes(t *testing.T, rs *redistest.Server, port int, ttl time.Duration) []*clusterNode {
	t.Helper()
	edit := func(c *serveConfig) {
		c.Trunk = "sip:127.0.0.1:" + strconv.Itoa(port)
		c.Call.Challenge = string(stopChallenge)
		c.Call.Tries = 3
		c.Call.KeyTimeout = 5 * time.Second
		c.Call.RTPTimeout = 0 // the callee's socket speaks only to press a key
		c.Call.RingTimeout = 20 * time.Second
		c.Dispatch.DrainTimeout = 2 * time.Second
		c.Policy.AllowPrefixes = []string{"+1555"} // the test's fictional number
		c.Webhook.Secret = string(hookSecret)
		c.Webhook.AllowHTTP = true
		c.Webhook.AllowPrivate = true
		if ttl > 0 {
			c.OTP.TTL = ttl
		}
	}
	if rs == nil {
		cfg := defaultServeConfig()
		cfg.Listen = "127.0.0.1:0"
		cfg.SIP.Listen = "127.0.0.1:0"
		cfg.APIKeys = []string{"e2e-key"}
		edit(&cfg)
		a, logs, api := runTestApp(t, cfg, "server")
		return []*clusterNode{{name: "local", app: a, api: api, logs: logs}}
	}
	// Each case has a Redis database of its own, so the cases run in parallel.
	url := "redis://" + rs.Addr() + "/" + strconv.Itoa(nextRedisDB())
	var nodes []*clusterNode
	for _, name := range []string{"a", "b"} {
		cfg := defaultServeConfig()
		cfg.Listen = "127.0.0.1:0"
		cfg.SIP.Listen = "127.0.0.1:0"
		cfg.APIKeys = []string{"e2e-key"}
		cfg.Redis.URL, cfg.Redis.Node, cfg.Redis.Lease = url, name, 3*time.Second
		edit(&cfg)
		a, logs, api := runTestApp(t, cfg, name)
		nodes = append(nodes, &clusterNode{name: name, app: a, api: api, logs: logs})
	}
	return nodes
}

var (
	redisDBMu sync.Mutex
	redisDB   = 0
)

// nextRedisDB hands out databases 1..15 of a test Redis.
func nextRedisDB() int {
	redisDBMu.Lock()
	defer redisDBMu.Unlock()
	redisDB = redisDB%15 + 1
	return redisDB
}

// startSIPpCallee runs SIPp as the callee for one call, tracing every message it receives with the
// time it arrived, and with its media on the test's socket at rtpPort.
func startSIPpCallee(t *testing.T, scenario string, rtpPort int) *sipptest.Peer {
	t.Helper()
	return sipptest.Start(t, sipptest.Options{
		Scenario: filepath.Join("testdata", scenario), TraceMessages: true,
		Keys: map[string]string{"rtpport": strconv.Itoa(rtpPort)},
	})
}

// wirePhone is the callee's RTP socket: it records every payload it hears with its arrival time and
// presses keys (RFC 4733) towards where the server's audio comes from.
type wirePhone struct {
	conn *net.UDPConn
	code map[string]bool // the frames that only the code's utterance has

	mu      sync.Mutex // guards the fields below
	from    netip.AddrPort
	packets []wirePacket
}

type wirePacket struct {
	at      time.Time
	payload string
}

func newWirePhone(t *testing.T) *wirePhone {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &wirePhone{conn: c, code: codeOnlyFrames(t, stopCode, stopChallenge)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n <= 12 || buf[1]&0x7f != 0 { // PCMU audio only
				continue
			}
			p.mu.Lock()
			p.from = from
			p.packets = append(p.packets, wirePacket{at: time.Now(), payload: string(buf[12:n])})
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return p
}

func (p *wirePhone) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

func (p *wirePhone) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.packets)
}

// codeFrames counts the frames of the code heard after since.
func (p *wirePhone) codeFrames(since time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, pk := range p.packets {
		if pk.at.After(since) && p.code[pk.payload] {
			n++
		}
	}
	return n
}

// press sends one key: three event updates and three end packets, 20 ms apart.
func (p *wirePhone) press(t *testing.T, digit byte) {
	t.Helper()
	p.mu.Lock()
	to := p.from
	p.mu.Unlock()
	if !to.IsValid() {
		t.Fatal("no audio heard yet: nowhere to press a key")
	}
	for i := 1; i <= 6; i++ {
		pkt := make([]byte, 16)
		pkt[0] = 0x80
		pkt[1] = 101
		if i == 1 {
			pkt[1] |= 0x80
		}
		binary.BigEndian.PutUint16(pkt[2:], uint16(9000+i))
		binary.BigEndian.PutUint32(pkt[4:], 160000)
		binary.BigEndian.PutUint32(pkt[8:], 0x5eed0001)
		pkt[12] = digit - '0'
		pkt[13] = 10
		if i > 3 {
			pkt[13] |= 0x80
		}
		binary.BigEndian.PutUint16(pkt[14:], uint16(160*min(i, 4)))
		if _, err := p.conn.WriteToUDPAddrPort(pkt, to); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // the pacing of RFC 4733 packets, not a wait
	}
}

// codeOnlyFrames returns the PCMU frames of code's utterance that no other prompt the call may play
// has: frames shared with the challenge, the other prompts or silence would prove nothing.
func codeOnlyFrames(t *testing.T, code string, challenge byte) map[string]bool {
	t.Helper()
	cat, err := e2eCatalog()
	if err != nil {
		t.Fatal(err)
	}
	frames, err := cat.Code(prompts.ULaw, code, prompts.CodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, f := range frames {
		out[string(f)] = true
	}
	others := []prompts.ID{prompts.Press, prompts.CodeIs, prompts.Again, prompts.Repeat, prompts.NoKey,
		prompts.WrongKey, prompts.Goodbye, prompts.Hello, prompts.DigitID(challenge), prompts.DigitID('1')}
	for _, id := range others {
		for _, f := range cat.Frames(id, prompts.ULaw) {
			delete(out, string(f))
		}
	}
	delete(out, string(cat.SilenceFrame(prompts.ULaw)))
	if len(out) < 20 {
		t.Fatalf("only %d frames tell the code apart; the check would prove little", len(out))
	}
	return out
}

var hookSecret = []byte("whsec_stop_e2e")

// hookRecorder is a webhook receiver that checks every signature and wakes its waiters on each event.
type hookRecorder struct {
	srv     *httptest.Server
	arrived chan struct{} // a token when an event has arrived since the last look

	mu    sync.Mutex // guards types and bad
	types []string
	bad   []string
}

func newHookRecorder(t *testing.T) *hookRecorder {
	t.Helper()
	h := &hookRecorder{arrived: make(chan struct{}, 1)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev webhook.Event
		json.Unmarshal(body, &ev)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := webhook.Verify(hookSecret, r.Header.Get("X-Signature"), body, time.Now(), time.Minute); err != nil {
			h.bad = append(h.bad, ev.Type+": "+err.Error())
		}
		h.types = append(h.types, ev.Type)
		select {
		case h.arrived <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookRecorder) url() string { return h.srv.URL + "/hook" }

// received returns the types of the events received so far, in order.
func (h *hookRecorder) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.types)
}

// waitFor waits until events of every type in types have arrived, looking again at each arrival, for
// at most 10 s.
func (h *hookRecorder) waitFor(t *testing.T, types ...string) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		got := h.received()
		if !slices.ContainsFunc(types, func(typ string) bool { return !slices.Contains(got, typ) }) {
			return
		}
		select {
		case <-h.arrived:
		case <-deadline.C:
			t.Fatalf("no %v webhooks within 10s; received: %v", types, got)
		}
	}
}

func (h *hookRecorder) checkSigned(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.bad) > 0 {
		t.Errorf("webhooks with bad signatures: %v", h.bad)
	}
}
