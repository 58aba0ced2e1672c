package calls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/policy"
	"github.com/voiceotp/voiceotp/webhook"
)

// NumberSlots are the per-number limits every node must agree on. store/memory's Counters (one process)
// and store/redis's Counters (shared by all nodes) implement it. A holder names one call:
// "<verification>/<call>".
type NumberSlots interface {
	// AcquireNumber makes holder the one live call to number for ttl, or reports false when another
	// holder has it; the same holder renews.
	AcquireNumber(ctx context.Context, number, holder string, ttl time.Duration) (bool, error)
	// ReleaseNumber frees the slot if holder has it, and does nothing otherwise.
	ReleaseNumber(ctx context.Context, number, holder string) error
	// NumberHolder returns the slot's holder ("" when free) and its time left.
	NumberHolder(ctx context.Context, number string) (holder string, left time.Duration, err error)
	// Count records one event under key unless limit events were recorded under it within window;
	// then it reports false and how long until the oldest leaves the window.
	Count(ctx context.Context, key string, window time.Duration, limit int) (bool, time.Duration, error)
}

// Expiries is an index of verifications by the time they expire, shared by every node, so that an
// expiry is applied and announced when it happens, once. store/memory's Expiries and store/redis's
// Expiries implement it.
type Expiries interface {
	// Add records that verification id expires at at.
	Add(ctx context.Context, id string, at time.Time) error
	// Due returns up to n ids whose time is at or before now, earliest first. They stay in the index
	// until taken.
	Due(ctx context.Context, now time.Time, n int) ([]string, error)
	// Take removes id and reports whether this call removed it: of any number of callers (on any node)
	// that take one id, exactly one gets true.
	Take(ctx context.Context, id string) (bool, error)
}

// Signals carries the news that a verification stopped being pending to every node, so that the node
// holding its call stops it. store/redis's Signals (pub/sub) implements it; with one process (the
// memory store) none is needed. Delivery is at most once: a node that was disconnected misses what was
// published meanwhile (see the package documentation for what covers that).
type Signals interface {
	// Publish tells every subscribed node that verification id ended with status.
	Publish(ctx context.Context, id, status string) error
	// Subscribe calls fn for every published end, serially, until ctx is done, and then returns nil.
	// It returns an error if it cannot subscribe at all.
	Subscribe(ctx context.Context, fn func(id, status string)) error
}

// Config is the configuration of a Calls. Zero values mean the documented defaults.
type Config struct {
	// Node names this process in the calls it claims (otp.Call.Node); with several nodes on one store
	// each needs its own. If empty, DefaultNode ("local").
	Node string
	// MaxCallLength bounds one call from its claim to its end: every ring timeout, the talk time and
	// the hang-up. A job delivered again after the node that claimed its call died is waited out for this
	// long from the claim, never dialled again, and then recorded failed (node_lost). It is also how long
	// a number's live-call slot lasts if its node dies. If zero, DefaultMaxCallLength (5 minutes).
	MaxCallLength time.Duration
	// SendsPerNumber is how many starts one number may get within SendsWindow; more are refused with
	// ErrTooManySends. A start that joins a call in progress counts too: the limit is on requests, as a
	// defence against call bombing. It needs NumberSlots; 0 means no limit.
	SendsPerNumber int
	// SendsWindow is the sliding window of SendsPerNumber. If zero, DefaultSendsWindow (1 hour).
	SendsWindow time.Duration
	// WatchInterval is how often this node reads, in the store, the verification of each call it holds
	// live, to stop a call whose verification ended while the news of it was lost. If zero,
	// DefaultWatchInterval (5 s); if negative, never.
	WatchInterval time.Duration
	// ExpiryInterval is how often due expiries are looked for in Expiries. If zero,
	// DefaultExpiryInterval (1 s).
	ExpiryInterval time.Duration
	// Logger receives one line per start, call result, check refusal and stop; never a code. If nil,
	// logs are discarded.
	Logger *slog.Logger
	// GuardWebhookURL receives the signed policy.prefix_paused webhook when the conversion guard pauses
	// a number range or a country (policy.Guard); empty sends none.
	GuardWebhookURL string
	// ShowNumbers writes phone numbers in clear in log lines; by default they are masked
	// (policy.MaskNumber: "+1555***4567").
	ShowNumbers bool
	// Registry gets the metrics (ivr_calls_total, ivr_active_calls, ivr_call_setup_seconds,
	// ivr_call_queue_seconds, ivr_verifications_started_total, ivr_checks_total,
	// ivr_calls_stopped_total). If nil, a private registry.
	Registry prometheus.Registerer
}

// Defaults of Config.
const (
	DefaultNode           = "local"
	DefaultMaxCallLength  = 5 * time.Minute
	DefaultSendsWindow    = time.Hour
	DefaultWatchInterval  = 5 * time.Second
	DefaultExpiryInterval = time.Second
)

func (c Config) withDefaults() (Config, error) {
	if c.Node == "" {
		c.Node = DefaultNode
	}
	if c.MaxCallLength <= 0 {
		c.MaxCallLength = DefaultMaxCallLength
	}
	if c.SendsWindow <= 0 {
		c.SendsWindow = DefaultSendsWindow
	}
	if c.SendsPerNumber < 0 {
		return c, errors.New("calls: SendsPerNumber is negative")
	}
	if c.WatchInterval == 0 {
		c.WatchInterval = DefaultWatchInterval
	}
	if c.ExpiryInterval <= 0 {
		c.ExpiryInterval = DefaultExpiryInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	return c, nil
}

// Calls runs the life of verifications and their calls; it is the queue's [dispatch.Handler]. It is
// safe for concurrent use.
type Calls struct {
	svc   *otp.Service
	queue dispatch.Queue
	cfg   Config // defaults applied; read-only
	log   *slog.Logger
	m     *metrics
	now   func() time.Time

	policy   *policy.Policy    // nil: any E.164 number, no velocity limits, any caller ID
	guard    policy.GuardStore // nil: no conversion guard
	slots    NumberSlots       // nil: no per-number limits
	expiries Expiries          // nil: expiries are applied on read and by live calls' timers only
	signals  Signals           // nil: this process is the only node
	hooks    *webhook.Sender   // nil: no webhooks

	live liveCalls
}

var _ dispatch.Handler = (*Calls)(nil)

// Option configures a Calls with an optional dependency.
type Option func(*Calls)

// WithNumberSlots enforces the per-number limits with s: one live call per number (a start while another
// verification's call to it is live is refused with ErrNumberBusy, and Prepare never dials a number
// whose slot is taken) and Config.SendsPerNumber. Without it there are no per-number limits beyond
// otp's one pending verification per number.
func WithNumberSlots(s NumberSlots) Option { return func(c *Calls) { c.slots = s } }

// WithPolicy decides with p which numbers may be called (countries, number types, prefixes), which
// caller IDs may be presented, and how many starts are allowed (its velocity limits, counted with the
// NumberSlots' Count, so it needs WithNumberSlots when it has limits). Without it any E.164 number may
// be called, with any caller ID asked for.
func WithPolicy(p *policy.Policy) Option { return func(c *Calls) { c.policy = p } }

// WithGuardStore keeps the conversion guard's counts and pauses (the policy's Guard) in s, shared by
// every node on Redis. Without it the guard is off whatever the policy says.
func WithGuardStore(s policy.GuardStore) Option { return func(c *Calls) { c.guard = s } }

// WithExpiries indexes every verification's expiry in e, and sweeps it every Config.ExpiryInterval, so
// that each expiry is applied when it happens and announced once (verification.expired). Without it an
// expiry is applied when the verification is next read, and by the timer of its live call, and no
// verification.expired webhook is sent.
func WithExpiries(e Expiries) Option { return func(c *Calls) { c.expiries = e } }

// WithSignals publishes every end of a verification through s and stops the live calls of those that
// other nodes ended. Without it only this node's calls are stopped, which is all there is with one
// process.
func WithSignals(s Signals) Option { return func(c *Calls) { c.signals = s } }

// WithWebhooks sends call events and status changes to each verification's callback_url through h;
// without it no webhooks are sent.
func WithWebhooks(h *webhook.Sender) Option { return func(c *Calls) { c.hooks = h } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(c *Calls) { c.now = now } }

// New returns a Calls that keeps verifications with svc and queues their calls on q. Both are required.
func New(svc *otp.Service, q dispatch.Queue, cfg Config, opts ...Option) (*Calls, error) {
	if svc == nil || q == nil {
		return nil, errors.New("calls: an otp service and a queue are required")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Calls{svc: svc, queue: q, cfg: cfg, log: cfg.Logger, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	if cfg.SendsPerNumber > 0 && c.slots == nil {
		return nil, errors.New("calls: SendsPerNumber needs WithNumberSlots")
	}
	if c.m, err = newMetrics(cfg.Registry); err != nil {
		return nil, err
	}
	c.live.init()
	return c, nil
}

// Run places the queued calls with caller until ctx is done: it runs the queue with c as its Handler,
// and, beside it, the expiry sweeper, the watch of live calls and the subscription to other nodes'
// stops. When ctx is done the queue drains (see dispatch.Queue.Run); the others run until it has, so a
// call still draining can be stopped. Run returns the queue's error, or nil.
func (c *Calls) Run(ctx context.Context, caller dispatch.Caller) error {
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, run := range []func(context.Context){c.sweepExpiries, c.watchLive, c.subscribe} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(bg)
		}()
	}
	err := c.queue.Run(ctx, caller, c)
	stop()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("calls: %w", err)
	}
	return nil
}

// storeTimeout bounds a store write made on behalf of a running call or a background loop.
const storeTimeout = 5 * time.Second
