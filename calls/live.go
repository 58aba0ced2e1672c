package calls

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/otp"
)

// liveCalls are the calls this node holds live (from their claim to their result), by verification, so
// that the end of a verification can stop them.
type liveCalls struct {
	mu sync.Mutex // guards byVerification
	// byVerification maps a verification id to its live calls by call id.
	byVerification map[string]map[string]*liveCall
}

type liveCall struct {
	stop    context.CancelCauseFunc
	timer   *time.Timer // fires at the verification's expiry; nil until set
	stopped string      // the cause it was stopped with; "" while not stopped
}

func (l *liveCalls) init() { l.byVerification = map[string]map[string]*liveCall{} }

func (l *liveCalls) add(j dispatch.Job, stop context.CancelCauseFunc) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.byVerification[j.VerificationID]
	if m == nil {
		m = map[string]*liveCall{}
		l.byVerification[j.VerificationID] = m
	}
	m[j.CallID] = &liveCall{stop: stop}
}

// expireAt runs f after d (the time left until the verification expires), unless the call ends first.
func (l *liveCalls) expireAt(j dispatch.Job, d time.Duration, f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc := l.byVerification[j.VerificationID][j.CallID]; lc != nil {
		lc.timer = time.AfterFunc(max(d, 0), f)
	}
}

// remove forgets a call that ended, or was not dialled, and returns the cause it was stopped with
// ("" if it was not); removing it twice is harmless.
func (l *liveCalls) remove(j dispatch.Job) (stopped string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.byVerification[j.VerificationID]
	lc := m[j.CallID]
	if lc == nil {
		return ""
	}
	if lc.timer != nil {
		lc.timer.Stop()
	}
	delete(m, j.CallID)
	if len(m) == 0 {
		delete(l.byVerification, j.VerificationID)
	}
	return lc.stopped
}

// stop ends every live call of the verification id with cause, and reports how many it stopped that
// were not stopped before. A call stopped twice keeps the first cause.
func (l *liveCalls) stop(id, cause string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, lc := range l.byVerification[id] {
		if lc.stopped == "" {
			lc.stopped = cause
			n++
		}
		lc.stop(&callflow.Stop{Cause: cause})
	}
	return n
}

func (l *liveCalls) has(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byVerification[id]) > 0
}

// ids returns the verifications that have live calls here.
func (l *liveCalls) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.byVerification))
	for id := range l.byVerification {
		out = append(out, id)
	}
	return out
}

// confirm returns the callflow.Request.Confirm of a call of verification id: one store read before each
// play of the code, refusing it when the verification is no longer pending. A store that cannot be read
// does not stop the call: the code of a verification that ended cannot approve anything, and a store
// outage must not cut off the calls in progress.
func (c *Calls) confirm(id string) func(context.Context) error {
	return func(ctx context.Context) error {
		rctx, cancel := context.WithTimeout(ctx, storeTimeout)
		defer cancel()
		v, err := c.svc.Get(rctx, id)
		switch {
		case err == nil && v.Status == otp.StatusPending:
			return nil
		case err == nil:
			c.log.Info("code not played: the verification ended", slog.String("verification_id", id),
				slog.String("status", string(v.Status)))
			return &callflow.Stop{Cause: stopCause(v.Status)}
		case ctx.Err() != nil:
			return nil // the call is ending anyway
		default:
			c.log.Warn("verification not read before playing the code; playing it", slog.String("verification_id", id),
				slog.String("error", err.Error()))
			return nil
		}
	}
}

// expire applies the due expiry of verification id and, if this node is the one that takes it from
// Expiries, announces it (verification.expired). Either way, if the verification is no longer pending,
// its calls are stopped. It reports whether the index could be read (false: Redis failed).
func (c *Calls) expire(id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	took := c.expiries == nil // without an index, the timer of the live call is the only announcer
	if c.expiries != nil {
		var err error
		if took, err = c.expiries.Take(ctx, id); err != nil {
			c.log.Warn("expiry not taken", slog.String("verification_id", id), slog.String("error", err.Error()))
			c.stopIfEnded(ctx, id)
			return false
		}
	}
	v, err := c.svc.Get(ctx, id)
	if err != nil {
		if took && err != otp.ErrNotFound {
			c.log.Warn("expiry not applied", slog.String("verification_id", id), slog.String("error", err.Error()))
		}
		return true
	}
	switch {
	case v.Status == otp.StatusPending:
		// Not due by the store's clock after all: index it again, for the next sweep.
		if took && c.expiries != nil {
			if err := c.expiries.Add(ctx, id, v.ExpiresAt); err != nil {
				c.log.Warn("expiry not indexed", slog.String("verification_id", id), slog.String("error", err.Error()))
			}
		}
	case took && v.Status == otp.StatusExpired:
		c.log.Info("verification expired", slog.String("verification_id", id))
		c.m.expired.Inc()
		c.webhook(v, "verification.expired", statusData(v))
		c.ended(ctx, v)
		c.recordEnd(ctx, v)
	default:
		c.live.stop(id, stopCause(v.Status))
	}
	return true
}

// stopIfEnded stops this node's live calls of verification id if the store says it ended, and returns
// how many it stopped.
func (c *Calls) stopIfEnded(ctx context.Context, id string) int {
	if !c.live.has(id) {
		return 0
	}
	if v, err := c.svc.Get(ctx, id); err == nil && v.Status != otp.StatusPending {
		return c.live.stop(id, stopCause(v.Status))
	}
	return 0
}

// sweepBatch bounds the ids one sweep takes from Expiries.
const sweepBatch = 100

// sweepExpiries applies due expiries every Config.ExpiryInterval until ctx is done.
func (c *Calls) sweepExpiries(ctx context.Context) {
	if c.expiries == nil {
		return
	}
	every(ctx, c.cfg.ExpiryInterval, func() {
		// A full batch is followed by another at once, unless the index failed: then the next tick.
		for full := true; full && ctx.Err() == nil; {
			ids, err := c.expiries.Due(ctx, c.now(), sweepBatch)
			if err != nil {
				if ctx.Err() == nil {
					c.log.Warn("due expiries not read", slog.String("error", err.Error()))
				}
				break
			}
			full = len(ids) == sweepBatch
			for _, id := range ids {
				if !c.expire(id) {
					full = false
				}
			}
		}
	})
}

// every runs f every d until ctx is done.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// watchLive reads, every Config.WatchInterval, the verification of each call this node holds live,
// and stops the calls of those that ended: the backstop for an end whose signal was lost.
func (c *Calls) watchLive(ctx context.Context) {
	if c.cfg.WatchInterval < 0 {
		return
	}
	every(ctx, c.cfg.WatchInterval, func() {
		for _, id := range c.live.ids() {
			rctx, cancel := context.WithTimeout(ctx, storeTimeout)
			if n := c.stopIfEnded(rctx, id); n > 0 {
				c.log.Info("live call stopped by the watch", slog.String("verification_id", id))
			}
			cancel()
		}
	})
}

// subscribe stops this node's live calls of the verifications that other nodes end, until ctx is done.
// A subscription that fails is tried again after a pause.
func (c *Calls) subscribe(ctx context.Context) {
	if c.signals == nil {
		return
	}
	for ctx.Err() == nil {
		err := c.signals.Subscribe(ctx, func(id, status string) {
			if n := c.live.stop(id, stopCause(otp.Status(status))); n > 0 {
				c.log.Info("live call stopped: its verification ended", slog.String("verification_id", id),
					slog.String("status", status))
			}
		})
		if err == nil || ctx.Err() != nil {
			return
		}
		c.log.Warn("not subscribed to the ends of verifications; retrying", slog.String("error", err.Error()))
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
