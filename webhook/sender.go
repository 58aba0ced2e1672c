package webhook

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors callers of Send branch on.
var (
	// ErrQueueFull: QueueSize deliveries are already pending; the event was dropped.
	ErrQueueFull = errors.New("webhook: queue full")
	// ErrClosed: the Sender has stopped; the event was dropped.
	ErrClosed = errors.New("webhook: sender closed")
	// ErrBadURL: the callback URL is not an absolute http or https URL.
	ErrBadURL = errors.New("webhook: invalid callback URL")
	// ErrPrivateAddress: the callback URL points, or resolved, to a loopback,
	// private, link-local or otherwise internal address and AllowPrivate is off.
	ErrPrivateAddress = errors.New("webhook: callback address is not public")
)

// UserAgent is the User-Agent of every webhook request.
const UserAgent = "voiceotp"

// The defaults of Config.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 8
	DefaultBaseDelay   = time.Second
	DefaultMaxDelay    = 5 * time.Minute
	DefaultWorkers     = 4
	DefaultQueueSize   = 10000
)

// Config configures a Sender. Secret is required; every other field has a
// default.
type Config struct {
	// Secret is the HMAC key for X-Signature. Send refuses to send without one.
	// It is never logged.
	Secret []byte
	// Client sends the requests. If nil, a client with a 10s timeout is used
	// that follows no redirects, ignores proxy environment variables, and
	// (unless AllowPrivate) refuses at connect time to reach an address that
	// is not public, which also defeats DNS names that resolve inward. A
	// caller-supplied Client gets only Send's check of IP-literal URLs.
	Client *http.Client
	// MaxAttempts is the number of attempts per event, the first included.
	// If zero or negative, 8 is used.
	MaxAttempts int
	// BaseDelay is the wait before the first retry; each later retry waits
	// twice the one before, up to MaxDelay, each with jitter (a random time
	// between half and all of it). If zero or negative, 1s is used.
	BaseDelay time.Duration
	// MaxDelay caps the wait between attempts, a Retry-After included. If
	// zero or negative, 5 minutes is used.
	MaxDelay time.Duration
	// Workers is the number of requests in flight at once. If zero or
	// negative, 4 is used.
	Workers int
	// QueueSize bounds the events accepted and not yet finished (waiting,
	// in flight or waiting to retry); Send beyond it drops the event. If zero
	// or negative, 10000 is used.
	QueueSize int
	// Logger receives a line per retry, failure and drop with the keys
	// event_id, event_type, url_host, attempt, http_status, error; never the
	// secret, a header or a body. If nil, logs are discarded.
	Logger *slog.Logger
	// AllowPrivate permits callback URLs on loopback, private and link-local
	// addresses: for tests and for receivers on the same private network.
	// Off by default, so that a callback URL cannot probe the internal network.
	AllowPrivate bool
}

func (c Config) withDefaults() Config {
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.BaseDelay <= 0 {
		c.BaseDelay = DefaultBaseDelay
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	c.BaseDelay = min(c.BaseDelay, c.MaxDelay)
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Client == nil {
		c.Client = defaultClient(c.AllowPrivate)
	}
	return c
}

// Stats is a snapshot of a Sender's counters.
type Stats struct {
	// Sent counts events accepted by Send.
	Sent uint64
	// Delivered counts events that got a 2xx answer.
	Delivered uint64
	// Failed counts events given up on: MaxAttempts reached, or an answer
	// that retrying cannot change.
	Failed uint64
	// Dropped counts events refused by Send (queue full, closed) and events
	// still pending when Run stopped.
	Dropped uint64
	// Retries counts attempts after the first.
	Retries uint64
	// Pending is the number of events accepted and not yet finished.
	Pending int
}

// Sender delivers events to callback URLs with a fixed pool of workers.
//
// Send is safe for concurrent use and never blocks; Run does the work and
// may be called once. Events sent before Run wait for it. Delivery is at
// least once (a receiver that answered 2xx too slowly is asked again), and
// the order of events to one URL is not guaranteed: retries and parallel
// workers reorder them, so a receiver orders by created_at, not by arrival.
type Sender struct {
	cfg       Config // defaults applied; read-only
	ownClient bool   // cfg.Client was made here, so its idle connections are ours to close
	clock     clock
	jitter    func(time.Duration) time.Duration
	queue     chan *delivery // new events; capacity QueueSize, sent to only with mu held
	ready     chan *delivery // retries that are due, from the scheduler to a worker
	wake      chan struct{}  // capacity 1: the earliest retry may have changed

	// mu guards closed, pending and retries, and every send on queue, so that
	// no event slips in after Run's final drain.
	mu      sync.Mutex
	closed  bool
	pending int
	retries retryHeap

	running atomic.Bool

	sent, delivered, failed, dropped, retried atomic.Uint64

	// onDone, if set (by tests), is called as each accepted event finishes.
	onDone func(id string, r result)
}

type result int

const (
	resultDelivered result = iota
	resultFailed
	resultDropped
)

// delivery is one event on its way to one URL. It is owned by whichever of
// the queue, a worker, or the retry heap holds it.
type delivery struct {
	url     string
	host    string // for logs; the URL may carry credentials in its query
	id, typ string
	body    []byte
	attempt int       // attempts made
	due     time.Time // when the next attempt may start
}

// NewSender returns a Sender for cfg. Call Run to start delivering.
func NewSender(cfg Config) *Sender {
	return newSender(cfg, realClock{}, equalJitter)
}

func newSender(cfg Config, clk clock, jitter func(time.Duration) time.Duration) *Sender {
	own := cfg.Client == nil
	cfg = cfg.withDefaults()
	return &Sender{
		cfg:       cfg,
		ownClient: own,
		clock:     clk,
		jitter:    jitter,
		queue:     make(chan *delivery, cfg.QueueSize),
		ready:     make(chan *delivery),
		wake:      make(chan struct{}, 1),
	}
}

// Send queues one delivery of ev to rawURL and returns at once. A zero
// ev.ID or ev.CreatedAt is filled in (use NewEvent to know the ID
// beforehand). It returns ErrNoSecret, ErrBadURL or ErrPrivateAddress
// (wrapped) for a delivery that can never be made; ErrQueueFull when
// QueueSize events are pending, and ErrClosed after Run has stopped, in which
// two cases the event is dropped, counted and logged.
//
// Each attempt POSTs the event as JSON with Content-Type application/json,
// X-Signature signed at the time of the attempt, X-Webhook-Id: ev.ID and
// User-Agent voiceotp. A 2xx answer delivers it. A transport error, a 408,
// 429 or 5xx, or any other non-2xx answer that is not a 4xx, is retried
// after a backoff (longer if the answer carries Retry-After), up to
// MaxAttempts in all. Any other 4xx ends it at once: the receiver has said
// that repeating the request will not help.
func (s *Sender) Send(rawURL string, ev Event) error {
	if len(s.cfg.Secret) == 0 {
		return ErrNoSecret
	}
	u, err := checkURL(rawURL, s.cfg.AllowPrivate)
	if err != nil {
		return err
	}
	if ev.ID == "" {
		ev.ID = NewEventID()
	}
	if ev.CreatedAt.IsZero() {
		ev.CreatedAt = s.clock.Now()
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("webhook: marshalling event %s: %w", ev.ID, err)
	}
	d := &delivery{url: u.String(), host: u.Host, id: ev.ID, typ: ev.Type, body: body}

	s.mu.Lock()
	switch {
	case s.closed:
		err = ErrClosed
	case s.pending >= s.cfg.QueueSize:
		err = ErrQueueFull
	default:
		s.pending++
		s.queue <- d // never blocks: the queue holds at most pending-1 < QueueSize
		s.sent.Add(1)
	}
	s.mu.Unlock()
	if err == nil {
		return nil
	}
	s.dropped.Add(1)
	s.log(slog.LevelWarn, "webhook dropped", d, slog.String("error", err.Error()))
	return err
}

// Run delivers events until ctx is done, with Workers requests in flight at
// most and one goroutine that releases retries when they are due. When ctx
// is done, requests in flight are aborted, and those events, the queued ones
// and those waiting to retry are dropped (counted in Stats.Dropped and
// logged once); later Sends return ErrClosed. Run returns after all its
// goroutines have ended: nil, or an error if it was called before.
func (s *Sender) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("webhook: Run called twice")
	}
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Go(func() { s.work(ctx) })
	}
	wg.Go(func() { s.schedule(ctx) })
	wg.Wait()
	s.drain()
	return nil
}

// Stats returns a snapshot of the counters. It is safe for concurrent use.
func (s *Sender) Stats() Stats {
	s.mu.Lock()
	pending := s.pending
	s.mu.Unlock()
	return Stats{
		Sent:      s.sent.Load(),
		Delivered: s.delivered.Load(),
		Failed:    s.failed.Load(),
		Dropped:   s.dropped.Load(),
		Retries:   s.retried.Load(),
		Pending:   pending,
	}
}

func (s *Sender) work(ctx context.Context) {
	for {
		var d *delivery
		select {
		case d = <-s.queue:
		case d = <-s.ready:
		case <-ctx.Done():
			return
		}
		s.attempt(ctx, d)
	}
}

// schedule hands each retry to a worker when it is due.
func (s *Sender) schedule(ctx context.Context) {
	for {
		var (
			next  *delivery
			timer <-chan time.Time
		)
		s.mu.Lock()
		if len(s.retries) > 0 {
			if wait := s.retries[0].due.Sub(s.clock.Now()); wait <= 0 {
				next = heap.Pop(&s.retries).(*delivery)
			} else {
				timer = s.clock.After(wait)
			}
		}
		s.mu.Unlock()

		if next != nil {
			select {
			case s.ready <- next:
			case <-ctx.Done():
				s.mu.Lock()
				heap.Push(&s.retries, next) // for drain to count
				s.mu.Unlock()
				return
			}
			continue
		}
		select {
		case <-timer: // nil, and so never ready, when nothing waits
		case <-s.wake:
		case <-ctx.Done():
			return
		}
	}
}

// attempt makes one attempt at d and decides what follows.
func (s *Sender) attempt(ctx context.Context, d *delivery) {
	d.attempt++
	if d.attempt > 1 {
		s.retried.Add(1)
	}
	status, retryAfter, err := s.post(ctx, d)
	switch {
	case err == nil && status >= 200 && status < 300:
		s.finish(d, resultDelivered, slog.LevelDebug, "webhook delivered", slog.Int("http_status", status))
	case ctx.Err() != nil:
		s.finish(d, resultDropped, slog.LevelWarn, "webhook dropped at shutdown")
	case errors.Is(err, ErrPrivateAddress), errors.Is(err, ErrBadURL):
		s.finish(d, resultFailed, slog.LevelWarn, "webhook failed", slog.String("error", err.Error()))
	case err == nil && !retryable(status):
		s.finish(d, resultFailed, slog.LevelWarn, "webhook failed", slog.Int("http_status", status))
	case d.attempt >= s.cfg.MaxAttempts:
		s.finish(d, resultFailed, slog.LevelWarn, "webhook failed after last attempt", failAttrs(status, err)...)
	default:
		wait := s.backoff(d.attempt, retryAfter)
		s.log(slog.LevelInfo, "webhook will retry", d, append(failAttrs(status, err), slog.Duration("retry_in", wait))...)
		s.mu.Lock()
		d.due = s.clock.Now().Add(wait)
		heap.Push(&s.retries, d)
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

func failAttrs(status int, err error) []slog.Attr {
	if err != nil {
		return []slog.Attr{slog.String("error", err.Error())}
	}
	return []slog.Attr{slog.Int("http_status", status)}
}

// retryable says whether a non-2xx status may change on a later attempt.
func retryable(status int) bool {
	if status >= 400 && status < 500 {
		return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests
	}
	return true
}

// post sends one attempt. The error it returns never holds the URL, which
// may carry credentials.
func (s *Sender) post(ctx context.Context, d *delivery) (status int, retryAfter time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body))
	if err != nil {
		return 0, 0, ErrBadURL
	}
	now := s.clock.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("X-Webhook-Id", d.id)
	req.Header.Set(SignatureHeader, Sign(s.cfg.Secret, now, d.body))
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, 0, err
	}
	// Drain a little so the connection can be reused; the body is not read otherwise.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After"), now), nil
}

// backoff is the wait after the attempt-th attempt failed: BaseDelay doubled
// per attempt up to MaxDelay, jittered, and at least retryAfter (up to MaxDelay).
func (s *Sender) backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := s.cfg.BaseDelay
	for i := 1; i < attempt && d < s.cfg.MaxDelay; i++ {
		d *= 2
	}
	d = s.jitter(min(d, s.cfg.MaxDelay))
	if retryAfter > d {
		d = min(retryAfter, s.cfg.MaxDelay)
	}
	return d
}

// equalJitter returns a random duration between d/2 and d, so that senders
// that failed together do not retry together, yet never retry at once.
func equalJitter(d time.Duration) time.Duration {
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(d-half+1)
}

// parseRetryAfter reads a Retry-After header (RFC 9110 §10.2.3): seconds, or
// an HTTP date. It returns 0 when absent or unusable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 32); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func (s *Sender) finish(d *delivery, r result, level slog.Level, msg string, attrs ...slog.Attr) {
	s.mu.Lock()
	s.pending--
	s.mu.Unlock()
	switch r {
	case resultDelivered:
		s.delivered.Add(1)
	case resultFailed:
		s.failed.Add(1)
	case resultDropped:
		s.dropped.Add(1)
	}
	s.log(level, msg, d, attrs...)
	if s.onDone != nil {
		s.onDone(d.id, r)
	}
}

// drain runs after every goroutine of Run has ended: it closes the Sender
// and drops what is left.
func (s *Sender) drain() {
	s.mu.Lock()
	s.closed = true
	var left []*delivery
	for empty := false; !empty; {
		select {
		case d := <-s.queue:
			left = append(left, d)
		default:
			empty = true
		}
	}
	left = append(left, s.retries...)
	s.retries = nil
	s.mu.Unlock()
	if s.ownClient {
		s.cfg.Client.CloseIdleConnections()
	}
	if len(left) > 0 {
		s.cfg.Logger.LogAttrs(context.Background(), slog.LevelWarn, "webhooks dropped at shutdown",
			slog.Int("count", len(left)))
	}
	for _, d := range left {
		s.finish(d, resultDropped, slog.LevelDebug, "webhook dropped at shutdown")
	}
}

func (s *Sender) log(level slog.Level, msg string, d *delivery, attrs ...slog.Attr) {
	all := append([]slog.Attr{
		slog.String("event_id", d.id),
		slog.String("event_type", d.typ),
		slog.String("url_host", d.host),
		slog.Int("attempt", d.attempt),
	}, attrs...)
	s.cfg.Logger.LogAttrs(context.Background(), level, msg, all...)
}

// Accepts reports whether Send would accept rawURL, so a caller can refuse
// a callback URL when it is registered rather than when the first event
// fails. It returns nil, ErrNoSecret, ErrBadURL or ErrPrivateAddress.
func (s *Sender) Accepts(rawURL string) error {
	if len(s.cfg.Secret) == 0 {
		return ErrNoSecret
	}
	_, err := checkURL(rawURL, s.cfg.AllowPrivate)
	return err
}

// checkURL accepts absolute http and https URLs, and refuses IP literals that
// are not public unless allowPrivate.
func checkURL(raw string, allowPrivate bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, ErrBadURL
	}
	if !allowPrivate {
		if a, err := netip.ParseAddr(u.Hostname()); err == nil && !isPublic(a) {
			return nil, ErrPrivateAddress
		}
	}
	return u, nil
}

// isPublic says whether a is a unicast address on the public internet: not
// loopback, private (RFC 1918, RFC 4193), link-local (which holds cloud
// metadata services), shared CGNAT space (RFC 6598), multicast, unspecified,
// or reserved for benchmarks and documentation.
func isPublic(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsUnspecified() || a.IsMulticast() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range [...]netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("192.0.0.0/24"),
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("198.18.0.0/15"),
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("240.0.0.0/4"),
		netip.MustParsePrefix("64:ff9b::/96"),
		netip.MustParsePrefix("2001:db8::/32"),
	} {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// defaultClient is the Client used when Config has none.
func defaultClient(allowPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		// Checked on the resolved address of every connection, so a name that
		// resolves inward (or is re-pointed there) is refused too.
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !isPublic(ap.Addr()) {
				return ErrPrivateAddress
			}
			return nil
		}
	}
	return &http.Client{
		Timeout: DefaultTimeout,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		// A redirect is answered as it stands (non-2xx, so retried or failed):
		// following it would turn the POST into a GET and could lead inward.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// clock is the time source of a Sender; tests inject a fake one. Both
// methods are safe for concurrent use.
type clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// retryHeap orders deliveries waiting to retry by due time.
type retryHeap []*delivery

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(*delivery)) }
func (h *retryHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return d
}
