// Package cpugate is the CPU gate of dispatch's job runner: it holds new dials while the CPU load is
// above a threshold, and paces a surge of dials by projecting the load of the calls it let in that the
// load does not show yet.
//
// It owns the threshold, its hysteresis, the projection and the hold counters. It does not own the
// queue (where a held job waits is the queue's business), the number of calls in progress (the runner's
// call slots), nor the measurement, which is a [Sampler] it is given.
package cpugate

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"
)

// Recheck is how often a held dispatcher looks at the load again; it is also the step of
// dispatch.ProcessCPU, so that each look sees a new sample.
const Recheck = 250 * time.Millisecond

// Margin is the hysteresis: once holding, dials resume only when the load is at most the threshold
// minus Margin (or half the threshold, if that is higher), so that they do not flap around it.
const Margin = 0.05

// Sampler is dispatch.CPUSampler: the load, 0 idle, 1 every core Go may use busy.
type Sampler interface {
	CPULoad() float64
}

// Gate holds a dispatcher while the load is above its threshold. Wait and Started are called by one
// goroutine, the dispatcher's; Held and Load are safe for concurrent use. A nil *Gate is off: Wait
// returns nil at once, Started does nothing and the counters are zero.
type Gate struct {
	max, resume float64
	s           Sampler
	now         func() time.Time
	sleepUntil  func(ctx context.Context, t time.Time) error
	log         *slog.Logger

	active func() int  // calls in progress, for the projection; nil: none
	recent []time.Time // dials started within Lag, oldest first; Wait's goroutine only
	base   float64     // the load last seen with no call in progress; Wait's goroutine only
	cost   float64     // the load of one call, as last learned; Wait's goroutine only

	mu      sync.Mutex // guards the fields below
	holds   uint64
	held    time.Duration // the length of the holds that ended
	holding bool
	since   time.Time // when the current hold began, by now
}

// New returns a gate that holds above max, or nil (off) when max is not positive (or NaN) or s is nil.
// now and sleepUntil are the dispatcher's clock: sleepUntil blocks until t or returns ctx.Err() when ctx
// is done first. log gets one line when a hold begins and one when it ends.
func New(max float64, s Sampler, now func() time.Time, sleepUntil func(context.Context, time.Time) error, log *slog.Logger) *Gate {
	if !(max > 0) || s == nil {
		return nil
	}
	return &Gate{
		max: max, resume: max - math.Min(Margin, max/2), s: s,
		now: now, sleepUntil: sleepUntil, log: log,
	}
}

// Lag is how long a new call takes to show in the load: it rings before it carries audio, and the
// sampler averages over a second.
const Lag = 2 * time.Second

// WithActive makes the gate project the load of the dials started within Lag (see [Gate.Started]),
// which the sampled load does not show yet, so that a surge of dials is not let through in the second
// before the load rises. active reports the calls in progress (those just started included). The gate learns what a
// call costs: the load seen with no call in progress is the base, and with at least MinCalls calls in
// progress that have had time to show, a call costs (load − base) / those calls. A dial that would
// take the load plus the cost of the dials within Lag above the threshold waits one Recheck, as a hold,
// so that a surge is let in a little at a time while the load catches up. Until the first cost is
// learned (the first MinCalls calls), nothing is projected. It returns g.
func (g *Gate) WithActive(active func() int) *Gate {
	if g != nil {
		g.active = active
	}
	return g
}

// MinCalls is how many settled calls the per-call cost is learned from.
const MinCalls = 10

// projected is the load once the dials within Lag, and one more, show in it.
func (g *Gate) projected(load float64) float64 {
	if g.active == nil {
		return load
	}
	cut := g.now().Add(-Lag)
	i := 0
	for i < len(g.recent) && g.recent[i].Before(cut) {
		i++
	}
	g.recent = g.recent[:copy(g.recent, g.recent[i:])]
	active := g.active()
	if active == 0 {
		g.base = load
	}
	if settled := active - len(g.recent); settled >= MinCalls {
		g.cost = max(0, load-g.base) / float64(settled)
	}
	return load + g.cost*float64(len(g.recent)+1)
}

// Started records a dial the dispatcher started after Wait let it through, for the projection. It is
// separate from Wait because a dispatcher may wait for the gate and then find no job to start (a
// durable queue holds before it reads, and a read may come back empty): only dials count.
func (g *Gate) Started() {
	if g != nil && g.active != nil {
		g.recent = append(g.recent, g.now())
	}
}

// Wait returns nil at once when the load is at most the threshold (and, WithActive, so is its
// projection). Otherwise it holds: it counts a hold, looks at the load again every Recheck, and returns
// nil once the load is at most the resume level, or ctx.Err() as soon as ctx is done. A hold lasts at
// least one Recheck.
func (g *Gate) Wait(ctx context.Context) error {
	if g == nil {
		return nil
	}
	load := g.s.CPULoad()
	proj := g.projected(load)
	if !(proj > g.max) {
		return nil
	}
	g.mu.Lock()
	g.holds++
	g.holding, g.since = true, g.now()
	g.mu.Unlock()
	level := slog.LevelWarn
	if !(load > g.max) {
		level = slog.LevelDebug // pacing a surge, not an overload
	}
	g.log.LogAttrs(ctx, level, "dispatch: CPU above the limit, new dials held",
		slog.Float64("cpu_load", load), slog.Float64("projected", proj), slog.Float64("max_cpu", g.max))
	err := g.hold(ctx)
	g.mu.Lock()
	held := g.now().Sub(g.since)
	g.held += held
	g.holding = false
	g.mu.Unlock()
	if err == nil {
		if level == slog.LevelWarn {
			level = slog.LevelInfo
		}
		g.log.LogAttrs(ctx, level, "dispatch: new dials resumed", slog.Duration("held", held))
	}
	return err
}

// hold waits one Recheck, then looks at the load every Recheck until it is at most the resume level.
func (g *Gate) hold(ctx context.Context) error {
	for {
		if err := g.sleepUntil(ctx, g.now().Add(Recheck)); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !(g.s.CPULoad() > g.resume) {
			return nil
		}
	}
}

// Held returns the number of holds so far and their total length, the current one included.
func (g *Gate) Held() (holds uint64, d time.Duration) {
	if g == nil {
		return 0, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	d = g.held
	if g.holding {
		d += max(0, g.now().Sub(g.since))
	}
	return g.holds, d
}

// Load returns the sampler's load now, or 0 when the gate is off.
func (g *Gate) Load() float64 {
	if g == nil {
		return 0
	}
	return g.s.CPULoad()
}
