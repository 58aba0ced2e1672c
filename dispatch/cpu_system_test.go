package dispatch

import (
	"context"
	"errors"
	"math"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// TestParseProcStat reads the aggregate line of /proc/stat as kernels of
// several ages write it, and refuses what is not one.
func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    cpuTicks
		wantErr bool
	}{
		{"current kernel", "cpu  10 20 30 400 50 6 7 8 90 100\ncpu0 5 10 15 200 25 3 3 4 45 50\nintr 1 2 3\n",
			cpuTicks{busy: 10 + 20 + 30 + 6 + 7 + 8, total: 10 + 20 + 30 + 6 + 7 + 8 + 400 + 50}, false},
		{"no guest counters (2.6.11)", "cpu 1 2 3 4 5 6 7 8\n", cpuTicks{busy: 1 + 2 + 3 + 6 + 7 + 8, total: 36}, false},
		{"four counters (2.4)", "cpu 1 2 3 4\n", cpuTicks{busy: 6, total: 10}, false},
		{"tabs and no newline", "cpu\t1\t2\t3\t4\t5", cpuTicks{busy: 6, total: 15}, false},
		{"idle machine", "cpu 0 0 0 0 0 0 0 0 0 0\n", cpuTicks{}, false},
		{"empty", "", cpuTicks{}, true},
		{"blank line", "\n", cpuTicks{}, true},
		{"a per-core line first", "cpu0 1 2 3 4 5 6 7 8\n", cpuTicks{}, true},
		{"another file", "MemTotal: 16384 kB\n", cpuTicks{}, true},
		{"too few counters", "cpu 1 2 3\n", cpuTicks{}, true},
		{"negative", "cpu 1 -2 3 4 5 6 7 8\n", cpuTicks{}, true},
		{"not a number", "cpu 1 2 x 4 5 6 7 8\n", cpuTicks{}, true},
		{"fraction", "cpu 1 2 3.5 4\n", cpuTicks{}, true},
		{"beyond 64 bits", "cpu 18446744073709551616 0 0 0\n", cpuTicks{}, true},
		{"sums overflow", "cpu 18446744073709551615 1 0 0\n", cpuTicks{}, true},
		{"line too long", "cpu 1 2 3 4" + strings.Repeat(" ", 5000) + "\n", cpuTicks{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat(strings.NewReader(tt.in))
			if tt.wantErr {
				if !errors.Is(err, errProcStat) {
					t.Errorf("parseProcStat = %+v, %v; want an errProcStat", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseProcStat = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	t.Run("read error", func(t *testing.T) {
		if _, err := parseProcStat(iotest.ErrReader(errors.New("boom"))); !errors.Is(err, errProcStat) {
			t.Errorf("error %v, want an errProcStat", err)
		}
	})
}

// FuzzParseProcStat checks that no input panics and that a parsed reading
// is consistent: busy time is part of the total.
func FuzzParseProcStat(f *testing.F) {
	f.Add("cpu  10 20 30 400 50 6 7 8 90 100\ncpu0 5 10 15 200 25 3 3 4 45 50\n")
	f.Add("cpu 1 2 3 4\n")
	f.Add("cpu 18446744073709551615 1 0 0\n")
	f.Add("cpu0 1 2 3 4\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := parseProcStat(strings.NewReader(in))
		if err == nil && got.busy > got.total {
			t.Errorf("parseProcStat(%q) = %+v: busy above total", in, got)
		}
	})
}

// TestSystemCPUWindow feeds the sampler readings and checks the load of the
// sliding window: busy ticks over all ticks.
func TestSystemCPUWindow(t *testing.T) {
	type step struct {
		busy, idle uint64 // ticks during this step
		err        bool   // the reading fails
		want       float64
	}
	const s = 250 * time.Millisecond
	tests := []struct {
		name  string
		steps []step
	}{
		{"no window before two samples", []step{{0, 0, false, 0}}},
		{"half busy", []step{{0, 0, false, 0}, {25, 25, false, 0.5}, {25, 25, false, 0.5}, {25, 25, false, 0.5},
			{25, 25, false, 0.5}, {25, 25, false, 0.5}}},
		{"saturated", []step{{0, 0, false, 0}, {50, 0, false, 1}, {50, 0, false, 1}}},
		{"busy then idle slides out of the window", []step{
			{0, 0, false, 0}, {50, 0, false, 1}, {50, 0, false, 1}, {50, 0, false, 1}, {50, 0, false, 1},
			{0, 50, false, 0.75}, {0, 50, false, 0.5}, {0, 50, false, 0.25}, {0, 50, false, 0}, {0, 50, false, 0},
		}},
		{"no tick keeps the last load", []step{{0, 0, false, 0}, {10, 30, false, 0.25}, {0, 0, false, 0.25}}},
		{"a failed reading clears the load and the window", []step{
			{0, 0, false, 0}, {50, 0, false, 1}, {0, 0, true, 0}, {0, 50, false, 0}, {10, 40, false, 0.2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var now time.Time
			var ticks cpuTicks
			var fail bool
			p := newSystemCPU(time.Second, s, func() (cpuTicks, error) {
				if fail {
					return cpuTicks{}, errors.New("unreadable")
				}
				return ticks, nil
			})
			now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			ticks = cpuTicks{busy: 1000, total: 5000} // a machine that has been up a while
			for i, st := range tt.steps {
				if i > 0 {
					now = now.Add(s)
				}
				ticks.busy += st.busy
				ticks.total += st.busy + st.idle
				fail = st.err
				if ok := p.sample(now); ok == st.err {
					t.Fatalf("step %d: sample = %v with a failing reading %v", i, ok, st.err)
				}
				if got := p.CPULoad(); math.Abs(got-st.want) > 1e-9 {
					t.Errorf("step %d: load %v, want %v", i, got, st.want)
				}
			}
			if n := len(p.win.samples); n > 5 {
				t.Errorf("%d samples kept, want at most a window's worth (5)", n)
			}
		})
	}
}

// TestSystemCPUCountersGoBack checks that counters that seem to go back
// (iowait can, see proc(5)) neither panic nor give a load outside [0, 1]:
// below the window's base, the last load is kept and the window starts again
// from there; busy time that grew more than the total counts as 1.
func TestSystemCPUCountersGoBack(t *testing.T) {
	readings := []cpuTicks{
		{100, 400}, {150, 500}, // 50 of 100 ticks busy
		{90, 520},  // busy went back: keep 0.5, start again
		{120, 560}, // 30 of 40
		{160, 500}, // total went back: keep 0.75, start again
		{170, 540}, // 10 of 40
		{260, 560}, // 100 busy in 60 ticks
	}
	want := []float64{0, 0.5, 0.5, 0.75, 0.75, 0.25, 1}
	i := 0
	p := newSystemCPU(time.Second, 250*time.Millisecond, func() (cpuTicks, error) { return readings[i], nil })
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i = range readings {
		p.sample(now.Add(time.Duration(i) * 250 * time.Millisecond))
		if got := p.CPULoad(); got != want[i] {
			t.Errorf("reading %d %+v: load %v, want %v", i, readings[i], got, want[i])
		}
	}
}

// TestSystemCPURunWithoutProcStat checks the platforms without /proc/stat:
// Run returns at once and the load stays 0.
func TestSystemCPURunWithoutProcStat(t *testing.T) {
	p := newSystemCPU(time.Second, time.Millisecond, func() (cpuTicks, error) {
		return cpuTicks{}, errors.New("no /proc/stat")
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(context.Background()) // never cancelled: Run must return by itself
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run kept going without a reading")
	}
	if got := p.CPULoad(); got != 0 {
		t.Errorf("load %v, want 0", got)
	}
}

// TestSystemCPUMeasuresTheMachine runs the real sampler, on a short window,
// over a stretch of what the machine does anyway and then while every core
// Go may use spins. It checks only that both loads are in [0, 1] and that
// spinning raises the load, unless the machine was saturated already.
func TestSystemCPUMeasuresTheMachine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/stat is Linux's")
	}
	const window, step = 300 * time.Millisecond, 50 * time.Millisecond
	p := newSystemCPU(window, step, systemCPUTicks)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()

	waitFullWindow(t, &p.mu, &p.win, time.Now())
	before := p.CPULoad()

	spinning := time.Now()
	var stop atomic.Bool
	var spinners sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		spinners.Go(func() {
			for n := 0; !stop.Load(); n++ {
				_ = n * n
			}
		})
	}
	waitFullWindow(t, &p.mu, &p.win, spinning)
	busy := p.CPULoad()
	stop.Store(true)
	spinners.Wait()

	t.Logf("before %.3f, spinning %.3f with GOMAXPROCS=%d of %d CPUs", before, busy, runtime.GOMAXPROCS(0), runtime.NumCPU())
	for name, load := range map[string]float64{"before": before, "spinning": busy} {
		if load < 0 || load > 1 {
			t.Errorf("%s: load %v, want within [0, 1]", name, load)
		}
	}
	switch {
	case before > 0.9:
		t.Logf("the machine was saturated before the spin; not comparing")
	case runtime.GOMAXPROCS(0) < runtime.NumCPU()/2:
		t.Logf("GOMAXPROCS covers few of the machine's CPUs; not comparing")
	case busy <= before:
		t.Errorf("spinning load %v is not above the load before %v", busy, before)
	}
}

// TestQueueBuildsItsCPUSampler checks which sampler a queue builds and runs
// for itself: the one Config.CPUSource names, none when Config.CPU is given
// or MaxCPU is off, and a panic for an unknown source.
func TestQueueBuildsItsCPUSampler(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want reflect.Type // nil: no sampler of its own
	}{
		{"default", Config{MaxCPU: 0.9}, reflect.TypeFor[*ProcessCPU]()},
		{"process", Config{MaxCPU: 0.9, CPUSource: CPUProcess}, reflect.TypeFor[*ProcessCPU]()},
		{"system", Config{MaxCPU: 0.9, CPUSource: CPUSystem}, reflect.TypeFor[*SystemCPU]()},
		{"a sampler given", Config{MaxCPU: 0.9, CPUSource: CPUSystem, CPU: newFakeCPU(0)}, nil},
		{"MaxCPU off", Config{CPUSource: "anything"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock(recheck)
			m := newHarness(newFakeCaller(clk, nil), newRecorder(nil), tt.cfg, clk)
			if got := reflect.TypeOf(m.r.ownCPU); got != tt.want {
				t.Errorf("own sampler %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("unknown source", func(t *testing.T) {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(r.(error).Error(), `"machine"`) {
				t.Errorf("recovered %v, want a panic naming the source", r)
			}
		}()
		NewMemory(Config{MaxCPU: 0.9, CPUSource: "machine"})
	})
}
