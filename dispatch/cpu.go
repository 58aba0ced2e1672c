package dispatch

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/voiceotp/voiceotp/dispatch/internal/cpugate"
)

// CPUSampler measures the load that [Config.MaxCPU] is compared with: 0 is idle, 1 is every core
// measured busy. What is measured is the sampler's: [ProcessCPU] divides this process's CPU time by
// the cores Go may use, [SystemCPU] reports the busy fraction of the whole machine.
//
// CPULoad is called by the dispatcher before each dial and every 250 ms while dials are held, and by
// Stats, so it must be cheap and safe for concurrent use. ProcessCPU and SystemCPU implement it;
// tests inject a fake.
type CPUSampler interface {
	CPULoad() float64
}

// CPUMeter is a [CPUSampler] that takes its own samples for the time of Run: [ProcessCPU] and
// [SystemCPU]. Run samples until ctx is done and must not run twice at once.
type CPUMeter interface {
	CPUSampler
	Run(ctx context.Context)
}

// CPUSource names what the sampler a queue builds for itself measures, when [Config.CPU] is nil.
type CPUSource string

// The sources of [Config.CPUSource].
const (
	// CPUProcess measures this process's CPU time over the cores Go may use: a [ProcessCPU]. It is
	// the default, for a node that has its machine to itself.
	CPUProcess CPUSource = "process"
	// CPUSystem measures the whole machine's busy time: a [SystemCPU]. It is for a node that shares
	// its machine (with a load generator, a database, other services): audio is garbled when the
	// machine is saturated, whoever uses its CPU.
	CPUSystem CPUSource = "system"
)

// NewCPUMeter returns the sampler src names, not yet running: a [ProcessCPU] for [CPUProcess] or "",
// a [SystemCPU] for [CPUSystem]. Any other src is an error.
func NewCPUMeter(src CPUSource) (CPUMeter, error) {
	switch src {
	case "", CPUProcess:
		return NewProcessCPU(), nil
	case CPUSystem:
		return NewSystemCPU(), nil
	}
	return nil, fmt.Errorf("dispatch: unknown CPU source %q, want %q or %q", string(src), CPUProcess, CPUSystem)
}

// ProcessCPU is the [CPUSampler] of [CPUProcess], the one a queue builds by default: the CPU time of
// this process, user plus system (getrusage(RUSAGE_SELF)), over a sliding window of about 1 s sampled
// every 250 ms, divided by the window's wall time × GOMAXPROCS (read at each sample, as it may
// change). 1 is every core Go may use busy; the load may slightly exceed 1, as threads outside
// GOMAXPROCS (system calls, cgo) count too. Other processes on the machine are not seen: see
// [SystemCPU] for that.
//
// [ProcessCPU.Run] takes the samples; CPULoad returns the load of the last full window, or 0 before Run
// has taken two samples. A queue that builds its own ProcessCPU runs it for the time of its Run; one
// given in Config.CPU must be run by its owner. On a platform without getrusage (Windows) CPULoad is
// always 0, so MaxCPU never holds a dial there.
type ProcessCPU struct {
	step  time.Duration
	read  func() (time.Duration, error) // the process's CPU time so far
	procs func() int

	mu   sync.Mutex                   // guards win and load
	win  slidingWindow[time.Duration] // CPU time so far, by sample time
	load float64
}

// The window and step of NewProcessCPU and NewSystemCPU.
const (
	cpuWindow = time.Second
	cpuStep   = cpugate.Recheck
)

var (
	_ CPUMeter = (*ProcessCPU)(nil)
	_ CPUMeter = (*SystemCPU)(nil)
)

// NewProcessCPU returns a sampler of this process's CPU load; call Run to start sampling.
func NewProcessCPU() *ProcessCPU {
	return newProcessCPU(cpuWindow, cpuStep, processCPUTime, func() int { return runtime.GOMAXPROCS(0) })
}

func newProcessCPU(window, step time.Duration, read func() (time.Duration, error), procs func() int) *ProcessCPU {
	return &ProcessCPU{step: step, read: read, procs: procs, win: slidingWindow[time.Duration]{window: window}}
}

// Run takes a sample now and every 250 ms until ctx is done. It returns at once on a platform without
// getrusage. It must not run twice at once.
func (p *ProcessCPU) Run(ctx context.Context) { runSampling(ctx, p.step, p.sample) }

// sample records the CPU time at now and recomputes the load; it returns false if the CPU time cannot
// be read.
func (p *ProcessCPU) sample(now time.Time) bool {
	cpu, err := p.read()
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	base := p.win.add(now, cpu)
	wall := now.Sub(base.at)
	if wall <= 0 {
		return true
	}
	p.load = max(0, float64(cpu-base.v)/(float64(wall)*float64(max(1, p.procs()))))
	return true
}

// CPULoad returns the load of the last window; see [ProcessCPU]. It is safe for concurrent use.
func (p *ProcessCPU) CPULoad() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.load
}

// runSampling calls sample now and then every step until ctx is done. It returns at once if the first
// sample fails: the platform cannot measure.
func runSampling(ctx context.Context, step time.Duration, sample func(now time.Time) bool) {
	if !sample(time.Now()) {
		return
	}
	t := time.NewTicker(step)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sample(time.Now())
		}
	}
}

// slidingWindow keeps the samples of the last window: as the base, the newest sample that is at least
// a window old, and every later one. It is not safe for concurrent use.
type slidingWindow[T any] struct {
	window  time.Duration
	samples []timedSample[T] // oldest first
}

type timedSample[T any] struct {
	at time.Time
	v  T
}

// add records v at now and returns the base to compare it with: the newest sample at least a window
// old, or, until a window has passed, the oldest one (v itself for the first sample).
func (w *slidingWindow[T]) add(now time.Time, v T) timedSample[T] {
	w.samples = append(w.samples, timedSample[T]{at: now, v: v})
	drop := 0
	for drop+1 < len(w.samples) && !w.samples[drop+1].at.After(now.Add(-w.window)) {
		drop++
	}
	w.samples = append(w.samples[:0], w.samples[drop:]...)
	return w.samples[0]
}

// reset forgets every sample: the next one starts a new window.
func (w *slidingWindow[T]) reset() { w.samples = w.samples[:0] }
