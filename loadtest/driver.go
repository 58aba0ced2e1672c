package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/voiceotp/voiceotp/media"
	"github.com/voiceotp/voiceotp/prompts"
)

// Expected returns the call outcome (the API's call status) that a phone behaving as b should lead the
// server to report.
func Expected(b Behaviour) string {
	switch b {
	case NoKey:
		return "no_input"
	case Busy:
		return "busy"
	case NoAnswer:
		return "no_answer"
	case Hangup:
		return "abandoned"
	}
	return "delivered"
}

// Default values of DriverConfig fields left zero.
const (
	DefaultConcurrency = 1000
	DefaultCallTimeout = 3 * time.Minute
	DefaultSampleEvery = time.Second
)

// DriverConfig configures a load test. Catalog, CPS and one of Calls or Duration are required.
type DriverConfig struct {
	// Catalog holds the prompts the server speaks. Required.
	Catalog *prompts.Catalog
	// PhoneListen is the phone farm's SIP UDP address. If empty, "127.0.0.1:0".
	PhoneListen string
	// MediaIP is the phones' RTP address. If zero, the SIP listening IP.
	MediaIP netip.Addr
	// Ports is the phones' RTP port range; zero means media's default.
	Ports media.PortRange
	// NoAudio makes the phones send nothing but key presses; by default they send silence back every
	// 20 ms like a microphone (full duplex).
	NoAudio bool
	// Audio, if set (and NoAudio is not), is the recording the phones send back instead of silence,
	// looped for the whole of each call (see Config.Audio).
	Audio *PhoneAudio
	// Mux, if set, carries the phones' RTP in the dense media mode (see Config.Mux). The driver
	// never closes it.
	Mux *media.Mux
	// Mix shares the calls between behaviours. If zero, DefaultMix.
	Mix Mix
	// AnswerDelay is how long phones ring before answering (or rejecting, for busy). Zero: at once.
	AnswerDelay Delay
	// PressDelay is how long phones take to press the challenge digit once heard. Zero: at once.
	PressDelay Delay
	// CPS is the rate at which verifications are started, per second. Required.
	CPS float64
	// Concurrency bounds the calls in flight (from the start request to the verdict); a start waits
	// for a free slot. If zero, DefaultConcurrency.
	Concurrency int
	// Calls is how many calls to start; Duration, if Calls is zero, is how long to start calls for.
	Calls    int
	Duration time.Duration
	// CallTimeout bounds one call, from its start request to its verdict. If zero, DefaultCallTimeout.
	CallTimeout time.Duration
	// Run is the run number put in the called numbers (0–999) so that runs against one server never
	// call a number whose verification is still pending. Negative: drawn from Rand.
	Run int
	// Procs are the processes whose CPU and memory are sampled (the server, the farm).
	Procs []Proc
	// SampleEvery is the period of the timeline and of OnProgress. If zero, DefaultSampleEvery.
	SampleEvery time.Duration
	// OnProgress, if set, is called every SampleEvery and once at the end, from one goroutine.
	OnProgress func(Progress)
	// Rand draws delays and the run number. If nil, a randomly seeded one.
	Rand *rand.Rand
	// Logger receives the phones' logs. Nil discards them.
	Logger *slog.Logger
}

// Progress is a snapshot of a running load test.
type Progress struct {
	Elapsed time.Duration
	Started int // calls started
	Done    int // calls with a verdict
	Target  int // calls to start; 0 when the test runs for a duration
	// Active is the calls the phones have up (from INVITE to hang-up).
	Active int
	// InFlight is the calls started and not yet judged.
	InFlight int
	CPS      float64 // starts per second over the last period
	Errors   int
	// ETA is the estimated time left; 0 when unknown.
	ETA   time.Duration
	Final bool // the last snapshot, after every call has a verdict
}

// Driver drives a load test: it owns a phone farm (one virtual phone, whose SIP UA takes every call)
// and starts verifications over the API at a set rate, each for a number that tells the phone how to
// behave, then judges every call by what the phone heard and what the API reports.
type Driver struct {
	cfg   DriverConfig
	phone *Phone
	rng   *rand.Rand // used by Run's goroutine only

	mu          sync.Mutex // guards calls, phoneActive, pacing
	calls       map[string]*callInFlight
	phoneActive int
	pacing      Pacing
}

// callInFlight is one call the driver has started and awaits a verdict for: its plan, and where the
// phone's report goes.
type callInFlight struct {
	serial int
	number string
	plan   Plan
	report chan CallReport // buffered 1
}

// NewDriver starts the phone farm. Point the server's trunk at PhoneAddr, then call Run. The caller
// must Close the driver.
func NewDriver(cfg DriverConfig) (*Driver, error) {
	if cfg.Catalog == nil {
		return nil, errors.New("loadtest: driver needs a prompt catalog")
	}
	if !(cfg.CPS > 0) {
		return nil, errors.New("loadtest: cps must be positive")
	}
	if cfg.Calls <= 0 && cfg.Duration <= 0 {
		return nil, errors.New("loadtest: set a number of calls or a duration")
	}
	if cfg.Calls > maxSerial+1 {
		return nil, fmt.Errorf("loadtest: at most %d calls per run", maxSerial+1)
	}
	if cfg.Mix.total() == 0 {
		cfg.Mix = DefaultMix()
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = DefaultSampleEvery
	}
	if cfg.PhoneListen == "" {
		cfg.PhoneListen = "127.0.0.1:0"
	}
	d := &Driver{cfg: cfg, rng: cfg.Rand, calls: map[string]*callInFlight{}}
	if d.rng == nil {
		d.rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if d.cfg.Run < 0 {
		d.cfg.Run = d.rng.IntN(maxRun + 1)
	}
	phone, err := NewPhone(Config{
		ListenAddr: cfg.PhoneListen,
		MediaIP:    cfg.MediaIP,
		Ports:      cfg.Ports,
		Catalog:    cfg.Catalog,
		NoAudio:    cfg.NoAudio,
		Audio:      cfg.Audio,
		Mux:        cfg.Mux,
		Logger:     cfg.Logger,
		PlanFor:    d.planFor,
		OnReport:   d.onReport,
		// A call of the load test never lasts longer than the driver waits for it.
		MaxCallDuration: cfg.CallTimeout,
	})
	if err != nil {
		return nil, err
	}
	d.phone = phone
	return d, nil
}

// PhoneAddr is the farm's SIP address: the server's trunk is "sip:" + PhoneAddr().String().
func (d *Driver) PhoneAddr() netip.AddrPort { return d.phone.Addr() }

// Close ends the calls the phones still have up and closes the farm.
func (d *Driver) Close() error { return d.phone.Close() }

// planFor is the phone's PlanFor: the plan drawn when the call was started, or, for a number this run
// did not start, the behaviour the number encodes.
func (d *Driver) planFor(number string) Plan {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.phoneActive++
	if cf, ok := d.calls[number]; ok {
		return cf.plan
	}
	b, _ := BehaviourOf(number)
	return Plan{Behaviour: b}
}

// onReport is the phone's OnReport: it hands the report to the call waiting for it.
func (d *Driver) onReport(r CallReport) {
	d.mu.Lock()
	d.phoneActive--
	d.pacing.Merge(&r.Pacing)
	cf := d.calls[r.Number]
	d.mu.Unlock()
	if cf != nil {
		select {
		case cf.report <- r:
		default: // a second call to the same number: keep the first report
		}
	}
}

// counters are the running totals the sampler reads; guarded by Run's mutex.
type counters struct {
	started, done, errors int
	callTime              time.Duration // the sum of the durations of the calls done
}

// Run starts calls at cfg.CPS until cfg.Calls have started or cfg.Duration has passed, waits for every
// call's verdict, and returns the report. When ctx ends first, calls in flight are judged as errors
// and Run returns the partial report with ctx's error. Run may be called once.
func (d *Driver) Run(ctx context.Context, c *Client) (*Report, error) {
	cfg := d.cfg
	start := time.Now()
	rep := newReport(cfg, start)

	var mu sync.Mutex // guards cnt and rep.Calls
	var cnt counters
	sampler := newSampler(cfg.Procs, start)
	sampler.sample(start, 0, 0, 0, 0) // the baseline, before any call
	stopSampler := make(chan struct{})
	samplerDone := make(chan struct{})
	progress := func(now time.Time, final bool) Progress {
		mu.Lock()
		c := cnt
		mu.Unlock()
		d.mu.Lock()
		active := d.phoneActive
		d.mu.Unlock()
		s := sampler.sample(now, c.started, c.done, active, c.started-c.done)
		p := Progress{Elapsed: now.Sub(start), Started: c.started, Done: c.done, Target: cfg.Calls,
			Active: active, InFlight: c.started - c.done, CPS: s.CPS, Errors: c.errors, Final: final}
		if c.done > 0 {
			p.ETA = eta(cfg, now.Sub(start), c.callTime/time.Duration(c.done))
		}
		return p
	}
	go func() {
		defer close(samplerDone)
		t := time.NewTicker(cfg.SampleEvery)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				p := progress(now, false)
				if cfg.OnProgress != nil {
					cfg.OnProgress(p)
				}
			case <-stopSampler:
				return
			}
		}
	}()

	sem := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / cfg.CPS)
	mx := mixer{mix: cfg.Mix}
	next := start
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
schedule:
	for serial := 0; ; serial++ {
		if cfg.Calls > 0 && serial >= cfg.Calls || cfg.Calls <= 0 && time.Since(start) >= cfg.Duration {
			break
		}
		if wait := time.Until(next); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break schedule
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break schedule
		}
		// Paced on absolute deadlines; after waiting for a free slot, start afresh instead of bursting.
		if now := time.Now(); now.Sub(next) > interval {
			next = now
		}
		next = next.Add(interval)
		b := mx.next()
		cf := &callInFlight{
			serial: serial,
			number: Number(b, cfg.Run, serial),
			plan:   Plan{Behaviour: b, AnswerDelay: cfg.AnswerDelay.Draw(d.rng), PressDelay: cfg.PressDelay.Draw(d.rng)},
			report: make(chan CallReport, 1),
		}
		d.mu.Lock()
		d.calls[cf.number] = cf
		d.mu.Unlock()
		mu.Lock()
		cnt.started++
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			res := d.call(ctx, c, cf, start)
			took := time.Since(t0)
			d.mu.Lock()
			delete(d.calls, cf.number)
			d.mu.Unlock()
			mu.Lock()
			cnt.done++
			cnt.callTime += took
			if !res.OK {
				cnt.errors++
			}
			rep.Calls = append(rep.Calls, res)
			mu.Unlock()
			<-sem
		}()
	}
	wg.Wait()
	close(stopSampler)
	<-samplerDone
	end := time.Now()
	final := progress(end, true)
	if cfg.OnProgress != nil {
		cfg.OnProgress(final)
	}
	d.mu.Lock()
	pacing := d.pacing
	d.mu.Unlock()
	rep.finish(end, sampler, &pacing)
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("loadtest: run interrupted: %w", context.Cause(ctx))
	}
	return rep, nil
}

// eta estimates the time left: until the last call is started on pace, plus a call's mean duration.
func eta(cfg DriverConfig, elapsed, meanCall time.Duration) time.Duration {
	starting := cfg.Duration
	if cfg.Calls > 0 {
		starting = time.Duration(float64(cfg.Calls) / cfg.CPS * float64(time.Second))
	}
	return max(starting+meanCall-elapsed, 0)
}

// Poll periods while waiting for a call: slow while the phone has not reported (the phone's report is
// what ends the wait), fast once it has and only the server's final record is awaited.
const (
	slowPollFirst = time.Second
	slowPollMax   = 5 * time.Second
	fastPollFirst = 50 * time.Millisecond
	fastPollMax   = time.Second
	reportGrace   = 5 * time.Second
)

// call runs one call from its start request to its verdict. It never logs or returns the code heard.
func (d *Driver) call(ctx context.Context, c *Client, cf *callInFlight, runStart time.Time) CallResult {
	b := cf.plan.Behaviour
	res := CallResult{
		Serial: cf.serial, Number: cf.number, Behaviour: b, Expected: Expected(b),
		AnswerDelayMS: ms(cf.plan.AnswerDelay),
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.CallTimeout)
	defer cancel()
	t0 := time.Now()
	res.StartedAt = t0.Sub(runStart).Seconds()
	v, err := c.Start(ctx, cf.number)
	res.StartMS = ms(time.Since(t0))
	if err != nil {
		res.Error = "start: " + err.Error()
		return res
	}
	res.VerificationID = v.ID

	// Wait for the phone's report of the call; poll slowly meanwhile in case the server never dials
	// (then no report comes).
	var phoneRep *CallReport
	var call APICall
	poll := time.NewTimer(slowPollFirst)
	defer poll.Stop()
	period := slowPollFirst
wait:
	for {
		select {
		case r := <-cf.report:
			phoneRep = &r
			break wait
		case <-poll.C:
			if v, err := c.Get(ctx, res.VerificationID); err == nil && len(v.Calls) > 0 {
				call = v.Calls[len(v.Calls)-1]
				if call.Terminal() {
					if call.DialedAt == nil {
						break wait // never dialled: no report will come
					}
					g := time.NewTimer(reportGrace)
					select {
					case r := <-cf.report:
						phoneRep = &r
					case <-g.C:
					case <-ctx.Done():
					}
					g.Stop()
					break wait
				}
			}
			period = min(period*3/2, slowPollMax)
			poll.Reset(period)
		case <-ctx.Done():
			res.Error = fmt.Sprintf("no verdict within %s: %v", d.cfg.CallTimeout, context.Cause(ctx))
			return res
		}
	}

	// The server's record of the call, once it is final.
	period = fastPollFirst
	for !call.Terminal() {
		v, err := c.Get(ctx, res.VerificationID)
		if err == nil && len(v.Calls) > 0 {
			call = v.Calls[len(v.Calls)-1]
			if call.Terminal() {
				break
			}
		}
		poll.Reset(period)
		select {
		case <-poll.C:
		case <-ctx.Done():
			res.Error = fmt.Sprintf("the call's status is still %q after %s", call.Status, d.cfg.CallTimeout)
			return res
		}
		period = min(period*2, fastPollMax)
	}
	res.judge(call, phoneRep, t0)

	// The code heard must open the verification.
	if phoneRep != nil && phoneRep.HeardCode != "" && b == Answer {
		st, err := c.Check(ctx, res.VerificationID, phoneRep.HeardCode)
		res.CheckStatus = st
		if err != nil {
			res.CheckStatus = "error"
			res.fail("check: %v", err)
		} else if st != "approved" {
			res.fail("the code heard was not approved: %s", st)
		}
	}
	res.OK = res.Error == ""
	return res
}

// judge fills the result from the server's record and the phone's report, and compares both with
// what the behaviour should produce.
func (res *CallResult) judge(call APICall, r *CallReport, t0 time.Time) {
	res.Outcome, res.SIPStatus, res.HangupCause = call.Status, call.SIPStatus, call.HangupCause
	res.ChallengeOK = call.ChallengeDigitOK
	res.CodePlays = call.CodePlays
	if call.DialedAt != nil {
		res.QueuedToDialedMS = msp(call.DialedAt.Sub(call.QueuedAt))
		if call.AnsweredAt != nil {
			res.DialedToAnsweredMS = msp(call.AnsweredAt.Sub(*call.DialedAt))
		}
	}
	if call.Status != res.Expected {
		res.fail("outcome %s, want %s (sip %d, %s)", call.Status, res.Expected, call.SIPStatus, call.HangupCause)
	}
	if r == nil {
		switch {
		case call.DialedAt != nil:
			res.fail("the phone has no report of the call")
		case res.Behaviour == Answer:
			res.fail("no code recognised: the phone never got the call")
		}
		return
	}
	res.Phone = true
	if call.DialedAt != nil {
		res.InviteTransitMS = msp(r.InvitedAt.Sub(*call.DialedAt))
	}
	res.Pressed = r.Pressed
	res.CodeHeard = r.HeardCode != ""
	res.CodePlaysHeard = len(r.Plays)
	if !r.CodeHeardAt.IsZero() {
		res.RequestToCodeMS = msp(r.CodeHeardAt.Sub(t0))
	}
	if !r.AnsweredAt.IsZero() {
		st := r.Received
		res.RTP = &RTPResult{
			Packets: st.Packets, Lost: st.Lost, JitterMS: ms(st.Jitter),
			PacingP99MS: ms(r.Pacing.Quantile(0.99)), PacingMaxMS: ms(r.Pacing.Max),
			Sent: r.Sent.Packets,
		}
	}
	switch res.Behaviour {
	case Answer:
		if !res.CodeHeard {
			res.fail("no code recognised (%d plays heard, challenge digit %q)", len(r.Plays), r.ChallengeDigit)
		}
	case NoKey, Busy, NoAnswer:
		if res.CodeHeard || res.CodePlaysHeard > 0 {
			res.fail("a code was heard, but the phone never pressed")
		}
	}
	if r.Err != nil {
		res.fail("phone: %v", r.Err)
	}
}

func (res *CallResult) fail(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if res.Error == "" {
		res.Error = msg
	} else {
		res.Error += "; " + msg
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func msp(d time.Duration) *float64 {
	v := ms(d)
	return &v
}
