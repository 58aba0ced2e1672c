package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/voiceotp/voiceotp/dispatch"
)

// ackTimeout bounds one acknowledgement, dead-lettering or hand-back; they run on contexts of their own
// so that shutdown does not cut them short.
const ackTimeout = 5 * time.Second

// message is one entry taken from the stream.
type message struct {
	id         string
	raw        string // the job field; "" if missing
	deliveries int64
}

// Run dispatches jobs, placing calls with c and reporting to h, until ctx is done; see the package
// documentation for the life of a job and for shutdown, and dispatch.Runner for the order of the waits.
// This node reads a job (a reclaimed one first) only once it has a free call slot and its CPU load lets
// it, so that a busy node leaves the jobs to the others.
//
// Prepare and the call get contexts that are not ctx (dispatch.DialPrepared): they are cancelled only
// when DrainTimeout has passed after ctx is done, or by the Handler's stop, so a Prepare that has started
// completes its claim, and a call hangs up then. Run notices ctx within BlockTime (a blocked read is not
// interrupted), hands back the job it was holding for a token, waits for the calls in progress
// (cancelling them after DrainTimeout), makes a last attempt to acknowledge what it could not, and
// returns nil. It returns an error at once, without running, if c or h is nil or if it was called
// before.
//
// If Redis is unreachable Run keeps trying, logging each failure, and resumes by itself when Redis is
// back; jobs it was holding stay pending, and a node that cannot renew its leases for Lease loses them
// to the other nodes (whose Prepare then sees any dial already claimed).
func (q *Durable) Run(ctx context.Context, c dispatch.Caller, h dispatch.Handler) error {
	src := &source{q: q, rd: reader{q: q, cursor: "0-0"}}
	if err := q.r.Run(ctx, c, h, src); err != nil {
		return err
	}
	q.flushAcks()
	return nil
}

// source is a Durable's dispatch.Source: the consumer group, for the time of one Run.
type source struct {
	q       *Durable
	rd      reader
	grouped bool // the consumer group is known to exist
}

// Take holds for CPU before it reads, so that a busy node reads nothing, then reads one entry (a
// reclaimed one first). Entries that are not valid jobs, or were delivered too often, are dead-lettered
// on the way.
func (s *source) Take(ctx context.Context, hold func(context.Context) error) (dispatch.Delivery, bool) {
	q := s.q
	if !s.grouped {
		if !q.ensureGroup(ctx) {
			return dispatch.Delivery{}, false
		}
		s.grouped = true
	}
	for {
		if hold(ctx) != nil {
			return dispatch.Delivery{}, false
		}
		m, ok := s.rd.next(ctx)
		if !ok {
			return dispatch.Delivery{}, false
		}
		var j dispatch.Job
		if err := json.Unmarshal([]byte(m.raw), &j); err != nil || m.raw == "" {
			q.deadLetter(m, nil, "not a job")
			continue
		}
		if m.deliveries > int64(q.cfg.MaxDeliveries) {
			q.deadLetter(m, &j, "too many deliveries")
			continue
		}
		return dispatch.Delivery{
			Job:       j,
			Unstarted: func() { q.handBack(m) },
			Defer:     func(d *dispatch.Deferred) { q.deferJob(m, j, d) },
			Ended:     func() { q.ack(m.id) },
		}, true
	}
}

// Stopped leaves the jobs not read in the stream, for the other nodes.
func (*source) Stopped() {}

// Maintain renews the leases of the held entries, retries failed acknowledgements and samples the queue
// length.
func (s *source) Maintain(ctx context.Context) { s.q.maintain(ctx) }

// ensureGroup creates the consumer group (and the stream) if missing, retrying until it succeeds
// (true) or ctx is done (false). The group starts at the beginning of the stream, so jobs enqueued
// before any node ran are taken.
func (q *Durable) ensureGroup(ctx context.Context) bool {
	for {
		err := q.c.XGroupCreateMkStream(ctx, q.cfg.Stream, q.cfg.Group, "0").Err()
		if err == nil || goredis.HasErrorPrefix(err, "BUSYGROUP") {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		q.log.Warn("streams: creating the consumer group", slog.String("error", err.Error()))
		if sleep(ctx, q.retryPause()) != nil {
			return false
		}
	}
}

// retryPause is how long the loop waits after a Redis error.
func (q *Durable) retryPause() time.Duration {
	return min(max(q.cfg.BlockTime, 10*time.Millisecond), time.Second)
}

// sleep waits d or until ctx is done, and returns ctx's error in the latter case.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// reader takes the next entry for the loop: reclaimed ones first, when a reclaim is due, then new ones.
// It is used by the Run goroutine only.
type reader struct {
	q         *Durable
	cursor    string    // XAUTOCLAIM's cursor; "0-0" starts a new pass
	nextClaim time.Time // when the next reclaim pass is due; zero: now
}

// next returns one entry, now held by this node, or false after BlockTime without one, on a Redis error
// (after a pause) or when ctx is done.
func (r *reader) next(ctx context.Context) (message, bool) {
	q := r.q
	// A reclaim pass walks the group's pending entries a few at a time; finish it before reading.
	for !time.Now().Before(r.nextClaim) && ctx.Err() == nil {
		m, ok, more := r.reclaim(ctx)
		if ok {
			return m, true
		}
		if !more {
			break
		}
	}
	res, err := q.c.XReadGroup(ctx, &goredis.XReadGroupArgs{
		Group:    q.cfg.Group,
		Consumer: q.cfg.Consumer,
		Streams:  []string{q.cfg.Stream, ">"},
		Count:    1,
		Block:    q.cfg.BlockTime,
	}).Result()
	switch {
	case errors.Is(err, goredis.Nil):
		return message{}, false
	case err != nil:
		q.redisFailed(ctx, "reading jobs", err)
		return message{}, false
	}
	for _, s := range res {
		for _, x := range s.Messages {
			m := toMessage(x, 1)
			q.hold(m)
			return m, true
		}
	}
	return message{}, false
}

// reclaim claims one entry whose lease lapsed, if there is one, continuing the pass from its cursor.
// more says the pass has not reached the end of the pending entries.
func (r *reader) reclaim(ctx context.Context) (m message, ok, more bool) {
	q := r.q
	msgs, cursor, err := q.c.XAutoClaim(ctx, &goredis.XAutoClaimArgs{
		Stream:   q.cfg.Stream,
		Group:    q.cfg.Group,
		Consumer: q.cfg.Consumer,
		MinIdle:  q.cfg.Lease,
		Start:    r.cursor,
		Count:    1,
	}).Result()
	if err != nil {
		q.redisFailed(ctx, "reclaiming jobs", err)
		return message{}, false, false
	}
	r.cursor, more = cursor, true
	if cursor == "0-0" || cursor == "" {
		r.cursor, more = "0-0", false
		r.nextClaim = time.Now().Add(q.cfg.Lease / 2)
		q.log.Debug("streams: looked for lapsed leases")
	}
	if len(msgs) == 0 {
		return message{}, false, more
	}
	x := msgs[0]
	// XAUTOCLAIM counted this delivery; read the count to decide about dead-lettering.
	n := int64(q.cfg.MaxDeliveries) // if the count cannot be read, assume the worst short of dead-lettering
	pend, err := q.c.XPendingExt(ctx, &goredis.XPendingExtArgs{
		Stream: q.cfg.Stream, Group: q.cfg.Group, Start: x.ID, End: x.ID, Count: 1, Consumer: q.cfg.Consumer,
	}).Result()
	if err == nil && len(pend) == 1 {
		n = pend[0].RetryCount
	}
	m = toMessage(x, n)
	q.hold(m)
	q.log.Info("streams: job reclaimed", slog.String("message_id", m.id), slog.Int64("deliveries", n))
	return m, true, more
}

func toMessage(x goredis.XMessage, deliveries int64) message {
	raw, _ := x.Values["job"].(string)
	return message{id: x.ID, raw: raw, deliveries: deliveries}
}

// redisFailed logs a failed Redis call of the loop and pauses, recreating the group if it vanished.
func (q *Durable) redisFailed(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	q.log.Warn("streams: "+what, slog.String("error", err.Error()))
	if isNoGroup(err) {
		q.ensureGroup(ctx)
		return
	}
	_ = sleep(ctx, q.retryPause())
}

func (q *Durable) hold(m message) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.held[m.id] = &heldJob{deliveries: m.deliveries}
}

func (q *Durable) release(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.held, id)
}

// ack acknowledges and deletes a finished entry. If Redis fails, the entry stays held, so its lease is
// renewed and the acknowledgement retried by the heartbeat, rather than another node running it again.
func (q *Durable) ack(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	if err := q.ackDel(ctx, id); err != nil {
		q.log.Warn("streams: acknowledging a job", slog.String("message_id", id), slog.String("error", err.Error()))
		q.mu.Lock()
		if h := q.held[id]; h != nil {
			h.ackPending = true
		}
		q.mu.Unlock()
		return
	}
	q.release(id)
}

func (q *Durable) ackDel(ctx context.Context, id string) error {
	_, err := q.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.XAck(ctx, q.cfg.Stream, q.cfg.Group, id)
		p.XDel(ctx, q.cfg.Stream, id)
		return nil
	})
	return err
}

// deadLetter moves an entry to the dead-letter stream in one transaction (XADD there, XACK and XDEL
// here) and reports its job, if it has one, Skipped with ErrDeadLetter. If Redis fails the entry is let
// go, to be reclaimed and tried again.
func (q *Durable) deadLetter(m message, j *dispatch.Job, reason string) {
	defer q.release(m.id)
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	_, err := q.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.XAdd(ctx, &goredis.XAddArgs{Stream: q.dead, Values: []any{
			"job", m.raw,
			"id", m.id,
			"deliveries", m.deliveries,
			"consumer", q.cfg.Consumer,
			"reason", reason,
		}})
		p.XAck(ctx, q.cfg.Stream, q.cfg.Group, m.id)
		p.XDel(ctx, q.cfg.Stream, m.id)
		return nil
	})
	attrs := []slog.Attr{slog.String("message_id", m.id), slog.Int64("deliveries", m.deliveries), slog.String("reason", reason)}
	if j != nil {
		attrs = append(attrs, j.LogAttrs()...)
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
		q.log.LogAttrs(ctx, slog.LevelWarn, "streams: dead-lettering a job failed", attrs...)
		return
	}
	q.log.LogAttrs(ctx, slog.LevelWarn, "streams: job dead-lettered", attrs...)
	if j != nil {
		q.r.Skip(*j, fmt.Errorf("%w: delivered %d times, at most %d allowed", ErrDeadLetter, m.deliveries, q.cfg.MaxDeliveries))
	}
}

// giveBack makes an entry this consumer owns look as if its lease had lapsed, with the given delivery
// count, so that the next XAUTOCLAIM by any node takes it. An entry owned by another consumer is left
// alone.
//
//	KEYS[1] the stream
//	ARGV[1] the group, ARGV[2] this consumer, ARGV[3] the entry id, ARGV[4] the lease in ms,
//	ARGV[5] the delivery count to set
//	returns 1 if handed back, 0 if this consumer did not own the entry
var giveBack = goredis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #p == 0 then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'RETRYCOUNT', ARGV[5], 'JUSTID')
return 1
`)

// handBack returns an entry this node read but will not start: its idle time is set to Lease, so the
// next reclaim by any node takes it at once, and its delivery count is put back to what it was before
// this node's delivery. If that fails the entry is simply no longer renewed, and is reclaimed after Lease.
func (q *Durable) handBack(m message) {
	defer q.release(m.id)
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	err := giveBack.Run(ctx, q.c, []string{q.cfg.Stream}, q.cfg.Group, q.cfg.Consumer, m.id,
		q.cfg.Lease.Milliseconds(), max(0, m.deliveries-1)).Err()
	if err != nil {
		q.log.Warn("streams: handing back a job", slog.String("message_id", m.id), slog.String("error", err.Error()))
		return
	}
	q.log.Info("streams: job handed back at shutdown", slog.String("message_id", m.id))
}

// deferJob hands back an entry whose Prepare deferred it, so that it is reclaimed (by any node) once
// d.Until has come, or after Lease if that is sooner than d.Until; the Prepare then decides again. Its
// delivery count is put back, so a job deferred many times is never dead-lettered for it. If the hand
// back fails the entry is simply no longer renewed, and is reclaimed after Lease.
func (q *Durable) deferJob(m message, j dispatch.Job, d *dispatch.Deferred) {
	defer q.release(m.id)
	idle := q.cfg.Lease - time.Until(d.Until)
	idle = min(max(idle, 0), q.cfg.Lease)
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	attrs := append(j.LogAttrs(), slog.String("message_id", m.id), slog.Time("until", d.Until), slog.String("reason", d.Reason.Error()))
	err := giveBack.Run(ctx, q.c, []string{q.cfg.Stream}, q.cfg.Group, q.cfg.Consumer, m.id,
		idle.Milliseconds(), max(0, m.deliveries-1)).Err()
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
		q.log.LogAttrs(ctx, slog.LevelWarn, "streams: deferring a job failed; it is reclaimed after the lease", attrs...)
		return
	}
	q.log.LogAttrs(ctx, slog.LevelInfo, "streams: job deferred", attrs...)
}

// maintain renews the leases of held entries, retries failed acknowledgements and samples the queue
// length, every Lease/3 until ctx is done.
func (q *Durable) maintain(ctx context.Context) {
	t := time.NewTicker(q.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		q.heartbeat(ctx)
		q.sample(ctx)
	}
}

// renew resets the idle time of each entry that this consumer still owns (XCLAIM with JUSTID neither
// changes the owner nor counts a delivery) and returns the ids it no longer owns.
//
//	KEYS[1] the stream
//	ARGV[1] the group, ARGV[2] this consumer, ARGV[3..] the entry ids
var renew = goredis.NewScript(`
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p == 1 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
`)

// heartbeat renews the leases of the held entries and retries pending acknowledgements.
func (q *Durable) heartbeat(ctx context.Context) {
	q.mu.Lock()
	args := []any{q.cfg.Group, q.cfg.Consumer}
	var acks []string
	for id, h := range q.held {
		if h.lost {
			continue
		}
		args = append(args, id)
		if h.ackPending {
			acks = append(acks, id)
		}
	}
	q.mu.Unlock()
	if len(args) == 2 {
		return
	}
	lost, err := renew.Run(ctx, q.c, []string{q.cfg.Stream}, args...).StringSlice()
	if err != nil {
		if ctx.Err() == nil {
			q.log.Warn("streams: renewing job leases", slog.String("error", err.Error()))
		}
		return
	}
	for _, id := range lost {
		// Another node reclaimed it (this node lost Redis for longer than Lease); that node's Prepare sees
		// any dial already claimed. A call in progress here runs on and acknowledges when done.
		q.log.Warn("streams: job lease lost to another node", slog.String("message_id", id))
		q.mu.Lock()
		if h := q.held[id]; h != nil {
			h.lost = true
			if h.ackPending {
				delete(q.held, id)
			}
		}
		q.mu.Unlock()
	}
	for _, id := range acks {
		if err := q.ackDel(ctx, id); err == nil {
			q.release(id)
		}
	}
}

// flushAcks makes a last attempt at the acknowledgements that failed, at the end of Run.
func (q *Durable) flushAcks() {
	q.mu.Lock()
	var ids []string
	for id, h := range q.held {
		if h.ackPending {
			ids = append(ids, id)
		}
	}
	q.mu.Unlock()
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
		err := q.ackDel(ctx, id)
		cancel()
		if err != nil {
			q.log.Warn("streams: job left unacknowledged; another node will reclaim it and its Prepare skip it",
				slog.String("message_id", id), slog.String("error", err.Error()))
		}
		q.release(id)
	}
}

// sample sets the Queued gauge: entries in the stream minus those delivered and not yet acknowledged.
func (q *Durable) sample(ctx context.Context) {
	pipe := q.c.Pipeline()
	n := pipe.XLen(ctx, q.cfg.Stream)
	p := pipe.XPending(ctx, q.cfg.Stream, q.cfg.Group)
	if _, err := pipe.Exec(ctx); err != nil {
		return
	}
	q.queued.Store(max(0, n.Val()-p.Val().Count))
}
