package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock moves only when the Sender waits for a retry: After advances it
// by d and fires at once, unless hold is set, in which case it never fires.
type fakeClock struct {
	hold bool

	mu    sync.Mutex // guards now and waits
	now   time.Time
	waits []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: testNow} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	if c.hold {
		return nil
	}
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func (c *fakeClock) waited() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// hit is one request as the test server saw it.
type hit struct {
	header http.Header
	body   []byte
	sigErr error // Verify's verdict at the fake clock's time of arrival
	ts     int64
}

// receiver is an httptest server on 127.0.0.1 that answers with the next of
// statuses (the last one repeats) and records every request.
type receiver struct {
	*httptest.Server
	clock    *fakeClock
	statuses []int
	header   http.Header // added to every answer
	arrived  chan struct{}
	block    bool // hold every request until the client gives up

	mu   sync.Mutex // guards hits
	hits []hit
}

func newReceiver(t *testing.T, clk *fakeClock, statuses ...int) *receiver {
	r := &receiver{clock: clk, statuses: statuses, header: http.Header{}, arrived: make(chan struct{}, 100)}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	h := hit{header: req.Header.Clone(), body: body}
	h.sigErr = Verify(testSecret, req.Header.Get(SignatureHeader), body, r.clock.Now(), time.Second)
	if ts, _, err := parseHeader(req.Header.Get(SignatureHeader)); err == nil {
		h.ts, _ = strconv.ParseInt(ts, 10, 64)
	}
	r.mu.Lock()
	n := len(r.hits)
	r.hits = append(r.hits, h)
	r.mu.Unlock()
	r.arrived <- struct{}{}
	if r.block {
		<-req.Context().Done()
		return
	}
	status := r.statuses[min(n, len(r.statuses)-1)]
	for k, v := range r.header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
}

func (r *receiver) recorded() []hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hit(nil), r.hits...)
}

// testSender returns a Sender on clk with no jitter, and a channel that
// receives each event's result.
func testSender(cfg Config, clk *fakeClock) (*Sender, chan result) {
	if cfg.Secret == nil {
		cfg.Secret = testSecret
	}
	cfg.AllowPrivate = true // the receivers are on 127.0.0.1
	s := newSender(cfg, clk, func(d time.Duration) time.Duration { return d })
	done := make(chan result, 100)
	s.onDone = func(_ string, r result) { done <- r }
	return s, done
}

// run starts s.Run; the returned function stops it and waits for it.
func run(t *testing.T, s *Sender) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run = %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// await waits for one result. The deadline only turns a hang into a failure.
func await(t *testing.T, done chan result) result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no result")
		return 0
	}
}

func testEvent(t *testing.T) Event {
	t.Helper()
	ev, err := NewEvent("call.answered", map[string]any{"verification_id": "VE1", "sip_status": 200}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestRetriesUntilDelivered(t *testing.T) {
	clk := newFakeClock()
	srv := newReceiver(t, clk, 500, 503, 502, 200)
	s, done := testSender(Config{BaseDelay: time.Second}, clk)
	run(t, s)
	ev := testEvent(t)
	if err := s.Send(srv.URL+"/hook?token=abc", ev); err != nil {
		t.Fatal(err)
	}
	if r := await(t, done); r != resultDelivered {
		t.Fatalf("result %v, want delivered", r)
	}

	hits := srv.recorded()
	if len(hits) != 4 {
		t.Fatalf("%d attempts, want 4", len(hits))
	}
	for i, h := range hits {
		if h.sigErr != nil {
			t.Errorf("attempt %d: signature: %v", i+1, h.sigErr)
		}
		if i > 0 && h.ts <= hits[i-1].ts {
			t.Errorf("attempt %d signed at t=%d, not after attempt %d (t=%d)", i+1, h.ts, i, hits[i-1].ts)
		}
		for k, want := range map[string]string{
			"Content-Type": "application/json",
			"User-Agent":   UserAgent,
			"X-Webhook-Id": ev.ID,
		} {
			if got := h.header.Get(k); got != want {
				t.Errorf("attempt %d: %s = %q, want %q", i+1, k, got, want)
			}
		}
		if !bytes.Equal(h.body, hits[0].body) {
			t.Errorf("attempt %d: body changed between attempts", i+1)
		}
	}
	var got Event
	if err := json.Unmarshal(hits[0].body, &got); err != nil || got.ID != ev.ID || got.Type != ev.Type || !got.CreatedAt.Equal(ev.CreatedAt) {
		t.Errorf("body %s decodes to %+v (%v), want %+v", hits[0].body, got, err, ev)
	}
	if w, want := clk.waited(), []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; !equalDurations(w, want) {
		t.Errorf("waits %v, want %v", w, want)
	}
	if st := s.Stats(); st != (Stats{Sent: 1, Delivered: 1, Retries: 3}) {
		t.Errorf("Stats = %+v", st)
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAnswers(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int
		want     result
		attempts int
	}{
		{"200", []int{200}, resultDelivered, 1},
		{"204", []int{204}, resultDelivered, 1},
		{"400 stops at once", []int{400, 200}, resultFailed, 1},
		{"401 stops at once", []int{401, 200}, resultFailed, 1},
		{"404 stops at once", []int{404, 200}, resultFailed, 1},
		{"410 stops at once", []int{410, 200}, resultFailed, 1},
		{"408 is retried", []int{408, 200}, resultDelivered, 2},
		{"429 is retried", []int{429, 429, 200}, resultDelivered, 3},
		{"500 is retried", []int{500, 200}, resultDelivered, 2},
		{"redirect is not followed, retried", []int{302, 200}, resultDelivered, 2},
		{"gives up after MaxAttempts", []int{500}, resultFailed, 3},
		{"503 until the last attempt", []int{503, 503, 200}, resultDelivered, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			srv := newReceiver(t, clk, tt.statuses...)
			srv.header.Set("Location", "http://127.0.0.1:1/elsewhere")
			s, done := testSender(Config{MaxAttempts: 3}, clk)
			run(t, s)
			if err := s.Send(srv.URL, testEvent(t)); err != nil {
				t.Fatal(err)
			}
			if r := await(t, done); r != tt.want {
				t.Errorf("result %v, want %v", r, tt.want)
			}
			if n := len(srv.recorded()); n != tt.attempts {
				t.Errorf("%d attempts, want %d", n, tt.attempts)
			}
			st := s.Stats()
			if st.Retries != uint64(tt.attempts-1) || st.Pending != 0 {
				t.Errorf("Stats = %+v, want %d retries", st, tt.attempts-1)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		name       string
		attempt    int
		retryAfter time.Duration
		want       time.Duration
	}{
		{"first retry", 1, 0, time.Second},
		{"second", 2, 0, 2 * time.Second},
		{"fourth", 4, 0, 8 * time.Second},
		{"capped", 5, 0, 10 * time.Second},
		{"capped far out", 60, 0, 10 * time.Second},
		{"Retry-After longer", 1, 7 * time.Second, 7 * time.Second},
		{"Retry-After shorter", 3, time.Second, 4 * time.Second},
		{"Retry-After capped", 1, time.Hour, 10 * time.Second},
	}
	s, _ := testSender(Config{BaseDelay: time.Second, MaxDelay: 10 * time.Second}, newFakeClock())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.backoff(tt.attempt, tt.retryAfter); got != tt.want {
				t.Errorf("backoff(%d, %v) = %v, want %v", tt.attempt, tt.retryAfter, got, tt.want)
			}
		})
	}
}

func TestEqualJitter(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 2, 3, time.Millisecond, time.Second, 5 * time.Minute} {
		for range 200 {
			if j := equalJitter(d); j < d/2 || j > d {
				t.Fatalf("equalJitter(%v) = %v, want within [%v, %v]", d, j, d/2, d)
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{"30", 30 * time.Second},
		{"soon", 0},
		{testNow.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{testNow.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"99999999999", 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := parseRetryAfter(tt.in, testNow); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	clk := newFakeClock()
	srv := newReceiver(t, clk, 429, 200)
	srv.header.Set("Retry-After", "42")
	s, done := testSender(Config{}, clk)
	run(t, s)
	if err := s.Send(srv.URL, testEvent(t)); err != nil {
		t.Fatal(err)
	}
	if r := await(t, done); r != resultDelivered {
		t.Fatalf("result %v", r)
	}
	if w := clk.waited(); len(w) != 1 || w[0] != 42*time.Second {
		t.Errorf("waits %v, want [42s]", w)
	}
}

// TestShutdown stops a Sender with one request in flight, one event queued
// behind it and one waiting to retry: all three are dropped and counted.
func TestShutdown(t *testing.T) {
	clk := newFakeClock()
	clk.hold = true // a retry never comes due
	failing := newReceiver(t, clk, 500)
	blocking := newReceiver(t, clk, 200)
	blocking.block = true
	s, done := testSender(Config{Workers: 1}, clk)
	stop := run(t, s)

	if err := s.Send(failing.URL, testEvent(t)); err != nil {
		t.Fatal(err)
	}
	<-failing.arrived
	if err := s.Send(blocking.URL, testEvent(t)); err != nil {
		t.Fatal(err)
	}
	<-blocking.arrived // the one worker is now stuck in this request
	if err := s.Send(blocking.URL, testEvent(t)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Pending != 3 {
		t.Fatalf("Stats = %+v, want 3 pending", st)
	}

	stop()
	for range 3 {
		if r := await(t, done); r != resultDropped {
			t.Errorf("result %v, want dropped", r)
		}
	}
	if st := s.Stats(); st != (Stats{Sent: 3, Dropped: 3}) {
		t.Errorf("Stats = %+v, want 3 sent and 3 dropped", st)
	}
	if err := s.Send(failing.URL, testEvent(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Run = %v, want ErrClosed", err)
	}
	if st := s.Stats(); st.Dropped != 4 {
		t.Errorf("Dropped = %d after a Send on a closed Sender, want 4", st.Dropped)
	}
}

func TestSendRefuses(t *testing.T) {
	tests := []struct {
		name         string
		secret       []byte
		url          string
		allowPrivate bool
		want         error
	}{
		{"no secret", []byte{}, "https://example.com/hook", false, ErrNoSecret},
		{"not a URL", testSecret, "::", false, ErrBadURL},
		{"relative", testSecret, "/hook", false, ErrBadURL},
		{"ftp", testSecret, "ftp://example.com/hook", false, ErrBadURL},
		{"no host", testSecret, "https:///hook", false, ErrBadURL},
		{"loopback", testSecret, "http://127.0.0.1:8080/hook", false, ErrPrivateAddress},
		{"loopback v6", testSecret, "http://[::1]/hook", false, ErrPrivateAddress},
		{"mapped loopback", testSecret, "http://[::ffff:127.0.0.1]/hook", false, ErrPrivateAddress},
		{"RFC 1918", testSecret, "http://10.1.2.3/hook", false, ErrPrivateAddress},
		{"cloud metadata", testSecret, "http://169.254.169.254/latest", false, ErrPrivateAddress},
		{"CGNAT", testSecret, "http://100.64.0.1/", false, ErrPrivateAddress},
		{"unspecified", testSecret, "http://0.0.0.0/", false, ErrPrivateAddress},
		{"unique local v6", testSecret, "http://[fd00::1]/", false, ErrPrivateAddress},
		{"loopback allowed", testSecret, "http://127.0.0.1:8080/hook", true, nil},
		{"public IP", testSecret, "https://8.8.8.8/hook", false, nil},
		{"name", testSecret, "https://hooks.example.com/hook", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSender(Config{Secret: tt.secret, AllowPrivate: tt.allowPrivate}, newFakeClock(), equalJitter)
			err := s.Send(tt.url, testEvent(t))
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Errorf("Send(%q) = %v, want %v", tt.url, err, tt.want)
			}
		})
	}
}

// TestDialGuard sends to a name that resolves to loopback: the default
// client refuses the connection, and the event fails without a retry.
func TestDialGuard(t *testing.T) {
	clk := newFakeClock()
	srv := newReceiver(t, clk, 200)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	s := newSender(Config{Secret: testSecret}, clk, equalJitter)
	done := make(chan result, 1)
	s.onDone = func(_ string, r result) { done <- r }
	run(t, s)
	if err := s.Send("http://localhost:"+port+"/hook", testEvent(t)); err != nil {
		t.Fatal(err)
	}
	if r := await(t, done); r != resultFailed {
		t.Errorf("result %v, want failed", r)
	}
	if n := len(srv.recorded()); n != 0 {
		t.Errorf("the receiver got %d requests, want none", n)
	}
	if st := s.Stats(); st.Retries != 0 || st.Failed != 1 {
		t.Errorf("Stats = %+v, want 1 failed and no retries", st)
	}
}

func TestQueueFull(t *testing.T) {
	s, _ := testSender(Config{QueueSize: 2}, newFakeClock())
	// Run is not started, so nothing leaves the queue.
	for i, want := range []error{nil, nil, ErrQueueFull, ErrQueueFull} {
		if err := s.Send("http://127.0.0.1:1/", testEvent(t)); !errors.Is(err, want) || (err == nil) != (want == nil) {
			t.Errorf("Send %d = %v, want %v", i+1, err, want)
		}
	}
	if st := s.Stats(); st != (Stats{Sent: 2, Dropped: 2, Pending: 2}) {
		t.Errorf("Stats = %+v", st)
	}
}

// TestLogsHoldNoSecrets runs retries, a failure and drops with debug logging
// and checks that no line holds the secret, the body, the signature or the
// URL's query.
func TestLogsHoldNoSecrets(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clk := newFakeClock()
	srv := newReceiver(t, clk, 500, 400)
	s, done := testSender(Config{Logger: logger, QueueSize: 1}, clk)
	run(t, s)
	ev, err := NewEvent("call.answered", map[string]string{"marker": "BODY-MARKER-7f3a"}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	url := srv.URL + "/hook?token=QUERY-SECRET-91c2"
	if err := s.Send(url, ev); err != nil {
		t.Fatal(err)
	}
	if r := await(t, done); r != resultFailed {
		t.Fatalf("result %v", r)
	}
	s.mu.Lock()
	s.pending = 1 // pretend the queue is full to log a drop
	s.mu.Unlock()
	_ = s.Send(url, ev)

	logs := buf.String()
	if !strings.Contains(logs, ev.ID) {
		t.Fatalf("logs do not mention the event at all:\n%s", logs)
	}
	for _, secret := range []string{string(testSecret), "BODY-MARKER-7f3a", "QUERY-SECRET-91c2", "v1="} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs hold %q:\n%s", secret, logs)
		}
	}
}

type syncBuffer struct {
	mu  sync.Mutex // guards b
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestNewEventID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewEventID()
		if len(id) != 34 || !strings.HasPrefix(id, "EV") || strings.Trim(id[2:], "0123456789abcdef") != "" {
			t.Fatalf("NewEventID() = %q, want EV and 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("NewEventID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestSendFillsIDAndTime(t *testing.T) {
	clk := newFakeClock()
	srv := newReceiver(t, clk, 200)
	s, done := testSender(Config{}, clk)
	run(t, s)
	if err := s.Send(srv.URL, Event{Type: "verification.expired"}); err != nil {
		t.Fatal(err)
	}
	await(t, done)
	h := srv.recorded()[0]
	var ev Event
	if err := json.Unmarshal(h.body, &ev); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ev.ID, "EV") || ev.ID != h.header.Get("X-Webhook-Id") || !ev.CreatedAt.Equal(testNow) {
		t.Errorf("sent %+v with X-Webhook-Id %q", ev, h.header.Get("X-Webhook-Id"))
	}
	if string(ev.Data) != "null" {
		t.Errorf("data = %s, want null", ev.Data)
	}
}

func TestRunTwice(t *testing.T) {
	s, _ := testSender(Config{}, newFakeClock())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatalf("first Run = %v", err)
	}
	if err := s.Run(ctx); err == nil {
		t.Error("second Run returned nil")
	}
}
