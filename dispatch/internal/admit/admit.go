// Package admit holds new dials while the process is too busy: the CPU half of the admission control
// that dispatch.Memory and dispatch/streams share (the other half, the number of calls in progress, is
// each queue's call slots).
//
// It owns the threshold, its hysteresis and the hold counters. It does not own the queue (a held job
// stays wherever its queue keeps it, and a streams node simply does not read) nor the measurement, which
// is a [Sampler] it is given.
package admit

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

// Gate holds a dispatcher while the load is above its threshold. Wait is called by one goroutine, the
// dispatcher's; Held and Load are safe for concurrent use. A nil *Gate is off: Wait returns nil at once
// and the counters are zero.
type Gate struct {
	max, resume float64
	s           Sampler
	now         func() time.Time
	sleepUntil  func(ctx context.Context, t time.Time) error
	log         *slog.Logger

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

// Wait returns nil at once when the load is at most the threshold. Otherwise it holds: it counts a
// hold, looks at the load again every Recheck, and returns nil once the load is at most the resume
// level, or ctx.Err() as soon as ctx is done.
func (g *Gate) Wait(ctx context.Context) error {
	if g == nil {
		return nil
	}
	load := g.s.CPULoad()
	if !(load > g.max) {
		return nil
	}
	g.mu.Lock()
	g.holds++
	g.holding, g.since = true, g.now()
	g.mu.Unlock()
	g.log.LogAttrs(ctx, slog.LevelWarn, "dispatch: CPU above the limit, new dials held",
		slog.Float64("cpu_load", load), slog.Float64("max_cpu", g.max))
	err := g.hold(ctx, load)
	g.mu.Lock()
	held := g.now().Sub(g.since)
	g.held += held
	g.holding = false
	g.mu.Unlock()
	if err == nil {
		g.log.LogAttrs(ctx, slog.LevelInfo, "dispatch: new dials resumed", slog.Duration("held", held))
	}
	return err
}

// hold looks at the load every Recheck until it is at most the resume level.
func (g *Gate) hold(ctx context.Context, load float64) error {
	for load > g.resume {
		if err := g.sleepUntil(ctx, g.now().Add(Recheck)); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		load = g.s.CPULoad()
	}
	return nil
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
