// Package streams is the durable dispatch.Queue: call jobs in a Redis Stream, read through a consumer
// group, so that several nodes share the work and the jobs a dead node had taken are reclaimed by the
// others. Its queue type is [Durable], named for what it adds to dispatch.Memory: jobs that outlive the
// node that accepted them.
//
// It owns the stream, the consumer group and this node's consumer in it, the lease on each job a node
// holds (kept alive by heartbeats), reclaiming jobs whose lease lapsed, acknowledging finished jobs, the
// dead-letter stream, deferring and handing back jobs, and what shutdown does with jobs not read. It
// schedules nothing itself: call slots, the CPU gate, the calls-per-second token, the prepare → call →
// finish sequence, the drain and the counters are dispatch.Runner's, which a Durable is built on (as a
// dispatch.Source). The calls-per-second budget is kept by the dispatch.RateLimiter in Config.Rate,
// which all nodes must share (the Redis store's Counters). It does not own what a call does
// ([dispatch.Caller]) nor the verification a job belongs to ([dispatch.Handler]); it never sees a code
// except in the Request the Runner hands to the Caller, and never stores or logs one. It takes a go-redis
// client and never closes it.
//
// # Keys
//
// All keys share the hash tag of Config.Stream, so in Redis Cluster the queue lives in one slot:
//
//	ivr:{calls}        the stream; each entry has one field, job, the dispatch.Job as JSON
//	ivr:{calls}:dead   the dead-letter stream: job, id (the original entry), deliveries, consumer
//
// An entry is deleted when it is acknowledged, so the stream's length is the number of jobs waiting or
// being called in the whole deployment. The calls-per-second budget is Config.Rate's, under
// Config.RateKey.
//
// # The life of a job
//
// [Durable.Enqueue] adds an entry (XADD, in a script that refuses it when QueueSize entries exist). A
// node's [Durable.Run] takes it (XREADGROUP with its own consumer name) once it has a free call slot and
// its CPU load is at most MaxCPU (see below), waits for a token of the shared budget, and prepares and
// calls it as dispatch.Runner does; then, after [dispatch.Handler.Finish], XACK and XDEL. A Prepare error
// (ErrSkip or any other) is reported to [dispatch.Handler.Skipped] and the entry acknowledged: the queue
// never retries a job by itself. A Prepare that returns a *dispatch.Deferred is the exception: the entry
// is handed back unreported, its delivery count restored, to be reclaimed by any node once the deferral
// is over (or after Lease, whichever is sooner), so a job waiting for something holds no call slot.
// While a node holds a job, from the read to the acknowledgement, it renews the job's lease every
// Lease/3 (XCLAIM of its own entry with JUSTID, which resets the idle time without counting a delivery),
// so a long call is never taken over by another node.
//
// A job is delivered again only when the node holding it stopped renewing it for Lease: it died, hung, or
// lost Redis. Every node looks for such jobs every Lease/2 (XAUTOCLAIM with a minimum idle time of Lease)
// and runs them like new ones, so Prepare sees them again; Prepare is where the dial is claimed in the
// verification (see [dispatch.Handler]), so a job whose INVITE had already left is skipped there and never
// dialled twice. A job delivered more than MaxDeliveries times (it keeps killing or hanging the nodes that
// take it) is moved to the dead-letter stream instead and reported Skipped with an error wrapping
// [ErrDeadLetter]; an entry that is not a valid job is dead-lettered without reaching the Handler.
//
// # Admission by CPU
//
// A node whose CPU load is above MaxCPU (dispatch.Config; measured by its CPUSampler) stops reading: it
// neither reads new entries nor reclaims lapsed ones, so the jobs stay in the stream for the nodes that
// have CPU to spare, or wait there if none has. It looks at the load again every 250 ms and reads again
// once the load is at most MaxCPU − 0.05 (or MaxCPU/2, if that is higher). The jobs it already holds are
// not affected: calls in progress run on, their leases are renewed, and a job read before the hold goes
// on to its token and Prepare.
//
// # Shutdown
//
// When Run's context is done the node stops reading. A job it had read but not yet prepared (it was
// waiting for a token) is handed back: its idle time is set to Lease and its delivery count restored, so
// the next node to look takes it at once and it does not count as a delivery; it is not reported to the
// Handler. A Prepare in progress completes (its context is the call's, not Run's: the Runner's
// dispatch.DialPrepared), and a prepared job is dialled, because Prepare has claimed its dial and no
// other node would place the call. Calls in progress run on for up to DrainTimeout, then their context
// is cancelled so they hang up. Jobs never read stay in the stream for the other nodes. Nothing is
// reported Skipped with ErrClosed.
//
// Redis 6.2 or later is required (XAUTOCLAIM); the tests run against 7.0. Consumers are never removed
// from the group: a deployment whose nodes take a new name at each start (hostname-pid) accumulates
// idle, empty consumers, which cost nothing but a line in XINFO CONSUMERS.
package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/voiceotp/voiceotp/dispatch"
)

// Errors callers branch on.
var (
	// ErrDeadLetter is wrapped by the error passed to Handler.Skipped for a job that was delivered more
	// than MaxDeliveries times and was moved to the dead-letter stream without being dialled. It is
	// dispatch.ErrDeadLetter, so a Handler can branch on it without importing this package.
	ErrDeadLetter = dispatch.ErrDeadLetter
	// ErrUnavailable is wrapped by Enqueue's error when Redis could not be reached or failed; the job may
	// or may not have been stored (a timeout can hide a success). Like ErrQueueFull, it is a refusal to
	// try again later.
	ErrUnavailable = errors.New("streams: redis unavailable")
)

// Defaults of Config.
const (
	DefaultStream        = "ivr:{calls}"
	DefaultGroup         = "ivr"
	DefaultLease         = 30 * time.Second
	DefaultMaxDeliveries = 5
	DefaultBlockTime     = 2 * time.Second
)

// Config sets up a Durable. Zero fields take the documented defaults; Consumer and Rate are required.
type Config struct {
	// Config holds the limits of the node, with dispatch's defaults: MaxConcurrent calls on this node,
	// CPS for the whole deployment, QueueSize for the whole stream (waiting plus in-progress jobs), MaxCPU
	// and CPU for this node (above MaxCPU it stops reading), DrainTimeout and Logger. Rate is required
	// here: it keeps the CPS budget for every node on the same RateKey, so it must be shared by them (the
	// Redis store's Counters).
	dispatch.Config

	// Stream is the stream's key. If empty, DefaultStream ("ivr:{calls}"). Keep a hash tag in it: the
	// dead-letter key is derived from it and must be in its slot.
	Stream string
	// Group is the consumer group that every node joins. If empty, DefaultGroup ("ivr").
	Group string
	// Consumer names this node in the group, unique among live nodes (for example hostname-pid).
	// Required. A node restarted under the same name does not resume its old jobs directly: they are
	// reclaimed after Lease like any dead node's.
	Consumer string
	// Lease is how long a job may go without a heartbeat before another node may reclaim it. If zero or
	// negative, DefaultLease (30 s). Heartbeats run every Lease/3 and reclaims every Lease/2.
	Lease time.Duration
	// MaxDeliveries is how many times a job may be delivered (read or reclaimed) before it is
	// dead-lettered. If zero or negative, DefaultMaxDeliveries (5).
	MaxDeliveries int
	// BlockTime is how long one read waits for a new job, which also bounds how long Run takes to notice
	// its context is done. If zero or negative, DefaultBlockTime (2 s); at most Lease/2.
	BlockTime time.Duration
}

func (c Config) withDefaults() Config {
	c.Config = c.Config.WithDefaults()
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.MaxDeliveries <= 0 {
		c.MaxDeliveries = DefaultMaxDeliveries
	}
	if c.BlockTime <= 0 {
		c.BlockTime = DefaultBlockTime
	}
	c.BlockTime = min(c.BlockTime, c.Lease/2)
	return c
}

// Durable is a dispatch.Queue on a Redis Stream: the durable queue, whose jobs wait in Redis for any
// node and outlive the node that accepted them. Enqueue and Stats are safe for concurrent use, before,
// during and after Run, and Enqueue works on any node whether or not its Run is running. Run may be
// called once.
type Durable struct {
	c    goredis.UniversalClient
	cfg  Config // defaults applied; read-only
	dead string // the dead-letter stream
	log  *slog.Logger
	r    *dispatch.Runner

	// mu guards held.
	mu sync.Mutex
	// held are the entries this node has taken and not yet acknowledged, by entry id: their leases are
	// renewed by the heartbeat.
	held map[string]*heldJob

	queued atomic.Int64 // sampled by Run
}

// heldJob is one entry this node holds.
type heldJob struct {
	deliveries int64
	// ackPending says the job is done but its acknowledgement failed; the heartbeat retries it.
	ackPending bool
	// lost says another consumer owns the entry now; its lease is no longer renewed.
	lost bool
}

var _ dispatch.Queue = (*Durable)(nil)

// New returns a Durable on c with the settings of cfg. c, cfg.Consumer and cfg.Rate are required; New
// panics without them, or on an unknown cfg.CPUSource, as that is a wiring mistake. The Durable does not
// close c.
func New(c goredis.UniversalClient, cfg Config) *Durable {
	if c == nil || cfg.Consumer == "" || cfg.Rate == nil {
		panic("streams: New needs a client, a Consumer name and a shared Rate")
	}
	cfg = cfg.withDefaults()
	q := &Durable{
		c:    c,
		cfg:  cfg,
		dead: cfg.Stream + ":dead",
		log:  cfg.Logger.With(slog.String("consumer", cfg.Consumer)),
		held: make(map[string]*heldJob),
	}
	rc := cfg.Config
	rc.Logger = q.log
	q.r = dispatch.NewRunner(rc, dispatch.DialPrepared)
	return q
}

// enqueue adds a job unless the stream is full.
//
//	KEYS[1] the stream
//	ARGV[1] QueueSize, ARGV[2] the job's JSON
//	returns the new entry's id, or nil when the stream already has QueueSize entries
var enqueue = goredis.NewScript(`
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', 'job', ARGV[2])
`)

// Enqueue adds j to the stream without waiting. It returns ErrQueueFull (nothing stored) when the stream
// holds QueueSize jobs, waiting or in progress, across all nodes; ctx's error if ctx is already done; and
// an error wrapping ErrUnavailable when Redis fails. A zero j.EnqueuedAt is set to the current time.
func (q *Durable) Enqueue(ctx context.Context, j dispatch.Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if j.EnqueuedAt.IsZero() {
		j.EnqueuedAt = time.Now()
	}
	err := q.enqueue(ctx, j)
	q.r.CountEnqueue(err)
	return err
}

func (q *Durable) enqueue(ctx context.Context, j dispatch.Job) error {
	data, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("streams: encoding job: %w", err)
	}
	err = enqueue.Run(ctx, q.c, []string{q.cfg.Stream}, q.cfg.QueueSize, data).Err()
	switch {
	case errors.Is(err, goredis.Nil):
		return dispatch.ErrQueueFull
	case err != nil:
		return fmt.Errorf("%w: enqueue: %w", ErrUnavailable, err)
	}
	return nil
}

// Stats returns a snapshot of the counters. Queued is the number of jobs in the stream that no node has
// taken yet, across the deployment, as last sampled by Run (every Lease/3; 0 before Run); the other
// fields are this node's. Dead-lettered jobs count as Skipped; HeldForCPU counts the times this node
// stopped reading for CPU. It is safe for concurrent use.
func (q *Durable) Stats() dispatch.Stats {
	return q.r.Stats(int(q.queued.Load()))
}

// isNoGroup reports whether err says the stream or the group does not exist (someone deleted them).
func isNoGroup(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOGROUP")
}
