package streams_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/dispatch/streams"
	"github.com/voiceotp/voiceotp/store/redis"
	"github.com/voiceotp/voiceotp/store/redis/redistest"
)

func TestEveryJobRunsOnceAcrossTwoNodes(t *testing.T) {
	fresh(t)
	cl := newClaims()
	a := newNode(t, config("a"), nil, cl)
	b := newNode(t, config("b"), nil, cl)
	stopA := a.start(t)
	b.start(t)
	const n = 60
	for i := range n {
		// Either node accepts jobs, as any node's API would.
		mustEnqueue(t, []*streams.Durable{a.q, b.q}[i%2], job(i))
	}
	waitReports(t, n, a.rec, b.rec)

	sa, sb := a.rec.snapshot(), b.rec.snapshot()
	da, db := a.caller.dialled(), b.caller.dialled()
	for i := range n {
		j := job(i)
		if got := sa.finished[j.CallID] + sb.finished[j.CallID]; got != 1 {
			t.Errorf("%s finished %d times, want 1", j.CallID, got)
		}
		if got := da[j.To] + db[j.To]; got != 1 {
			t.Errorf("%s dialled %d times, want 1", j.CallID, got)
		}
		if got := sa.prepared[j.CallID] + sb.prepared[j.CallID]; got != 1 {
			t.Errorf("%s prepared %d times, want 1", j.CallID, got)
		}
	}
	if len(sa.skipped)+len(sb.skipped) != 0 {
		t.Errorf("skipped: %v %v", sa.skipped, sb.skipped)
	}
	if v := append(sa.violations, sb.violations...); len(v) > 0 {
		t.Errorf("handler contract violations: %v", v)
	}
	t.Logf("node a ran %d jobs, node b %d", len(sa.finished), len(sb.finished))
	// Acknowledged entries are deleted: nothing is left in the stream nor pending.
	waitAcked(t, a.c)
	stopA()
	if st := a.q.Stats(); st.Enqueued != n/2 || st.Dialled != uint64(len(sa.finished)) || st.Active != 0 {
		t.Errorf("a's stats = %+v", st)
	}
}

// TestReclaimFromDeadConsumer has a consumer take jobs and die without acknowledging them; one of them
// it had dialled (its claim is in the verification). After the lease the survivor takes all of them:
// it dials the others, and its Prepare sees the claim of the dialled one and skips it. The dead consumer
// may be another node, or this very node before a crash and a restart under the same name.
func TestReclaimFromDeadConsumer(t *testing.T) {
	for _, dead := range []string{"dead", "survivor"} {
		t.Run(dead, func(t *testing.T) {
			fresh(t)
			probe := srv.Client(t)
			createGroup(t, probe)
			cl := newClaims()
			survivor := newNode(t, config("survivor"), nil, cl)
			mustEnqueue(t, survivor.q, job(0), job(1), job(2), job(3))
			takeAsDead(t, probe, dead, 3) // jobs 0, 1, 2
			taken := time.Now()
			cl.claim(job(0).CallID, dead) // the dead node had sent job 0's INVITE

			survivor.start(t)
			waitReports(t, 4, survivor.rec)
			reclaimedAfter := time.Since(taken)

			s := survivor.rec.snapshot()
			d := survivor.caller.dialled()
			for i := range 4 {
				j := job(i)
				if s.prepared[j.CallID] != 1 {
					t.Errorf("%s prepared %d times by the survivor, want 1", j.CallID, s.prepared[j.CallID])
				}
			}
			if errs := s.skipped[job(0).CallID]; len(errs) != 1 || !errors.Is(errs[0], dispatch.ErrSkip) || d[job(0).To] != 0 {
				t.Errorf("job 0, dialled by the dead node: skipped %v, dialled %d; want skipped with ErrSkip, not dialled", errs, d[job(0).To])
			}
			for i := 1; i < 4; i++ {
				if j := job(i); s.finished[j.CallID] != 1 || d[j.To] != 1 {
					t.Errorf("%s: finished %d, dialled %d; want 1, 1", j.CallID, s.finished[j.CallID], d[j.To])
				}
			}
			if lease := config("").Lease; reclaimedAfter < lease-50*time.Millisecond {
				t.Errorf("the dead consumer's jobs were all reported %v after it took them, before the lease of %v", reclaimedAfter, lease)
			}
			waitAcked(t, probe)
		})
	}
}

// TestLongCallKeepsItsLease runs a call for several leases on node a while node b looks for lapsed
// leases all along: the heartbeat must keep b from taking the job.
func TestLongCallKeepsItsLease(t *testing.T) {
	fresh(t)
	release := make(chan struct{})
	long := newFakeCaller(func(ctx context.Context, _ callflow.Request) callflow.Outcome {
		select {
		case <-release:
			return callflow.Delivered
		case <-ctx.Done():
			return callflow.Canceled
		}
	})
	a := newNode(t, config("a"), long, nil)
	cfgB := config("b")
	logsB := newLogWatch()
	cfgB.Logger = slog.New(logsB)
	b := newNode(t, cfgB, nil, nil)
	mustEnqueue(t, a.q, job(0))
	a.start(t)
	waitFor(t, "a to dial", func() bool { return a.q.Stats().Dialled > 0 })
	// b looks for lapsed leases at once and then every Lease/2: by its 8th look the job has been held
	// for 3.5 leases, so at least 5 of those looks came when its lease would have lapsed without the
	// heartbeat.
	b.start(t)
	logsB.waitCount(t, 8, "streams: looked for lapsed leases")
	if s := b.rec.snapshot(); len(s.prepared) != 0 {
		t.Fatalf("b took the job of a live call: %v", s.prepared)
	}
	p := pending(t, a.c)
	if len(p) != 1 || p[0].Consumer != "a" || p[0].RetryCount != 1 {
		t.Fatalf("pending = %+v, want the job owned by a, delivered once", p)
	}
	close(release)
	waitReports(t, 1, a.rec)
	if s := a.rec.snapshot(); s.finished[job(0).CallID] != 1 {
		t.Errorf("a finished %v", s.finished)
	}
}

// TestDeadLetter gives a job a history of deliveries to consumers that died, and checks that the
// survivor dials it while it has deliveries left and dead-letters it after MaxDeliveries.
func TestDeadLetter(t *testing.T) {
	const max = 3
	tests := []struct {
		name     string
		previous int // deliveries before the survivor's
		wantDead bool
	}{
		{"FirstRedelivery", 1, false},
		{"LastAllowed", max - 1, false},
		{"OneTooMany", max, true},
		{"ManyTooMany", max + 4, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fresh(t)
			probe := srv.Client(t)
			createGroup(t, probe)
			cfg := config("survivor")
			cfg.MaxDeliveries = max
			survivor := newNode(t, cfg, nil, nil)
			mustEnqueue(t, survivor.q, job(0))
			takeAsDead(t, probe, "dead", 1)
			p := pending(t, probe)
			// Pretend it was delivered tc.previous times and its lease lapsed long ago.
			if err := probe.Do(context.Background(), "XCLAIM", streams.DefaultStream, streams.DefaultGroup, "dead", 0, p[0].ID,
				"IDLE", 3600000, "RETRYCOUNT", tc.previous, "JUSTID").Err(); err != nil {
				t.Fatal(err)
			}

			survivor.start(t)
			waitReports(t, 1, survivor.rec)
			s := survivor.rec.snapshot()
			dead, err := probe.XRange(context.Background(), streams.DefaultStream+":dead", "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			if !tc.wantDead {
				if s.finished[job(0).CallID] != 1 || len(dead) != 0 {
					t.Fatalf("finished %v, dead letters %d; want dialled and none", s.finished, len(dead))
				}
				return
			}
			errs := s.skipped[job(0).CallID]
			if len(errs) != 1 || !errors.Is(errs[0], streams.ErrDeadLetter) {
				t.Fatalf("skipped with %v, want ErrDeadLetter", errs)
			}
			if s.prepared[job(0).CallID] != 0 || len(survivor.caller.dialled()) != 0 {
				t.Error("a dead-lettered job was prepared or dialled")
			}
			if len(dead) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dead))
			}
			var j dispatch.Job
			if err := json.Unmarshal([]byte(dead[0].Values["job"].(string)), &j); err != nil || j.CallID != job(0).CallID {
				t.Errorf("dead letter holds %v (%v), want job 0", dead[0].Values, err)
			}
			if got := dead[0].Values["deliveries"]; got != fmt.Sprint(tc.previous+1) || dead[0].Values["id"] != p[0].ID {
				t.Errorf("dead letter = %v, want deliveries %d and id %s", dead[0].Values, tc.previous+1, p[0].ID)
			}
			waitAcked(t, probe)
			if st := survivor.q.Stats(); st.Skipped != 1 || st.Dialled != 0 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

func TestMalformedEntryIsDeadLettered(t *testing.T) {
	fresh(t)
	n := newNode(t, config("a"), nil, nil)
	ctx := context.Background()
	for _, vals := range [][]any{{"job", "{not json"}, {"other", "x"}} {
		if err := n.c.XAdd(ctx, &goredis.XAddArgs{Stream: streams.DefaultStream, Values: vals}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	mustEnqueue(t, n.q, job(0))
	n.start(t)
	waitReports(t, 1, n.rec) // the good job; the bad entries reach no Handler
	waitFor(t, "the malformed entries to be dead-lettered", func() bool {
		return n.c.XLen(ctx, streams.DefaultStream+":dead").Val() == 2
	})
	if s := n.rec.snapshot(); len(s.skipped) != 0 || s.finished[job(0).CallID] != 1 {
		t.Errorf("finished %v skipped %v", s.finished, s.skipped)
	}
}

// TestDrain stops a node with one call in progress and one job waiting for its calls-per-second token,
// and more never read. The call runs on (or is cancelled at the drain timeout); the waiting job is
// handed back with its delivery undone, and another node then runs it and the unread ones at once,
// without waiting for a lease. Nothing is reported Skipped.
func TestDrain(t *testing.T) {
	tests := []struct {
		name         string
		drainTimeout time.Duration
		callEnds     bool // the call ends by itself during the drain
		wantOutcome  callflow.Outcome
	}{
		{"CallEndsWithinDrain", 10 * time.Second, true, callflow.Delivered},
		{"CallOutlivesDrain", 300 * time.Millisecond, false, callflow.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fresh(t)
			started := make(chan struct{}, 1)
			end := make(chan struct{})
			var outcome callflow.Outcome
			var omu sync.Mutex
			caller := newFakeCaller(func(ctx context.Context, _ callflow.Request) callflow.Outcome {
				started <- struct{}{}
				out := callflow.Delivered
				select {
				case <-end:
				case <-ctx.Done():
					out = callflow.Canceled
				}
				omu.Lock()
				outcome = out
				omu.Unlock()
				return out
			})
			cfg := config("a")
			cfg.CPS = 0.05 // one token, then 20 s until the next: the second job waits
			cfg.Lease = 30 * time.Second
			cfg.DrainTimeout = tc.drainTimeout
			cfg.RateKey = "calls-a"
			a := newNode(t, cfg, caller, nil)
			mustEnqueue(t, a.q, job(0), job(1), job(2), job(3))
			stopA := a.start(t)
			<-started
			waitFor(t, "a to hold job 1 too (read, waiting for its token)", func() bool { return len(pending(t, a.c)) >= 2 })

			stopped := make(chan struct{})
			go func() {
				stopA()
				close(stopped)
			}()
			if tc.callEnds {
				// Run must wait for the call: it has not returned yet. The pause only gives a wrong
				// Run the chance to return; it waits for nothing.
				select {
				case <-stopped:
					t.Fatal("Run returned with a call in progress")
				case <-time.After(100 * time.Millisecond):
				}
				close(end)
			}
			<-stopped
			omu.Lock()
			if outcome != tc.wantOutcome {
				t.Errorf("the call in progress ended %s, want %s", outcome, tc.wantOutcome)
			}
			omu.Unlock()
			sa := a.rec.snapshot()
			if sa.finished[job(0).CallID] != 1 || len(sa.skipped) != 0 || len(sa.finished) != 1 {
				t.Fatalf("a finished %v and skipped %v; want job 0 finished and nothing skipped", sa.finished, sa.skipped)
			}
			if st := a.q.Stats(); (st.DrainCanceled == 1) == tc.callEnds {
				t.Errorf("DrainCanceled = %d", st.DrainCanceled)
			}
			// Job 1 is still pending on a, handed back: idle for a lease and its delivery undone.
			p := pending(t, a.c)
			if len(p) != 1 || p[0].Consumer != "a" || p[0].RetryCount != 0 || p[0].Idle < cfg.Lease {
				t.Fatalf("pending after a stopped = %+v; want job 1 on a, 0 deliveries, idle >= %v", p, cfg.Lease)
			}

			// Another node, with a lease of 30 s, runs the handed-back job and the unread ones now.
			cfgB := config("b")
			cfgB.Lease = 30 * time.Second
			b := newNode(t, cfgB, nil, nil)
			b.start(t)
			waitReports(t, 3, b.rec)
			sb := b.rec.snapshot()
			for i := 1; i < 4; i++ {
				if sb.finished[job(i).CallID] != 1 {
					t.Errorf("b finished %v, want jobs 1 to 3", sb.finished)
				}
			}
			if d := caller.dialled(); d[job(1).To] != 0 {
				t.Error("a dialled the job it handed back")
			}
		})
	}
}

// timedRate is the Redis store's Counters as a dispatch.RateLimiter that records Redis's time of each
// token granted, so the shared budget can be checked by the limiter's own clock.
type timedRate struct {
	c *redis.Counters

	mu    sync.Mutex // guards times
	times []time.Time
}

func (r *timedRate) TakeToken(ctx context.Context, key string, rate float64, burst int) (bool, time.Duration, error) {
	ok, wait, at, err := r.c.TakeTokenAt(ctx, key, rate, burst)
	if ok {
		r.mu.Lock()
		r.times = append(r.times, at)
		r.mu.Unlock()
	}
	return ok, wait, err
}

// TestSharedBudget runs two nodes on one calls-per-second budget and checks, by the limiter's own
// (Redis) timestamps, that no two calls of the deployment started closer than 1/CPS.
func TestSharedBudget(t *testing.T) {
	fresh(t)
	const cps = 40
	var nodes []*node
	var rates []*timedRate
	for _, name := range []string{"a", "b"} {
		cfg := config(name)
		cfg.CPS = cps
		rate := &timedRate{c: redis.NewCounters(srv.Client(t))}
		cfg.Rate = rate
		nodes = append(nodes, newNode(t, cfg, nil, nil))
		rates = append(rates, rate)
	}
	const jobs = 30
	for i := range jobs {
		mustEnqueue(t, nodes[0].q, job(i))
	}
	for _, n := range nodes {
		n.start(t)
	}
	waitReports(t, jobs, nodes[0].rec, nodes[1].rec)

	var times []time.Time
	for _, r := range rates {
		r.mu.Lock()
		times = append(times, r.times...)
		r.mu.Unlock()
	}
	if len(times) != jobs {
		t.Fatalf("%d tokens for %d jobs", len(times), jobs)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	interval := time.Second / cps
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < interval-time.Microsecond {
			t.Errorf("tokens %d and %d were %v apart, want at least %v", i-1, i, gap, interval)
		}
	}
	t.Logf("a dialled %d, b dialled %d", nodes[0].q.Stats().Dialled, nodes[1].q.Stats().Dialled)
}

func TestEnqueue(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		size   int
		ctx    context.Context
		before int
		want   error
	}{
		{"Room", 2, context.Background(), 1, nil},
		{"Full", 2, context.Background(), 2, dispatch.ErrQueueFull},
		{"ContextDone", 2, canceled, 0, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fresh(t)
			cfg := config("a")
			cfg.QueueSize = tc.size
			n := newNode(t, cfg, nil, nil)
			for i := range tc.before {
				mustEnqueue(t, n.q, job(i))
			}
			err := n.q.Enqueue(tc.ctx, job(99))
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Enqueue = %v, want %v", err, tc.want)
			}
			want := int64(tc.before)
			if err == nil {
				want++
			}
			if l := n.c.XLen(context.Background(), streams.DefaultStream).Val(); l != want {
				t.Errorf("stream length %d, want %d", l, want)
			}
			st := n.q.Stats()
			if st.Enqueued != uint64(want) || st.Rejected != map[bool]uint64{true: 1, false: 0}[errors.Is(err, dispatch.ErrQueueFull)] {
				t.Errorf("stats = %+v", st)
			}
			// The stored job is the JSON of the Job, with EnqueuedAt set.
			msgs, _ := n.c.XRange(context.Background(), streams.DefaultStream, "-", "+").Result()
			for _, m := range msgs {
				var j dispatch.Job
				if err := json.Unmarshal([]byte(m.Values["job"].(string)), &j); err != nil || j.EnqueuedAt.IsZero() || j.Attempt != 1 {
					t.Errorf("stored job %v: %v", m.Values, err)
				}
			}
		})
	}
}

// TestRedisOutage kills the queue's Redis while Run runs: Enqueue fails with ErrUnavailable, Run neither
// returns nor hangs on shutdown, and once Redis is back (empty, without persistence) the same queue
// takes new jobs by itself.
func TestRedisOutage(t *testing.T) {
	rs := redistest.New(t)
	c := rs.Client(t)
	rec := newRecorder("a", nil)
	cfg := config("a")
	cfg.Rate = redis.NewCounters(c)
	logs := newLogWatch()
	cfg.Logger = slog.New(logs)
	q := streams.New(c, cfg)
	stop := start(t, q, newFakeCaller(nil), rec)
	mustEnqueue(t, q, job(0))
	waitReports(t, 1, rec)

	rs.Kill()
	if err := q.Enqueue(context.Background(), job(1)); !errors.Is(err, streams.ErrUnavailable) {
		t.Fatalf("Enqueue with Redis down = %v, want ErrUnavailable", err)
	}
	// The loop meets the outage: its read (or reclaim) fails and says so.
	logs.wait(t, "streams: reading jobs", "streams: reclaiming jobs")
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Enqueue to recover", func() bool { return q.Enqueue(context.Background(), job(2)) == nil })
	waitReports(t, 1, rec)
	if s := rec.snapshot(); s.finished[job(2).CallID] != 1 {
		t.Errorf("after the outage finished %v, want job 2", s.finished)
	}
	stop()
}

// deferOnce defers each job's first Prepare by wait, then lets it through.
type deferOnce struct {
	*recorder
	wait time.Duration

	mu       sync.Mutex // guards deferred and back
	deferred map[string]time.Time
	back     map[string]time.Duration // from the deferral to the next Prepare
}

func (d *deferOnce) Prepare(ctx context.Context, j dispatch.Job, stop context.CancelCauseFunc) (callflow.Request, error) {
	d.mu.Lock()
	first, again := d.deferred[j.CallID]
	if again {
		d.back[j.CallID] = time.Since(first)
	} else {
		d.deferred[j.CallID] = time.Now()
	}
	d.mu.Unlock()
	if !again {
		return callflow.Request{}, &dispatch.Deferred{Until: time.Now().Add(d.wait), Reason: errors.New("not yet")}
	}
	return d.recorder.Prepare(ctx, j, stop)
}

// TestDeferred has Prepare defer a job: it is handed back without a report and without holding a call
// slot, comes back after the deferral (or the lease, whichever is sooner), and a deferral does not
// count as a delivery.
func TestDeferred(t *testing.T) {
	for _, wait := range []time.Duration{200 * time.Millisecond, time.Hour} {
		t.Run(wait.String(), func(t *testing.T) {
			fresh(t)
			probe := srv.Client(t)
			cfg := config("a")
			cfg.MaxConcurrent = 1 // a held slot would stall job 1 behind job 0
			cfg.MaxDeliveries = 1 // a deferral counted as a delivery would dead-letter
			h := &deferOnce{recorder: newRecorder("a", nil), wait: wait, deferred: map[string]time.Time{}, back: map[string]time.Duration{}}
			c := srv.Client(t)
			cfg.Rate = redis.NewCounters(c)
			q := streams.New(c, cfg)
			mustEnqueue(t, q, job(0), job(1))
			start(t, q, newFakeCaller(nil), h)
			waitReports(t, 2, h.recorder)
			s := h.recorder.snapshot()
			for i := range 2 {
				id := job(i).CallID
				if s.finished[id] != 1 || len(s.skipped[id]) != 0 {
					t.Errorf("%s: finished %d, skipped %v; want dialled once", id, s.finished[id], s.skipped[id])
				}
				h.mu.Lock()
				back := h.back[id]
				h.mu.Unlock()
				if back < min(wait, cfg.Lease)-50*time.Millisecond {
					t.Errorf("%s came back %v after its deferral, before %v", id, back, min(wait, cfg.Lease))
				}
			}
			waitAcked(t, probe)
		})
	}
}

// TestCPUHeldNodeReadsNothing runs node a above its MaxCPU: it reads no job, so the job stays in the
// stream, unread, until node b (with CPU to spare) takes it; once a's load drops, a reads again.
func TestCPUHeldNodeReadsNothing(t *testing.T) {
	fresh(t)
	cpu := newFakeCPU(0.95)
	cfgA := config("a")
	cfgA.MaxCPU, cfgA.CPU = 0.9, cpu
	a := newNode(t, cfgA, nil, nil)
	a.start(t)
	mustEnqueue(t, a.q, job(0))
	// Two more looks at the load are at least one recheck (250 ms) after the job was added: a, idle and
	// with free slots, would have read it long before (it reads every BlockTime, 20 ms).
	cpu.waitAsked(t, 2)
	if p := pending(t, a.c); len(p) != 0 {
		t.Fatalf("pending = %+v while a is held, want the job unread", p)
	}
	if l := a.c.XLen(context.Background(), streams.DefaultStream).Val(); l != 1 {
		t.Fatalf("stream length %d, want the job still there", l)
	}
	if st := a.q.Stats(); st.HeldForCPU != 1 || st.HeldForCPUTime <= 0 || st.CPULoad != 0.95 || st.Dialled != 0 || st.Active != 0 {
		t.Errorf("a's stats while held = %+v, want one hold in progress at load 0.95 and nothing taken", st)
	}

	b := newNode(t, config("b"), nil, nil)
	stopB := b.start(t)
	waitReports(t, 1, b.rec)
	stopB()
	if s := b.rec.snapshot(); s.finished[job(0).CallID] != 1 {
		t.Errorf("b finished %v, want job 0", s.finished)
	}

	cpu.set(0.1)
	mustEnqueue(t, a.q, job(1))
	waitReports(t, 1, a.rec)
	if s := a.rec.snapshot(); s.finished[job(1).CallID] != 1 || s.prepared[job(0).CallID] != 0 {
		t.Errorf("a prepared %v and finished %v; want only job 1, after its load dropped", s.prepared, s.finished)
	}
	if st := a.q.Stats(); st.HeldForCPU != 1 || st.Dialled != 1 {
		t.Errorf("a's stats = %+v, want one hold and one dial", st)
	}
	waitAcked(t, a.c)
}

// stopping is a Handler that ends job 0's call during its Prepare, and keeps the stop of the others
// for the test to call during the call.
type stopping struct {
	*recorder

	mu    sync.Mutex // guards stops
	stops map[string]context.CancelCauseFunc
}

func (h *stopping) Prepare(ctx context.Context, j dispatch.Job, stop context.CancelCauseFunc) (callflow.Request, error) {
	if j.CallID == job(0).CallID {
		stop(errors.New("cancelled before the dial"))
	}
	h.mu.Lock()
	h.stops[j.CallID] = stop
	h.mu.Unlock()
	return h.recorder.Prepare(ctx, j, stop)
}

// TestHandlerStop checks the Runner's stop contract on the durable queue, which shares the Runner
// with dispatch.Memory: a stop during Prepare sends the call to the Caller already cancelled, a stop
// during the call ends it, a stop after Finish does nothing, and each job is finished and acknowledged
// once.
func TestHandlerStop(t *testing.T) {
	fresh(t)
	started := make(chan struct{}, 2)
	caller := newFakeCaller(func(ctx context.Context, _ callflow.Request) callflow.Outcome {
		started <- struct{}{}
		<-ctx.Done() // these calls end only when stopped
		return callflow.Canceled
	})
	n := newNode(t, config("a"), caller, nil)
	h := &stopping{recorder: n.rec, stops: map[string]context.CancelCauseFunc{}}
	mustEnqueue(t, n.q, job(0))
	start(t, n.q, caller, h)
	waitReports(t, 1, n.rec) // job 0: Prepare stopped it, the Caller saw it done at once

	mustEnqueue(t, n.q, job(1))
	<-started
	<-started
	h.mu.Lock()
	stop := h.stops[job(1).CallID]
	h.mu.Unlock()
	stop(errors.New("cancelled during the call"))
	waitReports(t, 1, n.rec)
	stop(nil) // after Finish: nothing happens

	s := n.rec.snapshot()
	if s.finished[job(0).CallID] != 1 || s.finished[job(1).CallID] != 1 || len(s.skipped) != 0 || len(s.violations) != 0 {
		t.Errorf("finished %v, skipped %v, violations %v; want both jobs finished once", s.finished, s.skipped, s.violations)
	}
	if d := caller.dialled(); d[job(0).To] != 1 || d[job(1).To] != 1 {
		t.Errorf("dialled %v, want each job handed to the Caller once", d)
	}
	waitAcked(t, n.c)
}
