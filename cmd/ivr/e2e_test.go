package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/loadtest"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/prompts"
)

// End-to-end: the whole server (newApp, as `ivr serve` builds it) and a
// virtual phone as its trunk, over real HTTP, SIP and RTP on 127.0.0.1.

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type e2e struct {
	app   *app
	phone *loadtest.Phone
	api   *apiClient
	logs  *syncBuf // the server's debug log
}

var e2eCatalog = sync.OnceValues(func() (*prompts.Catalog, error) { return prompts.Load("en") })

func startE2E(t *testing.T, edit func(*serveConfig)) *e2e {
	t.Helper()
	cat, err := e2eCatalog()
	if err != nil {
		t.Fatal(err)
	}
	phone, err := loadtest.NewPhone(loadtest.Config{ListenAddr: "127.0.0.1:0", Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { phone.Close() })
	cfg := testServeConfig(phone)
	if edit != nil {
		edit(&cfg)
	}
	a, logs, api := runTestApp(t, cfg, "server")
	return &e2e{app: a, phone: phone, logs: logs, api: api}
}

// testServeConfig is a server on loopback with phone as its trunk and
// short call timeouts.
func testServeConfig(phone *loadtest.Phone) serveConfig {
	cfg := defaultServeConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.SIP.Listen = "127.0.0.1:0"
	cfg.Trunk = "sip:" + phone.Addr().String()
	cfg.APIKeys = []string{"e2e-key"}
	cfg.Policy.AllowPrefixes = []string{loadtest.NumberPrefix} // the tests' fictional numbers
	cfg.Call.RepeatWait = 300 * time.Millisecond
	cfg.Call.MaxRepeats = 0
	cfg.Dispatch.CPS = 50
	return cfg
}

// runTestApp builds and runs a server from cfg with a debug log kept in
// memory; the test's cleanup stops it and fails the test if run failed.
func runTestApp(t *testing.T, cfg serveConfig, name string) (*app, *syncBuf, *apiClient) {
	t.Helper()
	logs := &syncBuf{}
	a, err := newApp(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
	return a, logs, &apiClient{base: "http://" + a.apiAddr(), key: cfg.APIKeys[0], http: &http.Client{Timeout: 10 * time.Second}}
}

func (e *e2e) start(t *testing.T, body map[string]any, hdr ...string) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", e.api.base+"/v1/verifications", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+e.api.key)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.api.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	json.NewDecoder(res.Body).Decode(&m)
	return res.StatusCode, m
}

// waitCall waits until the verification's first call has ended and returns
// its record. It polls the API for the record's status: nothing signals the
// end of a call record to the test (the phone's report may come before or
// after the server records the call, and a call never dialled has none).
func (e *e2e) waitCall(t *testing.T, id string) otp.Call {
	t.Helper()
	var call otp.Call
	eventually(t, 90*time.Second, "the first call of "+id+" to end", func() error {
		var v verification
		if _, err := e.api.do(context.Background(), "GET", "/v1/verifications/"+id, nil, &v); err != nil {
			t.Fatal(err)
		}
		if len(v.Calls) == 0 {
			return errors.New("no call recorded")
		}
		if call = v.Calls[0]; !call.Status.Terminal() {
			return fmt.Errorf("the call is %s", call.Status)
		}
		return nil
	})
	return call
}

func (e *e2e) check(t *testing.T, id, code string) (int, string) {
	t.Helper()
	var m map[string]any
	status, err := e.api.do(context.Background(), "POST", "/v1/verifications/"+id+"/check", map[string]string{"code": code}, &m)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := m["status"].(string); ok {
		return status, s
	}
	e2, _ := m["error"].(map[string]any)
	c, _ := e2["code"].(string)
	return status, c
}

func (e *e2e) report(t *testing.T, number string) loadtest.CallReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := e.phone.WaitReport(ctx, number)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// noMoreCalls asserts the phone gets no (further) call for number.
func (e *e2e) noMoreCalls(t *testing.T, number string, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if r, err := e.phone.WaitReport(ctx, number); err == nil {
		t.Errorf("the phone got an unexpected call to %s (%s)", number, r.CallID)
	}
}

func TestDemo(t *testing.T) {
	t.Parallel()
	wav := filepath.Join(t.TempDir(), "demo.wav")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"demo", "--wav", wav}, &out, &errb)
	if code != 0 {
		t.Fatalf("ivr demo exited %d\n%s\n%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"→ 201", "gate passed", "code played in full (2)", "→ approved"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if st, err := os.Stat(wav); err != nil || st.Size() < 8000*2*5 {
		t.Errorf("demo.wav: %v (%v)", err, st)
	}
}

// The heard code approves; a webhook receiver verifies every signature;
// the code appears in no server log line.
func TestE2EApprovedWithWebhooks(t *testing.T) {
	t.Parallel()
	hooks := newHookRecorder(t)
	e := startE2E(t, func(c *serveConfig) {
		c.Webhook.Secret = string(hookSecret)
		c.Webhook.AllowHTTP = true
		c.Webhook.AllowPrivate = true
	})
	status, v := e.start(t, map[string]any{"to": "+15551230001", "callback_url": hooks.url()})
	if status != 201 {
		t.Fatalf("start: %d %v", status, v)
	}
	id := v["id"].(string)
	call := e.waitCall(t, id)
	if call.Status != otp.CallDelivered || call.CodePlays != 2 || !call.ChallengeDigitOK || call.SIPStatus != 200 ||
		call.DialedAt == nil || call.AnsweredAt == nil || call.GatePassedAt == nil || call.EndedAt == nil {
		t.Fatalf("call record: %+v", call)
	}
	rep := e.report(t, "+15551230001")
	if rep.HeardCode == "" {
		t.Fatal("the phone heard no code")
	}
	if status, s := e.check(t, id, rep.HeardCode); status != 200 || s != "approved" {
		t.Fatalf("check of the heard code: %d %s", status, s)
	}
	if strings.Contains(e.logs.String(), rep.HeardCode) {
		t.Error("the code appears in the server's debug log")
	}
	if !strings.Contains(e.logs.String(), "level=DEBUG") {
		t.Error("the server logged nothing at debug level: the check above proves nothing")
	}
	// Webhooks are delivered asynchronously: wait for the approval event.
	hooks.waitFor(t, "verification.approved", "call.completed")
	hooks.checkSigned(t)
	got := hooks.received()
	for _, want := range []string{"verification.created", "call.dialing", "call.answered", "call.gate_passed", "call.code_played", "call.hangup"} {
		if !slices.Contains(got, want) {
			t.Errorf("no %s webhook in %v", want, got)
		}
	}
}

// Five wrong checks lock the verification; the heard code is then refused.
func TestE2EWrongChecksLock(t *testing.T) {
	t.Parallel()
	e := startE2E(t, nil)
	_, v := e.start(t, map[string]any{"to": "+15551230002"})
	id := v["id"].(string)
	e.waitCall(t, id)
	code := e.report(t, "+15551230002").HeardCode
	if code == "" {
		t.Fatal("the phone heard no code")
	}
	wrong := []byte(code)
	wrong[0] = '0' + (wrong[0]-'0'+1)%10
	for i := 1; i <= 5; i++ {
		status, s := e.check(t, id, string(wrong))
		if (i < 5 && (status != 200 || s != "pending")) || (i == 5 && status != 429) {
			t.Fatalf("wrong check %d: %d %s", i, status, s)
		}
	}
	if status, s := e.check(t, id, code); status != 429 || s != "max_attempts_reached" {
		t.Errorf("the right code after the lock: %d %s, want 429 max_attempts_reached", status, s)
	}
}

// A verification that expires while its call waits in the queue is never dialled.
func TestE2EExpiredBeforeDialingIsNeverDialled(t *testing.T) {
	t.Parallel()
	e := startE2E(t, func(c *serveConfig) {
		c.Dispatch.CPS = 0.4        // the second call waits 2.5 s for its turn
		c.OTP.TTL = 2 * time.Second // and expires meanwhile
	})
	_, first := e.start(t, map[string]any{"to": "+15551230003"})
	_, second := e.start(t, map[string]any{"to": "+15551230004"})
	e.waitCall(t, first["id"].(string))
	call := e.waitCall(t, second["id"].(string))
	if call.Status != otp.CallCanceled || call.DialedAt != nil {
		t.Errorf("the expired verification's call: %+v, want canceled and never dialled", call)
	}
	e.report(t, "+15551230003")
	e.noMoreCalls(t, "+15551230004", time.Second)
}

// The same Idempotency-Key twice places one call.
func TestE2EIdempotencyKeyPlacesOneCall(t *testing.T) {
	t.Parallel()
	e := startE2E(t, nil)
	body := map[string]any{"to": "+15551230005"}
	s1, v1 := e.start(t, body, "Idempotency-Key", "order-42")
	s2, v2 := e.start(t, body, "Idempotency-Key", "order-42")
	if s1 != 201 || s2 != 201 || v1["id"] != v2["id"] {
		t.Fatalf("starts: %d %v / %d %v", s1, v1["id"], s2, v2["id"])
	}
	e.waitCall(t, v1["id"].(string))
	e.report(t, "+15551230005")
	e.noMoreCalls(t, "+15551230005", time.Second)
	var v verification
	e.api.do(context.Background(), "GET", "/v1/verifications/"+v1["id"].(string), nil, &v)
	if len(v.Calls) != 1 {
		t.Errorf("%d calls, want 1", len(v.Calls))
	}
}

// ivr trunks check: the virtual phone answers OPTIONS; a dead port does not.
func TestTrunksCheck(t *testing.T) {
	t.Parallel()
	cat, err := e2eCatalog()
	if err != nil {
		t.Fatal(err)
	}
	phone, err := loadtest.NewPhone(loadtest.Config{ListenAddr: "127.0.0.1:0", Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"trunks", "check", "--sip.listen", "127.0.0.1:0", "--trunk", "sip:" + phone.Addr().String()}, &out, &errb)
	if code != 0 || !strings.HasPrefix(out.String(), "ok ") || !strings.Contains(out.String(), "reachable") {
		t.Errorf("live trunk: exit %d\n%s%s", code, out.String(), errb.String())
	}
	dead := freeUDPAddr(t)
	out.Reset()
	code = run(context.Background(), []string{"trunks", "check", "--sip.listen", "127.0.0.1:0", "--trunk", "sip:" + dead}, &out, &errb)
	if code != 1 || !strings.HasPrefix(out.String(), "FAIL") || !strings.Contains(out.String(), "unreachable") {
		t.Errorf("dead trunk: exit %d\n%s%s", code, out.String(), errb.String())
	}
}

func freeUDPAddr(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// TestE2EDenseMedia runs a verification with media.mode dense: the call's RTP goes through the
// server's shared lanes, the heard code approves, and /metrics shows the lanes' and the CPU
// admission's counters.
func TestE2EDenseMedia(t *testing.T) {
	t.Parallel()
	e := startE2E(t, func(c *serveConfig) { c.Media.Mode = "dense"; c.Media.Lanes = 2 })
	if e.app.mux == nil {
		t.Fatal("media.mode dense made no mux")
	}
	status, v := e.start(t, map[string]any{"to": "+15551230077"})
	if status != 201 {
		t.Fatalf("start: %d %v", status, v)
	}
	id := v["id"].(string)
	if call := e.waitCall(t, id); call.Status != otp.CallDelivered {
		t.Fatalf("call record: %+v", call)
	}
	rep := e.report(t, "+15551230077")
	if status, s := e.check(t, id, rep.HeardCode); status != 200 || s != "approved" {
		t.Fatalf("check of the heard code %q: %d %s", rep.HeardCode, status, s)
	}
	req, _ := http.NewRequest("GET", e.api.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+e.api.key)
	res, err := e.api.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{"ivr_dispatch_cpu_load ", "ivr_dispatch_cpu_holds_total 0"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
	// The phone's packets that were on their way when the server hung up arrive after the call's
	// stream left its lane, and are rightly unmatched; a call's worth (hundreds) would be a demux bug.
	if n := metricValue(t, string(body), "ivr_rtp_mux_unmatched_total"); n > 25 {
		t.Errorf("ivr_rtp_mux_unmatched_total = %v, want at most the packets in flight at the hangup (25)", n)
	}
	if strings.Contains(string(body), "ivr_rtp_mux_packets_sent_total 0\n") || !strings.Contains(string(body), "ivr_rtp_mux_packets_sent_total") {
		t.Errorf("/metrics shows no packet sent by the lanes")
	}
}

// metricValue returns the value of an unlabelled series in a /metrics body.
func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}
