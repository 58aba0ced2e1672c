package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/prompts"
)

// fakeAPI is an API that never dials: every verification's call ends at once with outcome, or the
// start is refused with startStatus. It records what it was asked.
type fakeAPI struct {
	outcome     string
	startStatus int

	mu      sync.Mutex
	numbers []string
	auth    []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/verifications":
		if f.startStatus != 0 {
			w.WriteHeader(f.startStatus)
			fmt.Fprint(w, `{"error":{"code":"queue_full","message":"too many calls waiting"}}`)
			return
		}
		var body struct{ To string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.numbers = append(f.numbers, body.To)
		f.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"VE%s","to":%q,"status":"pending","calls":[{"id":"CA1","status":"queued","queued_at":"2026-01-01T00:00:00Z"}]}`, body.To[1:], body.To)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/verifications/VE"):
		fmt.Fprintf(w, `{"id":%q,"status":"pending","calls":[{"id":"CA1","status":%q,"queued_at":"2026-01-01T00:00:00Z"}]}`,
			strings.TrimPrefix(r.URL.Path, "/v1/verifications/"), f.outcome)
	default:
		http.NotFound(w, r)
	}
}

func newTestDriver(t *testing.T, cfg DriverConfig) *Driver {
	t.Helper()
	cat, err := prompts.Load("en")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Catalog = cat
	cfg.Rand = rand.New(rand.NewPCG(1, 1))
	d, err := NewDriver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestDriverJudgesCallsTheServerNeverDialled(t *testing.T) {
	tests := []struct {
		name    string
		api     *fakeAPI
		mix     string
		okCalls int
		errPart string
	}{
		// busy was expected and busy was reported: correct even though no phone was rung.
		{"expected outcome", &fakeAPI{outcome: "busy"}, "busy=1", 4, ""},
		{"wrong outcome", &fakeAPI{outcome: "failed"}, "busy=1", 0, "outcome failed, want busy"},
		// An answer call must deliver the code: "delivered" without a phone report is an error.
		{"delivered but nobody heard it", &fakeAPI{outcome: "delivered"}, "answer=1", 0, "no code recognised"},
		{"start refused", &fakeAPI{startStatus: http.StatusServiceUnavailable}, "answer=1", 0, "start: loadtest: api: 503 queue_full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.api)
			defer srv.Close()
			mix, err := ParseMix(tt.mix)
			if err != nil {
				t.Fatal(err)
			}
			var progress []Progress
			d := newTestDriver(t, DriverConfig{Mix: mix, CPS: 100, Calls: 4, Run: 7, SampleEvery: 50 * time.Millisecond,
				Procs:      []Proc{SelfProc("test")},
				OnProgress: func(p Progress) { progress = append(progress, p) }})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rep, err := d.Run(ctx, NewClient(srv.URL, "k3y", nil, 4))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Summary.Calls != 4 || rep.Summary.OK != tt.okCalls {
				t.Fatalf("calls %d ok %d, want 4 and %d: %+v", rep.Summary.Calls, rep.Summary.OK, tt.okCalls, rep.Summary.ErrorSamples)
			}
			for i, c := range rep.Calls {
				if c.Serial != i || c.Number != Number(c.Behaviour, 7, i) {
					t.Errorf("call %d: serial %d number %s", i, c.Serial, c.Number)
				}
				if tt.errPart != "" && !strings.Contains(c.Error, tt.errPart) {
					t.Errorf("call %d: error %q, want %q", i, c.Error, tt.errPart)
				}
			}
			if last := progress[len(progress)-1]; !last.Final || last.Done != 4 || last.Errors != 4-tt.okCalls {
				t.Errorf("final progress %+v", last)
			}
			for _, a := range tt.api.auth {
				if a != "Bearer k3y" {
					t.Fatalf("Authorization %q", a)
				}
			}
		})
	}
}

func TestDriverStopsOnCancel(t *testing.T) {
	api := &fakeAPI{outcome: "queued"} // never ends
	srv := httptest.NewServer(api)
	defer srv.Close()
	d := newTestDriver(t, DriverConfig{CPS: 1000, Calls: 3, CallTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	rep, err := d.Run(ctx, NewClient(srv.URL, "", nil, 4))
	if err == nil || rep == nil || rep.Summary.Errors != 3 {
		t.Fatalf("Run = %v, %v", rep, err)
	}
}

func TestReportWriters(t *testing.T) {
	api := &fakeAPI{outcome: "busy"}
	srv := httptest.NewServer(api)
	defer srv.Close()
	d := newTestDriver(t, DriverConfig{Mix: Mix{weights: [5]int{0, 0, 1, 0, 0}}, CPS: 100, Calls: 2})
	rep, err := d.Run(context.Background(), NewClient(srv.URL, "", nil, 4))
	if err != nil {
		t.Fatal(err)
	}
	var js, html, sum strings.Builder
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteHTML(&html, "/assets/"); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteSummary(&sum); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal([]byte(js.String()), &back); err != nil || back.Summary.OK != 2 {
		t.Fatalf("JSON round trip: %v, %+v", err, back.Summary)
	}
	for _, s := range []string{`src="/assets/echarts.min.js"`, "Outcomes by behaviour", "2 as expected"} {
		if !strings.Contains(html.String(), s) {
			t.Errorf("HTML has no %q", s)
		}
	}
	if !strings.Contains(sum.String(), "busy 2 (want busy)") {
		t.Errorf("summary:\n%s", sum.String())
	}
}

func TestStats(t *testing.T) {
	var v []float64
	for i := 1; i <= 100; i++ {
		v = append(v, float64(i))
	}
	s := statsOf(v)
	if s.N != 100 || s.P50 != 50 || s.P90 != 90 || s.P99 != 99 || s.Max != 100 || s.Mean != 50.5 {
		t.Errorf("%+v", s)
	}
	if (statsOf(nil) != Stats{}) {
		t.Error("stats of nothing")
	}
}

func TestProgressLine(t *testing.T) {
	got := ProgressLine(Progress{Elapsed: 12 * time.Second, Started: 120, Done: 100, Target: 200, Active: 20, CPS: 10, Errors: 1, ETA: 9 * time.Second})
	want := "[  12.0s] calls 100/200 done, 120 started, 20 active, 10.0 cps, 1 errors, eta 9s"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
