package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Health and registration timing of Trunks.
const (
	// probeDownAfter consecutive failed OPTIONS probes mark a trunk down;
	// one answered probe marks it up again.
	probeDownAfter = 2
	// probeTimeout bounds one OPTIONS probe (and one REGISTER) when the
	// probe interval allows longer.
	probeTimeout = 5 * time.Second
	// unregisterWait bounds the un-registration when Run ends.
	unregisterWait = 3 * time.Second
	// Registration retries after a failure back off from regRetryMin,
	// doubling, to regRetryMax (RFC 3261 §10.2 leaves the policy open).
	regRetryMin = 2 * time.Second
	regRetryMax = 5 * time.Minute
)

// Trunks is a set of trunks on one UA: it keeps the registrations, probes the
// trunks' health and places each call on the best trunk, failing over to the
// next when a trunk is down (see Dial). Its methods are safe for concurrent
// use. It owns no socket: everything goes through the UA, which the caller
// closes after Run has returned.
type Trunks struct {
	ua     *UA
	log    *slog.Logger
	trunks []*trunk // configuration order; the slice and each cfg/out are immutable

	// Injected for tests; set before first use.
	now      func() time.Time
	intn     func(n int) int // uniform in [0, n)
	retryMin time.Duration
	changed  func() // if set, called (without t.mu) after a probe or registration changed the state

	running atomic.Bool

	// shared, if set, is a calls-per-second budget shared with other
	// nodes (store/redis.Counters); each trunk with MaxCPS has its own key.
	shared SharedBudget

	mu sync.Mutex // guards the state fields of every trunk
}

// SharedBudget is a token bucket shared by every node of a deployment, so
// a trunk's MaxCPS holds for all of them together; *store/redis.Counters
// implements it. ok false means no token now, and wait says when one will be.
type SharedBudget interface {
	TakeToken(ctx context.Context, key string, rate float64, burst int) (ok bool, wait time.Duration, err error)
}

// ShareCPS makes every trunk's MaxCPS a budget shared through b (in
// addition to this node's own limit). Call it before Dial is used.
func (t *Trunks) ShareCPS(b SharedBudget) { t.shared = b }

// maxSharedWait is the longest a call waits for a shared CPS token on its
// trunk before trying the next trunk.
const maxSharedWait = time.Second

// takeShared takes a token of tr's shared CPS budget, waiting up to
// maxSharedWait; false means skip the trunk (or the budget is unreachable:
// a trunk is not dialled past a budget that cannot be checked).
func (t *Trunks) takeShared(ctx context.Context, tr *trunk) bool {
	if t.shared == nil || tr.cfg.MaxCPS <= 0 {
		return true
	}
	deadline := t.now().Add(maxSharedWait)
	for {
		ok, wait, err := t.shared.TakeToken(ctx, "trunk:"+tr.cfg.Name, tr.cfg.MaxCPS, 1)
		if err != nil {
			t.log.Warn("sip: shared CPS budget unavailable", "trunk", tr.cfg.Name, "error", err)
			return false
		}
		if ok {
			return true
		}
		if t.now().Add(wait).After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

// trunk is one configured trunk and its live state.
type trunk struct {
	cfg TrunkConfig // Call.Trunk points here
	out *outbound
	lim *rate.Limiter // nil when MaxCPS is 0

	// Guarded by Trunks.mu.
	up         bool // false once probeDownAfter probes in a row failed
	probed     bool
	fails      int
	rtt        time.Duration
	lastProbe  time.Time
	registered bool
	regExpires time.Time
	active     int
	lastStatus int
	probeErr   string
	regErr     string
	callErr    string
}

// NewTrunks validates every configuration (errors name the trunk and field,
// see TrunkConfig.Validate), loads their TLS CA files and returns the set,
// every trunk presumed up and none registered yet. Names must be unique.
func NewTrunks(ua *UA, cfgs []TrunkConfig) (*Trunks, error) {
	if ua == nil {
		return nil, errors.New("sip: NewTrunks: nil UA")
	}
	if len(cfgs) == 0 {
		return nil, errors.New("sip: NewTrunks: no trunk configured")
	}
	t := &Trunks{
		ua:       ua,
		log:      ua.log,
		now:      time.Now,
		intn:     rand.IntN,
		retryMin: regRetryMin,
	}
	seen := map[string]bool{}
	for i := range cfgs {
		c := cfgs[i]
		c.Codecs = append([]string(nil), c.Codecs...)
		if err := c.Validate(); err != nil {
			return nil, err
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("trunk %q: name: used twice", c.Name)
		}
		seen[c.Name] = true
		tr := &trunk{cfg: c, up: true}
		out, err := tr.cfg.outbound(ua)
		if err != nil {
			return nil, fmt.Errorf("trunk %q: %w", c.Name, err)
		}
		out.onEnd = func() { t.release(tr) }
		tr.out = out
		if c.MaxCPS > 0 {
			tr.lim = rate.NewLimiter(rate.Limit(c.MaxCPS), max(1, int(c.MaxCPS)))
		}
		t.trunks = append(t.trunks, tr)
	}
	return t, nil
}

// available reports whether tr may take a new call now. t.mu is held.
func (t *Trunks) available(tr *trunk, now time.Time) bool {
	switch {
	case tr.probed && !tr.up:
		return false
	case tr.cfg.Register && !(tr.registered && now.Before(tr.regExpires)):
		return false
	case tr.cfg.MaxChannels > 0 && tr.active >= tr.cfg.MaxChannels:
		return false
	case tr.lim != nil && tr.lim.TokensAt(now) < 1:
		return false
	}
	return true
}

// pick chooses the trunk for the next attempt among those not in tried: the
// lowest Priority among the available ones, then weighted random by Weight.
// With reserve it takes a channel and a CPS token on it.
func (t *Trunks) pick(tried map[*trunk]bool, reserve bool) *trunk {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var best []*trunk
	for _, tr := range t.trunks {
		if tried[tr] || !t.available(tr, now) {
			continue
		}
		switch {
		case len(best) == 0 || tr.cfg.Priority < best[0].cfg.Priority:
			best = append(best[:0], tr)
		case tr.cfg.Priority == best[0].cfg.Priority:
			best = append(best, tr)
		}
	}
	if len(best) == 0 {
		return nil
	}
	total := 0
	for _, tr := range best {
		total += max(1, tr.cfg.Weight)
	}
	n := t.intn(total)
	chosen := best[len(best)-1]
	for _, tr := range best {
		if n -= max(1, tr.cfg.Weight); n < 0 {
			chosen = tr
			break
		}
	}
	if reserve {
		chosen.active++
		if chosen.lim != nil {
			chosen.lim.AllowN(now, 1)
		}
	}
	return chosen
}

// release returns the channel of a call that ended (or failed).
func (t *Trunks) release(tr *trunk) {
	t.mu.Lock()
	tr.active--
	t.mu.Unlock()
}

// failsOver reports whether a failed attempt should move to the next trunk:
// the trunk (not the callee) failed. That is ErrUnreachable (5xx, no
// response, a transport or TLS error) unless it is a 5xx that answered our
// CANCEL after the ring timeout, or a 408 the trunk sent. A callee's answer
// (486, 404, 480, 487, 603…), an authentication failure, our ring timeout
// and the caller's cancellation never fail over.
func failsOver(err error) bool {
	var se *Error
	if !errors.As(err, &se) || errors.Is(err, ErrCanceled) {
		return false
	}
	if se.Kind == ErrUnreachable {
		return !se.Canceled || se.Status == 0
	}
	return se.Status == 408 && !se.Canceled
}

// Dial places the call on the best trunk: the lowest Priority, weighted
// random among equal priorities, skipping trunks that probes found down,
// that must register and are not registered, that are at MaxChannels or over
// MaxCPS. Each trunk's own From, P-Asserted-Identity, Privacy, Route,
// number rewrite, credentials and transport apply, except that
// req.CallerID, if set, is the From user and P-Asserted-Identity on every
// trunk tried (see UA.Dial for the call itself). The ring timeout applies to
// each attempt; ctx bounds the whole.
//
// A failure of the trunk (408, 5xx, no response within NoResponseTimeout, a
// transport or TLS error: see failsOver) moves the call to the next trunk,
// each trunk being tried at most once; any other answer ends the call
// there. req.OnAttempt hears of every attempt that ended without an answer.
// With no trunk available at all Dial returns an *Error with Kind
// ErrUnreachable and Reason "no trunk available"; when every trunk failed,
// the last attempt's error. The returned Call's Trunk is the trunk that
// carried it; its channel is released when the call ends.
func (t *Trunks) Dial(ctx context.Context, req DialRequest) (*Call, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	tried := map[*trunk]bool{}
	var last error
	for {
		tr := t.pick(tried, true)
		if tr == nil {
			if last != nil {
				return nil, last
			}
			return nil, &Error{Kind: ErrUnreachable, Reason: "no trunk available"}
		}
		tried[tr] = true
		if !t.takeShared(ctx, tr) {
			t.release(tr)
			t.log.Debug("sip: trunk over its shared CPS budget", "trunk", tr.cfg.Name)
			continue
		}
		t.log.Debug("sip: dialling via trunk", "trunk", tr.cfg.Name)
		r := req
		if req.OfferFor != nil {
			r.Offer = req.OfferFor(&tr.cfg)
		}
		call, err := t.ua.dial(ctx, r, tr.out, tr.cfg.Rewrite.Apply(req.Number))
		if err == nil {
			t.mu.Lock()
			tr.lastStatus, tr.callErr = call.Status(), ""
			t.mu.Unlock()
			return call, nil
		}
		t.release(tr)
		over := failsOver(err) && ctx.Err() == nil
		a := Attempt{Trunk: tr.cfg.Name, Err: err, At: t.now()}
		var se *Error
		if errors.As(err, &se) {
			a.Status, a.Reason = se.Status, se.Reason
		}
		t.mu.Lock()
		if a.Status != 0 {
			tr.lastStatus = a.Status
		}
		if over {
			tr.callErr = err.Error()
		}
		t.mu.Unlock()
		a.FailedOver = over && t.pick(tried, false) != nil
		if a.FailedOver {
			t.log.Info("sip: trunk failed, failing over", "trunk", tr.cfg.Name, "sip_status", a.Status, "error", err)
		}
		if req.OnAttempt != nil {
			req.OnAttempt(a)
		}
		if !a.FailedOver {
			return nil, err
		}
		last = err
	}
}

// TrunkStatus is a snapshot of one trunk.
type TrunkStatus struct {
	Name      string
	URI       string
	Transport Transport // never empty: udp, tcp or tls
	// Up reports the trunk usable as far as we know: true until
	// probeDownAfter probes in a row fail, and again after one succeeds.
	Up bool
	// Probed reports that at least one OPTIONS probe completed.
	Probed bool
	// RTT is the round-trip time of the last answered probe.
	RTT       time.Duration
	LastProbe time.Time
	// Register is the trunk's configuration; Registered reports a current
	// registration, which expires at RegisterExpires.
	Register        bool
	Registered      bool
	RegisterExpires time.Time
	// Active is the number of calls up on the trunk.
	Active int
	// LastStatus is the last final SIP status the trunk sent to a probe,
	// REGISTER or INVITE, 0 if none yet.
	LastStatus int
	// LastError says what is wrong, "" if nothing: the last failure of the
	// probes, the registration and the calls (trunk failures only), each
	// cleared by a success of its kind.
	LastError string
}

// Status returns a snapshot of every trunk, in configuration order.
func (t *Trunks) Status() []TrunkStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	out := make([]TrunkStatus, 0, len(t.trunks))
	for _, tr := range t.trunks {
		var errs []string
		for _, e := range []struct{ k, v string }{{"options", tr.probeErr}, {"register", tr.regErr}, {"call", tr.callErr}} {
			if e.v != "" {
				errs = append(errs, e.k+": "+e.v)
			}
		}
		st := TrunkStatus{
			Name:       tr.cfg.Name,
			URI:        tr.cfg.URI,
			Transport:  tr.out.trunk.Transport.orUDP(),
			Up:         tr.up,
			Probed:     tr.probed,
			RTT:        tr.rtt,
			LastProbe:  tr.lastProbe,
			Register:   tr.cfg.Register,
			Registered: tr.registered && now.Before(tr.regExpires),
			Active:     tr.active,
			LastStatus: tr.lastStatus,
			LastError:  strings.Join(errs, "; "),
		}
		if st.Registered {
			st.RegisterExpires = tr.regExpires
		}
		out = append(out, st)
	}
	return out
}

// Run keeps the registrations (RFC 3261 §10.2: REGISTER with digest on
// 401/407, refreshed at about 80% of the granted expiry, retried with
// exponential backoff after a failure) of trunks with Register, and probes
// trunks with an OptionsInterval (OPTIONS, RFC 3261 §11: any final answer
// but 408 and 5xx means up, with its round-trip time; two failures in a row
// mean down), until ctx ends. Then it un-registers (REGISTER with Expires:
// 0, waiting at most 3 s) and returns nil. Run must not be called twice at
// once.
func (t *Trunks) Run(ctx context.Context) error {
	if !t.running.CompareAndSwap(false, true) {
		return errors.New("sip: Trunks.Run is already running")
	}
	defer t.running.Store(false)
	var wg sync.WaitGroup
	var regs []*registration
	for _, tr := range t.trunks {
		if tr.cfg.Register {
			r := t.newRegistration(tr)
			regs = append(regs, r)
			wg.Go(func() { t.registerLoop(ctx, r) })
		}
		if tr.cfg.OptionsInterval > 0 {
			wg.Go(func() { t.probeLoop(ctx, tr) })
		}
	}
	wg.Wait()
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unregisterWait)
	defer cancel()
	for _, r := range regs {
		wg.Go(func() { t.unregister(uctx, r) })
	}
	wg.Wait()
	return nil
}

// Check probes every trunk once, concurrently: an OPTIONS, and where
// Register is set a REGISTER, after which the trunk is un-registered again.
// It returns the statuses as they were before the un-registration
// (Registered and RegisterExpires show what the registrar granted); Probed
// and Up reflect this one probe. ctx bounds the whole. Check is meant for a
// Trunks whose Run is not running (`ivr trunks check`): it would otherwise
// remove Run's registrations.
func (t *Trunks) Check(ctx context.Context) []TrunkStatus {
	var wg sync.WaitGroup
	regs := make([]*registration, len(t.trunks))
	for i, tr := range t.trunks {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			t.probe(pctx, tr, true)
			cancel()
			if tr.cfg.Register {
				r := t.newRegistration(tr)
				rctx, cancel := context.WithTimeout(ctx, probeTimeout)
				t.register(rctx, r)
				cancel()
				regs[i] = r
			}
		})
	}
	wg.Wait()
	out := t.Status()
	for _, r := range regs {
		if r != nil && r.registered() {
			wg.Go(func() {
				uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unregisterWait)
				defer cancel()
				t.unregister(uctx, r)
			})
		}
	}
	wg.Wait()
	return out
}

// probeLoop probes tr every OptionsInterval, the first time at once, until
// ctx ends.
func (t *Trunks) probeLoop(ctx context.Context, tr *trunk) {
	every := tr.cfg.OptionsInterval
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, min(every, probeTimeout))
		t.probe(pctx, tr, false)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// notify calls the test hook.
func (t *Trunks) notify() {
	if t.changed != nil {
		t.changed()
	}
}

// probe sends one OPTIONS to tr and records the verdict; with once (Check)
// a single failure marks the trunk down.
func (t *Trunks) probe(ctx context.Context, tr *trunk, once bool) {
	status, rtt, err := t.ua.options(ctx, tr.out)
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return // Run is ending (or the UA closing), not a verdict on the trunk
	}
	ok := err == nil && status != 408 && status < 500
	defer t.notify()
	t.mu.Lock()
	defer t.mu.Unlock()
	tr.probed = true
	tr.lastProbe = t.now()
	if status != 0 {
		tr.lastStatus = status
	}
	if ok {
		if !tr.up {
			t.log.Info("sip: trunk up", "trunk", tr.cfg.Name, "rtt", rtt)
		}
		tr.up, tr.fails, tr.rtt, tr.probeErr = true, 0, rtt, ""
		return
	}
	tr.fails++
	switch {
	case err != nil:
		tr.probeErr = err.Error()
	default:
		tr.probeErr = fmt.Sprintf("%d answer", status)
	}
	if (once || tr.fails >= probeDownAfter) && tr.up {
		tr.up = false
		t.log.Warn("sip: trunk down", "trunk", tr.cfg.Name, "error", tr.probeErr)
	}
}
