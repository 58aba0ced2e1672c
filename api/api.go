// Package api is the HTTP face of the voice OTP server: the JSON API that
// backends call to start, follow, check and cancel verifications, the
// health and metrics endpoints, and the bridge that turns call events into
// stored call records and signed webhooks.
//
// It owns request validation (numbers are checked as E.164 here, at the
// edge, before anything is queued), API-key authentication, idempotency,
// the per-number limits applied to starts and dials (through [Limits]:
// one live call per number, sends per window), claiming each dial before
// it leaves (so a job a durable queue delivers twice is dialled once),
// error mapping and the shape of every response. It does not own the
// verification rules (package otp), the queue (package dispatch), or the
// call itself (package callflow). Names mirror Twilio Verify where they fit.
//
// The code is write-only: no response, log line, metric, webhook or error
// produced here contains it. Only Prepare reads it, to hand it to the call.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/voiceotp/voiceotp/webhook"
	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/sip"
)

// Enqueuer is where started calls go; *dispatch.Memory implements it.
type Enqueuer interface {
	Enqueue(ctx context.Context, j dispatch.Job) error
}

// Config is the API's configuration. Zero values mean the documented defaults.
type Config struct {
	// APIKeys are the accepted bearer tokens. Empty means no authentication,
	// which the caller must only allow on a loopback listener.
	APIKeys []string
	// MaxBodyBytes limits request bodies; 0 => 16 KiB.
	MaxBodyBytes int64
	// IdempotencyTTL is how long an Idempotency-Key is remembered; 0 => 24h.
	IdempotencyTTL time.Duration
	// AllowHTTPCallbacks allows http:// callback URLs; by default only
	// https:// is accepted. Which addresses are allowed is the webhook
	// sender's rule (public addresses unless it allows private ones).
	AllowHTTPCallbacks bool
	// Node names this process in the calls it claims (otp.Call.Node); with
	// several nodes on one store each needs its own. If empty, "local".
	Node string
	// MaxCallLength bounds one call from its claim to its end: every ring
	// timeout, the talk time and the hang-up. A job delivered again after
	// the node that claimed its call died is waited out for this long from
	// the claim, never dialled again, and then recorded failed (node_lost).
	// It is also how long a number's live-call slot lasts if its node dies.
	// If zero, 5 minutes.
	MaxCallLength time.Duration
	// SendsPerNumber is how many starts one number may get within
	// SendsWindow; more are refused with 429 and Retry-After. A start that
	// joins a call in progress counts too: the limit is on requests, as a
	// defence against call bombing. It needs WithLimits; 0 means no limit.
	SendsPerNumber int
	// SendsWindow is the sliding window of SendsPerNumber. If zero, 1 hour.
	SendsWindow time.Duration
}

// Limits are the per-number limits that every node must agree on; the
// Redis store's Limits (shared by all nodes) and the memory store's (one
// process) implement it. A holder names one call: "<verification>/<call>".
type Limits interface {
	// AcquireNumber makes holder the one live call to number for ttl, or
	// reports false when another holder has it; the same holder renews.
	AcquireNumber(ctx context.Context, number, holder string, ttl time.Duration) (bool, error)
	// ReleaseNumber frees the slot if holder has it, and does nothing otherwise.
	ReleaseNumber(ctx context.Context, number, holder string) error
	// NumberHolder returns the slot's holder ("" when free) and its time left.
	NumberHolder(ctx context.Context, number string) (holder string, left time.Duration, err error)
	// CountSend records one send unless limit sends happened within window;
	// then it reports false and how long until the oldest leaves the window.
	CountSend(ctx context.Context, number string, window time.Duration, limit int) (bool, time.Duration, error)
}

// Defaults of Config.
const (
	DefaultNode          = "local"
	DefaultMaxCallLength = 5 * time.Minute
	DefaultSendsWindow   = time.Hour
)

// Server serves the API and implements dispatch.Handler for the calls it
// queues. It is safe for concurrent use.
type Server struct {
	svc   *otp.Service
	cfg   Config
	keys  [][32]byte // SHA-256 of each API key, compared in constant time
	hooks *webhook.Sender
	log   *slog.Logger
	now   func() time.Time
	m     *metrics
	mux   *http.ServeMux
	// trunks reports the trunks' state for GET /v1/trunks; nil => 404.
	trunks func() []sip.TrunkStatus
	// limits, if set, enforce one live call and SendsPerNumber per number.
	limits Limits

	mu    sync.RWMutex // guards queue
	queue Enqueuer
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithWebhooks sends call events and status changes to each verification's
// callback_url through h; without it no webhooks are sent.
func WithWebhooks(h *webhook.Sender) Option { return func(s *Server) { s.hooks = h } }

// WithRegistry registers the server's metrics on reg instead of a new
// private registry; /metrics serves reg either way.
func WithRegistry(reg *prometheus.Registry) Option {
	return func(s *Server) { s.m = newMetrics(reg) }
}

// WithTrunks serves GET /v1/trunks from status (e.g. (*sip.Trunks).Status).
func WithTrunks(status func() []sip.TrunkStatus) Option {
	return func(s *Server) { s.trunks = status }
}

// WithLimits enforces the per-number limits with l: one live call per
// number (a start while another verification's call to it is live is
// refused with 429, and Prepare never dials a number whose slot is taken)
// and Config.SendsPerNumber. Without it there are no per-number limits
// beyond otp's one pending verification per number.
func WithLimits(l Limits) Option { return func(s *Server) { s.limits = l } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// New returns a Server over svc. Attach the queue with SetQueue before
// serving: the queue needs the Server as its Handler, so it is made after.
func New(svc *otp.Service, cfg Config, opts ...Option) (*Server, error) {
	if svc == nil {
		return nil, errors.New("api: an otp service is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 10
	}
	if cfg.IdempotencyTTL <= 0 {
		cfg.IdempotencyTTL = 24 * time.Hour
	}
	if cfg.Node == "" {
		cfg.Node = DefaultNode
	}
	if cfg.MaxCallLength <= 0 {
		cfg.MaxCallLength = DefaultMaxCallLength
	}
	if cfg.SendsWindow <= 0 {
		cfg.SendsWindow = DefaultSendsWindow
	}
	if cfg.SendsPerNumber < 0 {
		return nil, errors.New("api: SendsPerNumber is negative")
	}
	s := &Server{svc: svc, cfg: cfg, log: slog.New(slog.DiscardHandler), now: time.Now}
	for _, k := range cfg.APIKeys {
		if strings.TrimSpace(k) == "" {
			return nil, errors.New("api: an API key is empty")
		}
		s.keys = append(s.keys, sha256.Sum256([]byte(k)))
	}
	for _, o := range opts {
		o(s)
	}
	if s.m == nil {
		s.m = newMetrics(prometheus.NewRegistry())
	}
	if cfg.SendsPerNumber > 0 && s.limits == nil {
		return nil, errors.New("api: SendsPerNumber needs WithLimits")
	}
	s.routes()
	return s, nil
}

// SetQueue attaches the queue that started calls go to.
func (s *Server) SetQueue(q Enqueuer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = q
}

func (s *Server) enqueuer() Enqueuer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.queue
}

// Handler returns the HTTP handler of the whole API.
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	s.mux.Handle("POST /v1/verifications", s.authed(s.start))
	s.mux.Handle("GET /v1/verifications/{id}", s.authed(s.get))
	s.mux.Handle("POST /v1/verifications/{id}/check", s.authed(s.check))
	s.mux.Handle("POST /v1/verifications/{id}/cancel", s.authed(s.cancel))
	s.mux.Handle("GET /v1/trunks", s.authed(s.listTrunks))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})
}

// authed requires a valid bearer token when API keys are configured. The
// token is compared in constant time against every key.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.keys) > 0 {
			token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || !s.validKey(token) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="voiceotp"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "a valid API key is required: Authorization: Bearer <key>")
				return
			}
		}
		h(w, r)
	})
}

func (s *Server) validKey(token string) bool {
	sum := sha256.Sum256([]byte(token))
	ok := 0
	for _, k := range s.keys {
		ok |= subtle.ConstantTimeCompare(sum[:], k[:])
	}
	return ok == 1
}

// trunkView is one trunk in GET /v1/trunks.
type trunkView struct {
	Name            string     `json:"name"`
	URI             string     `json:"uri"`
	Transport       string     `json:"transport"`
	State           string     `json:"state"` // up | down | unknown (not probed)
	RTTMS           float64    `json:"rtt_ms,omitempty"`
	LastProbe       *time.Time `json:"last_probe,omitempty"`
	Register        bool       `json:"register"`
	Registered      bool       `json:"registered"`
	RegisterExpires *time.Time `json:"register_expires,omitempty"`
	ActiveChannels  int        `json:"active_channels"`
	LastStatus      int        `json:"last_sip_status,omitempty"`
	LastError       string     `json:"last_error,omitempty"`
}

func (s *Server) listTrunks(w http.ResponseWriter, r *http.Request) {
	if s.trunks == nil {
		writeError(w, http.StatusNotFound, "not_found", "this server has no trunk status")
		return
	}
	out := []trunkView{}
	for _, t := range s.trunks() {
		v := trunkView{Name: t.Name, URI: t.URI, Transport: string(t.Transport), State: "unknown",
			Register: t.Register, Registered: t.Registered, ActiveChannels: t.Active,
			LastStatus: t.LastStatus, LastError: t.LastError}
		if t.Probed {
			v.State = "down"
			if t.Up {
				v.State = "up"
			}
			v.RTTMS = float64(t.RTT.Microseconds()) / 1000
			v.LastProbe = timePtr(t.LastProbe)
		}
		if t.Registered {
			v.RegisterExpires = timePtr(t.RegisterExpires)
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"trunks": out})
}
