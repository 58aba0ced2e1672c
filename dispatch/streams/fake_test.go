package streams_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
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

// srv is the redis-server of this test binary, or nil when there is none (then the tests skip).
var srv *redistest.Server

func TestMain(m *testing.M) { os.Exit(redistest.Main(m, &srv)) }

// fresh empties the shared server.
func fresh(t *testing.T) {
	t.Helper()
	redistest.Need(t, srv)
	srv.Flush(t)
}

// fakeCaller records the calls it places. behave decides each outcome and may block; nil delivers at
// once.
type fakeCaller struct {
	behave func(ctx context.Context, req callflow.Request) callflow.Outcome

	mu    sync.Mutex // guards dials
	dials map[string]int
}

func newFakeCaller(behave func(context.Context, callflow.Request) callflow.Outcome) *fakeCaller {
	return &fakeCaller{behave: behave, dials: map[string]int{}}
}

func (f *fakeCaller) Run(ctx context.Context, req callflow.Request, onEvent func(callflow.Event)) *callflow.Result {
	f.mu.Lock()
	f.dials[req.Number]++
	f.mu.Unlock()
	onEvent(callflow.Event{Type: callflow.EventDialing})
	out := callflow.Delivered
	if f.behave != nil {
		out = f.behave(ctx, req)
	}
	onEvent(callflow.Event{Type: callflow.EventHangup})
	return &callflow.Result{Outcome: out, Number: req.Number}
}

func (f *fakeCaller) dialled() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.dials {
		out[k] = v
	}
	return out
}

// claims stands in for the verification records: Prepare claims each job's dial there, once, as the
// api does, so a job delivered again after a node died is skipped rather than dialled twice.
type claims struct {
	mu sync.Mutex // guards by
	by map[string]string
}

func newClaims() *claims { return &claims{by: map[string]string{}} }

// claim records node as the dialler of callID and reports whether it is the first.
func (c *claims) claim(callID, node string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.by[callID]; ok {
		return false
	}
	c.by[callID] = node
	return true
}

// recorder is a Handler that records everything and checks the per-job order as it goes.
type recorder struct {
	node   string
	claims *claims // nil: no claiming
	done   chan string

	mu         sync.Mutex // guards the fields below
	prepared   map[string]int
	finished   map[string]int
	skipped    map[string][]error
	violations []string
}

func newRecorder(node string, c *claims) *recorder {
	return &recorder{
		node: node, claims: c, done: make(chan string, 1000),
		prepared: map[string]int{}, finished: map[string]int{}, skipped: map[string][]error{},
	}
}

func (r *recorder) Prepare(ctx context.Context, j dispatch.Job, _ context.CancelCauseFunc) (callflow.Request, error) {
	r.mu.Lock()
	r.prepared[j.CallID]++
	r.mu.Unlock()
	if r.claims != nil && !r.claims.claim(j.CallID, r.node) {
		return callflow.Request{}, fmt.Errorf("call %s already dialled: %w", j.CallID, dispatch.ErrSkip)
	}
	return callflow.Request{Number: j.To, Code: "123456"}, nil
}

func (r *recorder) Event(j dispatch.Job, e callflow.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished[j.CallID] > 0 {
		r.violations = append(r.violations, fmt.Sprintf("%s: event %s after Finish", j.CallID, e.Type))
	}
}

func (r *recorder) Finish(j dispatch.Job, res *callflow.Result) {
	r.mu.Lock()
	if res == nil {
		r.violations = append(r.violations, j.CallID+": nil result")
	}
	r.finished[j.CallID]++
	r.mu.Unlock()
	r.done <- j.CallID
}

func (r *recorder) Skipped(j dispatch.Job, err error) {
	r.mu.Lock()
	r.skipped[j.CallID] = append(r.skipped[j.CallID], err)
	r.mu.Unlock()
	r.done <- j.CallID
}

type snapshot struct {
	prepared, finished map[string]int
	skipped            map[string][]error
	violations         []string
}

func (r *recorder) snapshot() snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := snapshot{prepared: map[string]int{}, finished: map[string]int{}, skipped: map[string][]error{}}
	for k, v := range r.prepared {
		s.prepared[k] = v
	}
	for k, v := range r.finished {
		s.finished[k] = v
	}
	for k, v := range r.skipped {
		s.skipped[k] = append([]error(nil), v...)
	}
	s.violations = append(s.violations, r.violations...)
	return s
}

// waitReports waits for n Finish or Skipped reports over the given recorders. The deadline only turns
// a hang into a failure.
func waitReports(t *testing.T, n int, rs ...*recorder) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	agg := make(chan string)
	stop := make(chan struct{})
	defer close(stop)
	for _, r := range rs {
		go func() {
			for {
				select {
				case id := <-r.done:
					select {
					case agg <- id:
					case <-stop:
						return
					}
				case <-stop:
					return
				}
			}
		}()
	}
	for i := range n {
		select {
		case <-agg:
		case <-deadline:
			t.Fatalf("only %d of %d jobs were reported", i, n)
		}
	}
}

func job(i int) dispatch.Job {
	return dispatch.Job{
		VerificationID: fmt.Sprintf("VE%04d", i),
		CallID:         fmt.Sprintf("CA%04d", i),
		To:             fmt.Sprintf("+1555000%04d", i),
		Attempt:        1,
	}
}

// config is a fast configuration for tests: short lease and reads, a generous CPS. Its Rate is set by
// newNode, on the node's client.
func config(consumer string) streams.Config {
	return streams.Config{
		Config:    dispatch.Config{MaxConcurrent: 10, CPS: 1000, DrainTimeout: 10 * time.Second},
		Consumer:  consumer,
		Lease:     600 * time.Millisecond,
		BlockTime: 20 * time.Millisecond,
	}
}

// node is one queue with its own client, as on its own process.
type node struct {
	q      *streams.Durable
	caller *fakeCaller
	rec    *recorder
	c      *goredis.Client
}

// newNode builds a node; a nil caller delivers every call at once, and a nil cfg.Rate is the Redis
// store's Counters on the node's client.
func newNode(t *testing.T, cfg streams.Config, caller *fakeCaller, cl *claims) *node {
	t.Helper()
	c := srv.Client(t)
	rec := newRecorder(cfg.Consumer, cl)
	if caller == nil {
		caller = newFakeCaller(nil)
	}
	if cfg.Rate == nil {
		cfg.Rate = redis.NewCounters(c)
	}
	return &node{q: streams.New(c, cfg), caller: caller, rec: rec, c: c}
}

// start runs the node's queue with its caller and recorder; see start.
func (n *node) start(t *testing.T) (stop func()) {
	t.Helper()
	return start(t, n.q, n.caller, n.rec)
}

// start runs q in the background; stop cancels it and waits for Run to return.
func start(t *testing.T, q *streams.Durable, c dispatch.Caller, h dispatch.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- q.Run(ctx, c, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run = %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func mustEnqueue(t *testing.T, q *streams.Durable, jobs ...dispatch.Job) {
	t.Helper()
	for _, j := range jobs {
		if err := q.Enqueue(context.Background(), j); err != nil {
			t.Fatalf("Enqueue(%s): %v", j.CallID, err)
		}
	}
}

// pending returns the group's pending entries (id → owner and delivery count).
func pending(t *testing.T, c *goredis.Client) []goredis.XPendingExt {
	t.Helper()
	p, err := c.XPendingExt(context.Background(), &goredis.XPendingExtArgs{
		Stream: streams.DefaultStream, Group: streams.DefaultGroup, Start: "-", End: "+", Count: 1000,
	}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func createGroup(t *testing.T, c *goredis.Client) {
	t.Helper()
	if err := c.XGroupCreateMkStream(context.Background(), streams.DefaultStream, streams.DefaultGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
}

// takeAsDead reads n jobs as a consumer that then dies: it never acknowledges them.
func takeAsDead(t *testing.T, c *goredis.Client, consumer string, n int) []string {
	t.Helper()
	res, err := c.XReadGroup(context.Background(), &goredis.XReadGroupArgs{
		Group: streams.DefaultGroup, Consumer: consumer, Streams: []string{streams.DefaultStream, ">"},
		Count: int64(n), Block: -1,
	}).Result()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range res[0].Messages {
		ids = append(ids, m.Values["job"].(string))
	}
	if len(ids) != n {
		t.Fatalf("the dead consumer took %d jobs, want %d", len(ids), n)
	}
	return ids
}

// waitFor polls cond until it holds. The deadline only turns a hang into a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // the poll's pace, not a wait for anything
	}
}

// waitAcked waits until the stream is empty and nothing is pending: the acknowledgement of a job
// follows its Finish or Skipped report.
func waitAcked(t *testing.T, c *goredis.Client) {
	t.Helper()
	waitFor(t, "every job acknowledged", func() bool {
		l, err := c.XLen(context.Background(), streams.DefaultStream).Result()
		if err != nil {
			t.Fatal(err)
		}
		return l == 0 && len(pending(t, c)) == 0
	})
}

// fakeCPU is a dispatch.CPUSampler whose load the test sets; asked receives (without blocking) on each
// CPULoad, so a test can wait for the dispatcher to look again.
type fakeCPU struct {
	asked chan struct{}

	mu   sync.Mutex // guards load
	load float64
}

func newFakeCPU(load float64) *fakeCPU { return &fakeCPU{asked: make(chan struct{}, 1), load: load} }

func (f *fakeCPU) set(load float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.load = load
}

func (f *fakeCPU) CPULoad() float64 {
	select {
	case f.asked <- struct{}{}:
	default:
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load
}

// waitAsked waits until f has been asked for the load n more times.
func (f *fakeCPU) waitAsked(t *testing.T, n int) {
	t.Helper()
	select {
	case <-f.asked: // a look that may predate the call
	default:
	}
	deadline := time.After(30 * time.Second)
	for i := range n {
		select {
		case <-f.asked:
		case <-deadline:
			t.Fatalf("the dispatcher looked at the load %d times, want %d", i, n)
		}
	}
}

// logWatch is a slog.Handler that lets a test wait for a log line, by its message: the queue says so
// when it meets something the test caused (an outage), and no test has to guess how long that takes.
type logWatch struct {
	mu   sync.Mutex // guards msgs
	msgs []string
	news chan struct{} // receives (without blocking) after each record
}

func newLogWatch() *logWatch { return &logWatch{news: make(chan struct{}, 1)} }

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *logWatch) WithGroup(string) slog.Handler            { return w }

func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	w.msgs = append(w.msgs, r.Message)
	w.mu.Unlock()
	select {
	case w.news <- struct{}{}:
	default:
	}
	return nil
}

// wait waits until one of msgs has been logged.
func (w *logWatch) wait(t *testing.T, msgs ...string) {
	t.Helper()
	w.waitCount(t, 1, msgs...)
}

// waitCount waits until msgs have been logged n times in all.
func (w *logWatch) waitCount(t *testing.T, n int, msgs ...string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		w.mu.Lock()
		seen := 0
		for _, m := range w.msgs {
			if slices.Contains(msgs, m) {
				seen++
			}
		}
		w.mu.Unlock()
		if seen >= n {
			return
		}
		select {
		case <-w.news:
		case <-deadline:
			t.Fatalf("%q logged fewer than %d times", msgs, n)
		}
	}
}
