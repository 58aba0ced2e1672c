// Package api is the HTTP face of the voice OTP server: the JSON API that backends call to start,
// follow, check and cancel verifications, and the health, metrics and trunk endpoints.
//
// It owns HTTP only: request decoding and validation (numbers are checked as E.164 here, at the edge,
// before anything is queued), API-key authentication, idempotency, the mapping of errors to statuses
// and the shape of every response. What a request does is the business of [Verifications] (package
// calls): the per-number limits, the verification, its queue and its calls. It imports nothing of the
// call path (no callflow, no sip). Names mirror Twilio Verify where they fit.
//
// The code is write-only: no response, log line or error produced here contains it.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/voiceotp/voiceotp/calls"
	"github.com/voiceotp/voiceotp/otp"
)

// Verifications is what the API serves; *calls.Calls implements it. Its errors are those of package
// calls and package otp, which the API maps to statuses.
type Verifications interface {
	// Screen decides, with no I/O, whether a start's number and caller ID are allowed (a
	// *calls.Refusal, or calls.ErrInvalidNumber when not).
	Screen(req calls.StartRequest) (calls.Screened, error)
	// StartScreened starts a verification that Screen let through.
	StartScreened(ctx context.Context, s calls.Screened) (v *otp.Verification, created bool, err error)
	Get(ctx context.Context, id string) (*otp.Verification, error)
	Check(ctx context.Context, id, code string) (*otp.Verification, error)
	Cancel(ctx context.Context, id string) (*otp.Verification, error)
	// Resume lifts the conversion guard's pause of a number range or country.
	Resume(ctx context.Context, r, apiKeyID string) (wasPaused bool, err error)
	// CheckCallback reports whether webhooks can be delivered to a callback URL.
	CheckCallback(rawURL string) error
}

// Idempotency keeps the records of requests made with an Idempotency-Key; every otp.Store implements it.
type Idempotency interface {
	ClaimIdempotency(ctx context.Context, key string, rec otp.IdempotencyRecord, ttl time.Duration) (*otp.IdempotencyRecord, error)
	CompleteIdempotency(ctx context.Context, key string, rec otp.IdempotencyRecord, ttl time.Duration) error
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
	// Metrics is served at GET /metrics; nil => an empty registry.
	Metrics prometheus.Gatherer
	// Trunks, if set, reports the trunks' state for GET /v1/trunks; nil => 404.
	Trunks func() []Trunk
	// Logger receives request failures; nil => discarded.
	Logger *slog.Logger
}

// Server serves the API. It is safe for concurrent use.
type Server struct {
	v    Verifications
	idem Idempotency
	cfg  Config
	keys [][32]byte // SHA-256 of each API key, compared in constant time
	log  *slog.Logger
	mux  *http.ServeMux
}

// New returns a Server over v, with idempotency records kept in idem; both are required.
func New(v Verifications, idem Idempotency, cfg Config) (*Server, error) {
	if v == nil || idem == nil {
		return nil, errors.New("api: the verifications and an idempotency store are required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 10
	}
	if cfg.IdempotencyTTL <= 0 {
		cfg.IdempotencyTTL = 24 * time.Hour
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{v: v, idem: idem, cfg: cfg, log: cfg.Logger}
	for _, k := range cfg.APIKeys {
		if strings.TrimSpace(k) == "" {
			return nil, errors.New("api: an API key is empty")
		}
		s.keys = append(s.keys, sha256.Sum256([]byte(k)))
	}
	s.routes()
	return s, nil
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
	s.mux.Handle("POST /v1/policy/pauses/{range}/resume", s.authed(s.resume))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Metrics, promhttp.HandlerOpts{}))
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
			id, valid := s.keyID(token)
			if !ok || !valid {
				w.Header().Set("WWW-Authenticate", `Bearer realm="voiceotp"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "a valid API key is required: Authorization: Bearer <key>")
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), keyIDKey{}, id))
		}
		h(w, r)
	})
}

// keyID checks token against every API key in constant time and returns the key's id: the first 12
// hex digits of its SHA-256, which names it in logs and limits without revealing it.
func (s *Server) keyID(token string) (string, bool) {
	sum := sha256.Sum256([]byte(token))
	ok := 0
	for _, k := range s.keys {
		ok |= subtle.ConstantTimeCompare(sum[:], k[:])
	}
	return hex.EncodeToString(sum[:6]), ok == 1
}

// keyIDKey is the request context key of the authenticated API key's id.
type keyIDKey struct{}

// apiKeyID returns the id of the API key that authenticated r, or "" without authentication.
func apiKeyID(ctx context.Context) string {
	id, _ := ctx.Value(keyIDKey{}).(string)
	return id
}

// Trunk is one trunk in GET /v1/trunks.
type Trunk struct {
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
	if s.cfg.Trunks == nil {
		writeError(w, http.StatusNotFound, "not_found", "this server has no trunk status")
		return
	}
	out := s.cfg.Trunks()
	if out == nil {
		out = []Trunk{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"trunks": out})
}

// resume handles POST /v1/policy/pauses/{range}/resume: the operator lifts a pause of the conversion
// guard early. {range} is a number range ("+155512", or %2B155512) or a country ("US").
func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	rng := r.PathValue("range")
	was, err := s.v.Resume(r.Context(), rng, apiKeyID(r.Context()))
	switch {
	case errors.Is(err, calls.ErrInvalidRange):
		writeError(w, http.StatusBadRequest, "invalid_range", "the range is '+' and digits (+155512) or a two-letter country code")
	case err != nil:
		s.log.Error("resume failed", slog.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the pause could not be lifted; retry later")
	case !was:
		writeError(w, http.StatusNotFound, "not_paused", "this range is not paused")
	default:
		writeJSON(w, http.StatusOK, map[string]any{"range": rng, "resumed": true})
	}
}
