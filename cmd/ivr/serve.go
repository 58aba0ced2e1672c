package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/voiceotp/voiceotp/api"
	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/calls"
	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/dispatch/streams"
	"github.com/voiceotp/voiceotp/media"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/policy"
	"github.com/voiceotp/voiceotp/prompts"
	"github.com/voiceotp/voiceotp/sip"
	"github.com/voiceotp/voiceotp/store/memory"
	redisstore "github.com/voiceotp/voiceotp/store/redis"
	"github.com/voiceotp/voiceotp/webhook"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
)

// cmdServe runs the HTTP API and the call dispatcher until SIGINT/SIGTERM.
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := defaultServeConfig()
	if _, err := loadConfig("ivr serve", &cfg, args, stderr, os.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "ivr serve: %v\n", err)
		return 2
	}
	logger, err := newLogger(cfg.Log.Format, cfg.Log.Level, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "ivr serve: %v\n", err)
		return 2
	}
	a, err := newApp(cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "ivr serve: %v\n", err)
		return 2
	}
	logger.Info("serving", slog.String("api", a.apiAddr()), slog.String("sip", a.ua.LocalAddr().String()),
		slog.String("trunk", cfg.Trunk), slog.Bool("auth", len(cfg.APIKeys) > 0),
		slog.String("store", a.back.kind()), slog.String("node", a.back.node))
	if err := a.run(ctx); err != nil {
		fmt.Fprintf(stderr, "ivr serve: %v\n", err)
		return 1
	}
	return 0
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log.level: want debug, info, warn or error, not %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log.format: want text or json, not %q", format)
}

// app is one running server: SIP UA, call runner, store, queue, the life
// of calls, webhooks and the HTTP API. run owns all their goroutines.
type app struct {
	cfg    serveConfig
	log    *slog.Logger
	ua     *sip.UA
	trunks *sip.Trunks
	runner *callflow.Runner
	calls  *calls.Calls
	queue  dispatch.Queue
	back   *backend
	hooks  *webhook.Sender
	ln     net.Listener
	server *http.Server
	mux    *media.Mux // the shared RTP lanes in media.mode dense; nil otherwise
}

// settings are the parts of serveConfig that are validated and converted
// before anything is built.
type settings struct {
	policy   *policy.Policy
	trunks   []sip.TrunkConfig
	call     callflow.Config
	dense    bool
	dispatch dispatch.Config
}

// newApp validates cfg (errors name the field) and builds the server, one
// way: store → otp → queue → calls → api. The SIP and HTTP sockets are bound
// here, so their addresses are known.
func newApp(cfg serveConfig, logger *slog.Logger) (*app, error) {
	set, err := validateServe(cfg, logger)
	if err != nil {
		return nil, err
	}
	back, err := newBackend(cfg)
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, log: logger, back: back}
	if err := a.build(set); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// validateServe checks the fields that need no socket and no store.
func validateServe(cfg serveConfig, logger *slog.Logger) (settings, error) {
	var set settings
	var err error
	if set.trunks, err = trunkConfigs(cfg, os.Getenv); err != nil {
		return set, err
	}
	listen, err := netip.ParseAddrPort(cfg.Listen)
	if err != nil {
		return set, fmt.Errorf("listen: want IP:port, not %q", cfg.Listen)
	}
	if len(cfg.APIKeys) == 0 && !listen.Addr().IsLoopback() {
		return set, errors.New("api_keys: serving without an API key is refused unless listen is a loopback address")
	}
	if set.policy, err = policyOf(cfg, listen.Addr().IsLoopback()); err != nil {
		return set, err
	}
	if set.call, err = callConfig(cfg); err != nil {
		return set, err
	}
	if set.dense, err = mediaMode(cfg); err != nil {
		return set, err
	}
	if cfg.Limits.SendsPerNumber < 0 {
		return set, errors.New("limits.sends_per_number: must not be negative")
	}
	if cfg.Limits.SendsPerNumber > 0 && cfg.Limits.SendsWindow <= 0 {
		return set, errors.New("limits.sends_window: must be positive")
	}
	set.dispatch, err = dispatchConfig(cfg, logger)
	return set, err
}

// build makes the parts of a in the order they depend on each other; on an
// error the caller closes what was made.
func (a *app) build(set settings) error {
	cfg, logger := a.cfg, a.log
	if err := a.buildCaller(set); err != nil {
		return err
	}
	svc, err := otp.NewService(a.back.store, otp.Config{
		CodeLength: cfg.OTP.CodeLength, AllowShortCodes: cfg.OTP.AllowShortCodes, TTL: cfg.OTP.TTL,
		MaxChecks: cfg.OTP.MaxChecks, MaxCalls: cfg.OTP.MaxCalls,
	})
	if err != nil {
		return fmt.Errorf("otp: %w", err)
	}
	a.hooks = webhook.NewSender(webhook.Config{
		Secret: []byte(cfg.Webhook.Secret), MaxAttempts: cfg.Webhook.MaxAttempts, Logger: logger,
		AllowPrivate: cfg.Webhook.AllowPrivate,
	})
	if u := cfg.Policy.Guard.WebhookURL; u != "" {
		if err := a.hooks.Accepts(u); err != nil {
			return fmt.Errorf("policy.guard.webhook_url: %w", err)
		}
	}
	reg := prometheus.NewRegistry()
	a.queue = a.back.queue(set.dispatch, cfg.Redis.Lease)
	a.calls, err = calls.New(svc, a.queue, calls.Config{
		Node: a.back.node, MaxCallLength: maxCallLength(set.call, len(set.trunks)),
		SendsPerNumber: cfg.Limits.SendsPerNumber, SendsWindow: cfg.Limits.SendsWindow,
		ShowNumbers: !cfg.Log.MaskNumbers, GuardWebhookURL: cfg.Policy.Guard.WebhookURL, Logger: logger, Registry: reg,
	}, append(a.back.callsOptions(a.hooks), calls.WithPolicy(set.policy), calls.WithGuardStore(a.back.counters))...)
	if err != nil {
		return err
	}
	srv, err := api.New(a.calls, a.back.store, api.Config{
		APIKeys: cfg.APIKeys, AllowHTTPCallbacks: cfg.Webhook.AllowHTTP,
		Metrics: reg, Trunks: trunkViews(a.trunks), Logger: logger,
	})
	if err != nil {
		return err
	}
	if err := registerNodeMetrics(reg, a.queue, a.mux); err != nil {
		return err
	}
	return a.listen(srv.Handler())
}

// buildCaller makes what places calls: the SIP UA, the trunks, the dense
// mode's RTP lanes and the call runner.
func (a *app) buildCaller(set settings) error {
	cfg := a.cfg
	catalog, err := prompts.Load("en")
	if err != nil {
		return err
	}
	if a.ua, err = sip.NewUA(sip.Config{
		ListenAddr: cfg.SIP.Listen, AdvertiseHost: cfg.SIP.AdvertiseHost, FromUser: cfg.SIP.FromUser,
		Logger: a.log, Trace: cfg.SIP.Trace,
	}); err != nil {
		return fmt.Errorf("sip: %w", err)
	}
	if a.trunks, err = sip.NewTrunks(a.ua, set.trunks); err != nil {
		return err
	}
	if a.back.redis != nil {
		a.trunks.ShareCPS(a.back.counters) // a trunk's max_cps holds across all nodes
	}
	ccfg := set.call
	if !ccfg.MediaIP.IsValid() {
		ccfg.MediaIP = a.ua.LocalAddr().Addr()
	}
	ropts := []callflow.Option{callflow.WithLogger(a.log)}
	if cfg.Log.MaskNumbers {
		ropts = append(ropts, callflow.WithLogNumber(policy.MaskNumber))
	}
	if set.dense {
		if a.mux, err = media.NewMux(media.MuxConfig{IP: ccfg.MediaIP, Ports: ccfg.Ports, Lanes: cfg.Media.Lanes}); err != nil {
			return fmt.Errorf("media: %w", err)
		}
		ropts = append(ropts, callflow.WithMux(a.mux))
	}
	if a.runner, err = callflow.New(a.trunks, catalog, ccfg, ropts...); err != nil {
		return fmt.Errorf("call: %w", err)
	}
	return nil
}

// listen binds the HTTP API's socket.
func (a *app) listen(h http.Handler) error {
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	a.ln = ln
	a.server = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// close releases what build made, in reverse order; for a server that never ran.
func (a *app) close() {
	if a.ln != nil {
		a.ln.Close()
	}
	if a.mux != nil {
		a.mux.Close()
	}
	if a.ua != nil {
		a.ua.Close()
	}
	a.back.close()
}

// trunkViews reports the trunks' state in the API's shape.
func trunkViews(t *sip.Trunks) func() []api.Trunk {
	return func() []api.Trunk {
		var out []api.Trunk
		for _, s := range t.Status() {
			v := api.Trunk{Name: s.Name, URI: s.URI, Transport: string(s.Transport), State: "unknown",
				Register: s.Register, Registered: s.Registered, ActiveChannels: s.Active,
				LastStatus: s.LastStatus, LastError: s.LastError}
			if s.Probed {
				v.State = "down"
				if s.Up {
					v.State = "up"
				}
				v.RTTMS = float64(s.RTT.Microseconds()) / 1000
				v.LastProbe = timePtr(s.LastProbe)
			}
			if s.Registered {
				v.RegisterExpires = timePtr(s.RegisterExpires)
			}
			out = append(out, v)
		}
		return out
	}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// policyOf builds the destination policy and the velocity limits from the policy and limits sections.
// A server that may be reached from the network must say which countries it calls: an empty
// policy.countries is refused unless policy.allow_all_countries, or the API listens on loopback only
// (then every country is allowed, as for a laptop).
func policyOf(cfg serveConfig, loopback bool) (*policy.Policy, error) {
	p := cfg.Policy
	all := p.AllowAllCountries
	if len(p.Countries) == 0 && !all {
		if !loopback {
			return nil, errors.New("policy.countries: empty; list the countries this server may call (US,GB,…), or set policy.allow_all_countries: a server on the network never starts open to every destination by accident")
		}
		all = true
	}
	l := cfg.Limits
	var limits []policy.Limit
	add := func(field string, scope policy.Scope, n int, window time.Duration) error {
		switch {
		case n < 0:
			return fmt.Errorf("limits.%s: must not be negative", field)
		case n > 0 && window < time.Second:
			return fmt.Errorf("limits.%s_window: must be at least 1s", field)
		case n > 0 && scope == policy.ScopePrefix && (l.PrefixLength < 1 || l.PrefixLength > 14):
			return fmt.Errorf("limits.prefix_length: want 1 to 14 digits, not %d", l.PrefixLength)
		case n > 0:
			limits = append(limits, policy.Limit{Scope: scope, Max: n, Window: window, PrefixLength: l.PrefixLength})
		}
		return nil
	}
	// Narrowest first: a start refused for its number range does not use up its country's budget.
	for _, x := range []struct {
		field  string
		scope  policy.Scope
		n      int
		window time.Duration
	}{
		{"per_prefix", policy.ScopePrefix, l.PerPrefix, l.PerPrefixWindow},
		{"per_country", policy.ScopeCountry, l.PerCountry, l.PerCountryWindow},
		{"per_api_key", policy.ScopeAPIKey, l.PerAPIKey, l.PerAPIKeyWindow},
		{"per_hour", policy.ScopeGlobal, l.PerHour, time.Hour},
		{"per_day", policy.ScopeGlobal, l.PerDay, 24 * time.Hour},
	} {
		if err := add(x.field, x.scope, x.n, x.window); err != nil {
			return nil, err
		}
	}
	g := p.Guard
	if g.MinConversion < 0 || g.MinConversion > 1 {
		return nil, fmt.Errorf("policy.guard.min_conversion: want 0 (off) to 1, not %v", g.MinConversion)
	}
	return policy.New(policy.Config{
		Countries: p.Countries, AllowAllCountries: all, NumberTypes: p.NumberTypes,
		DenyPrefixes: p.DenyPrefixes, AllowPrefixes: p.AllowPrefixes, CallerIDs: p.CallerIDs, Limits: limits,
		Guard: policy.Guard{MinConversion: g.MinConversion, MinVolume: g.MinVolume, CountryMinVolume: g.CountryMinVolume,
			Window: g.Window, Pause: g.Pause, PrefixLength: g.PrefixLength},
	})
}

// dispatchConfig turns the dispatch section into the queue's configuration.
func dispatchConfig(cfg serveConfig, logger *slog.Logger) (dispatch.Config, error) {
	d := cfg.Dispatch
	if !(d.MaxCPU >= 0 && d.MaxCPU <= 1) {
		return dispatch.Config{}, fmt.Errorf("dispatch.max_cpu: want a fraction of the cores from 0 (off) to 1, not %v", d.MaxCPU)
	}
	var src dispatch.CPUSource
	switch strings.ToLower(d.CPUSource) {
	case "", "process":
		src = dispatch.CPUProcess
	case "system":
		src = dispatch.CPUSystem
	default:
		return dispatch.Config{}, fmt.Errorf("dispatch.cpu_source: want process or system, not %q", d.CPUSource)
	}
	// The queue builds the sampler src names and runs it for the time of its Run.
	return dispatch.Config{
		MaxConcurrent: d.MaxConcurrent, CPS: d.CPS, QueueSize: d.QueueSize, DrainTimeout: d.DrainTimeout,
		MaxCPU: d.MaxCPU, CPUSource: src, Logger: logger,
	}, nil
}

// backend is where the state that nodes share lives: the memory store for
// one process, or Redis for several.
type backend struct {
	store    otp.Store
	counters counters
	expiries calls.Expiries
	signals  calls.Signals           // nil with the memory store: one process
	redis    goredis.UniversalClient // nil for the memory store; closed by close
	node     string
}

// counters are the store's limits and budgets: the number slots of calls,
// the shared CPS budgets of the queue and the trunks, and the conversion
// guard's counts and pauses.
type counters interface {
	calls.NumberSlots
	dispatch.RateLimiter
	policy.GuardStore
}

// pingTimeout bounds the check that Redis answers at start.
const pingTimeout = 5 * time.Second

// newBackend builds the store, the counters and the Redis client from the
// redis section. Several nodes need Redis, so a redis.* setting other than
// url without a url is refused rather than ignored: each node would keep
// its own verifications, and a check on another node would find nothing.
// With a url, Redis must answer now: a wrong URL fails the start, while a
// Redis lost later is survived (503s, then recovery).
func newBackend(cfg serveConfig) (*backend, error) {
	if cfg.Redis.URL == "" {
		switch {
		case cfg.Redis.Node != "":
			return nil, errors.New("redis.node: naming this node among several needs redis.url; the memory store is one process's own")
		case cfg.Redis.Lease != 0:
			return nil, errors.New("redis.lease: reclaiming jobs from other nodes needs redis.url; the memory store is one process's own")
		}
		return &backend{store: memory.New(), counters: memory.NewCounters(), expiries: memory.NewExpiries(),
			node: calls.DefaultNode}, nil
	}
	if cfg.Redis.Lease < 0 {
		return nil, errors.New("redis.lease: must not be negative")
	}
	c, err := redisstore.ParseURL(cfg.Redis.URL)
	if err != nil {
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	st := redisstore.New(c)
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	if err := st.Ping(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	node := cfg.Redis.Node
	if node == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "node"
		}
		node = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	return &backend{store: st, counters: redisstore.NewCounters(c), expiries: redisstore.NewExpiries(c),
		signals: redisstore.NewSignals(c), redis: c, node: node}, nil
}

// queue returns the call queue: in memory, or a Redis stream that the
// nodes share. The CPS budget is the whole deployment's on Redis;
// max_concurrent, max_cpu and drain_timeout are this node's.
func (b *backend) queue(dcfg dispatch.Config, lease time.Duration) dispatch.Queue {
	if b.redis == nil {
		return dispatch.NewMemory(dcfg)
	}
	dcfg.Rate = b.counters
	return streams.New(b.redis, streams.Config{Config: dcfg, Consumer: b.node, Lease: lease})
}

// callsOptions are the shared-state dependencies of package calls.
func (b *backend) callsOptions(hooks *webhook.Sender) []calls.Option {
	opts := []calls.Option{calls.WithNumberSlots(b.counters), calls.WithExpiries(b.expiries), calls.WithWebhooks(hooks)}
	if b.signals != nil {
		opts = append(opts, calls.WithSignals(b.signals))
	}
	return opts
}

func (b *backend) kind() string {
	if b.redis != nil {
		return "redis"
	}
	return "memory"
}

func (b *backend) close() {
	if b.redis != nil {
		b.redis.Close()
	}
}

// callLengthMargin covers the bounded CANCEL or BYE (5 s) at the end of a
// call and a difference of up to 10 s between the clocks of two nodes.
const callLengthMargin = 15 * time.Second

// maxCallLength bounds one call from its claim to its end: an attempt per
// trunk (failover), each up to the ring timeout, then the talk time, plus a
// margin for the CANCEL or BYE and for clocks of nodes that differ a little.
// A job reclaimed from a dead node waits this long after the claim, so the
// call it may have left live has surely ended before anyone calls again.
func maxCallLength(c callflow.Config, trunks int) time.Duration {
	return time.Duration(max(1, trunks))*c.RingTimeout + c.MaxCallDuration + callLengthMargin
}

// registerNodeMetrics adds to /metrics what the API does not see: the CPU admission of the dispatcher
// and, in the dense media mode, the shared RTP lanes. Each value is read from the owner's counters
// when scraped.
func registerNodeMetrics(reg *prometheus.Registry, q dispatch.Queue, mux *media.Mux) error {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ivr_dispatch_cpu_load",
			Help: "CPU use over the last second as dispatch.cpu_source measures it, a fraction of the cores (0 when dispatch.max_cpu is off)."},
			func() float64 { return q.Stats().CPULoad }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ivr_dispatch_cpu_holds_total",
			Help: "Times new dials were held because CPU use was above dispatch.max_cpu."},
			func() float64 { return float64(q.Stats().HeldForCPU) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ivr_dispatch_cpu_held_seconds_total",
			Help: "Time new dials spent held for CPU."},
			func() float64 { return q.Stats().HeldForCPUTime.Seconds() }),
	}
	if mux != nil {
		counter := func(name, help string, f func(media.MuxStats) uint64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
				func() float64 { return float64(f(mux.Stats())) })
		}
		cs = append(cs,
			counter("ivr_rtp_mux_packets_sent_total", "RTP packets written by the shared lanes (media.mode dense).",
				func(s media.MuxStats) uint64 { return s.Packets }),
			counter("ivr_rtp_mux_write_calls_total", "sendmmsg calls of the shared lanes.",
				func(s media.MuxStats) uint64 { return s.WriteCalls }),
			counter("ivr_rtp_mux_packets_received_total", "Datagrams read by the shared lanes.",
				func(s media.MuxStats) uint64 { return s.Received }),
			counter("ivr_rtp_mux_unmatched_total", "Datagrams no call on their lane expected (wrong source or SSRC).",
				func(s media.MuxStats) uint64 { return s.Unmatched }),
			counter("ivr_rtp_mux_late_ticks_total", "Pacing rounds that began more than 5 ms late.",
				func(s media.MuxStats) uint64 { return s.LateTicks }),
		)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}

// mediaMode reads media.mode and media.lanes: true for the dense mode.
func mediaMode(cfg serveConfig) (bool, error) {
	if cfg.Media.Lanes < 0 || cfg.Media.Lanes > 1024 {
		return false, fmt.Errorf("media.lanes: want 0 (one per core) to 1024, not %d", cfg.Media.Lanes)
	}
	switch strings.ToLower(cfg.Media.Mode) {
	case "", "socket":
		return false, nil
	case "dense":
		return true, nil
	}
	return false, fmt.Errorf("media.mode: want socket or dense, not %q", cfg.Media.Mode)
}

// callConfig turns the call section into the call script's configuration.
func callConfig(cfg serveConfig) (callflow.Config, error) {
	var c callflow.Config
	var err error
	if c.Challenge, err = callflow.ParseChallenge(cfg.Call.Challenge); err != nil {
		return c, fmt.Errorf("call.challenge: %w", err)
	}
	if c.Ports, err = parsePortRange(cfg.Media.Ports); err != nil {
		return c, fmt.Errorf("media.ports: %w", err)
	}
	if cfg.Media.IP != "" {
		if c.MediaIP, err = netip.ParseAddr(cfg.Media.IP); err != nil {
			return c, fmt.Errorf("media.ip: %w", err)
		}
	}
	if cfg.Media.PublicIP != "" {
		if c.MediaPublicIP, err = netip.ParseAddr(cfg.Media.PublicIP); err != nil {
			return c, fmt.Errorf("media.public_ip: %w", err)
		}
	}
	if err := callflow.ValidDTMFMode(cfg.Call.DTMFMode); err != nil {
		return c, fmt.Errorf("call.dtmf_mode: %w", err)
	}
	c.DTMFMode = cfg.Call.DTMFMode
	c.Tries = cfg.Call.Tries
	c.KeyTimeout = cfg.Call.KeyTimeout
	c.RingTimeout = cfg.Call.RingTimeout
	c.MaxCallDuration = cfg.Call.MaxDuration
	c.RepeatWait = cfg.Call.RepeatWait
	c.MaxRepeats = cfg.Call.MaxRepeats
	if c.MaxRepeats == 0 {
		c.MaxRepeats = -1
	}
	c.RTPTimeout = cfg.Call.RTPTimeout
	if c.RTPTimeout == 0 {
		c.RTPTimeout = -1
	}
	for name, d := range map[string]time.Duration{"call.key_timeout": c.KeyTimeout, "call.ring_timeout": c.RingTimeout,
		"call.max_duration": c.MaxCallDuration, "call.repeat_wait": c.RepeatWait} {
		if d <= 0 {
			return c, fmt.Errorf("%s: must be positive", name)
		}
	}
	if c.Tries < 1 {
		return c, errors.New("call.tries: must be at least 1")
	}
	return c, c.Validate()
}

func (a *app) apiAddr() string { return a.ln.Addr().String() }

// run serves until ctx is done, then shuts down in order: stop taking
// requests, let the queue drain active calls, flush webhooks, close SIP.
func (a *app) run(ctx context.Context) error {
	qctx, stopQueue := context.WithCancel(context.Background())
	hctx, stopHooks := context.WithCancel(context.Background())
	defer stopQueue()
	defer stopHooks()
	tctx, stopTrunks := context.WithCancel(context.Background())
	defer stopTrunks()
	queueDone, hooksDone, httpDone, trunksDone := make(chan error, 1), make(chan error, 1), make(chan error, 1), make(chan error, 1)
	go func() { trunksDone <- a.trunks.Run(tctx) }()
	go func() { queueDone <- a.calls.Run(qctx, a.runner) }()
	go func() { hooksDone <- a.hooks.Run(hctx) }()
	go func() { httpDone <- a.server.Serve(a.ln) }()

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-httpDone:
		runErr = fmt.Errorf("http: %w", err)
		httpDone <- nil
	case err := <-queueDone:
		runErr = fmt.Errorf("dispatch stopped: %v", err)
		queueDone <- nil
	}
	a.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	a.server.Shutdown(sctx)
	cancel()
	<-httpDone
	stopQueue() // the queue drains active calls up to dispatch.drain_timeout
	<-queueDone
	stopHooks()
	<-hooksDone
	stopTrunks() // un-registers
	<-trunksDone
	a.ua.Close()
	if a.mux != nil {
		a.mux.Close() // after the queue drained: no call uses it any more
	}
	a.back.close()
	return runErr
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
