package dispatch

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/voiceotp/voiceotp/dispatch/internal/admit"
)

// CPUSampler measures the load that [Config.MaxCPU] is compared with: the CPU time the process used
// over a recent window, divided by the window's wall time × GOMAXPROCS. 0 is idle; 1 is every core Go
// may use busy. It may slightly exceed 1, as threads outside GOMAXPROCS (system calls, cgo) count too.
//
// CPULoad is called by the dispatcher before each dial and every 250 ms while dials are held, and by
// Stats, so it must be cheap and safe for concurrent use. [ProcessCPU] implements it; tests inject a
// fake.
type CPUSampler interface {
	CPULoad() float64
}

// ProcessCPU is the [CPUSampler] a queue uses when [Config.CPU] is nil: the CPU time of this process,
// user plus system (getrusage(RUSAGE_SELF)), over a sliding window of about 1 s sampled every 250 ms,
// divided by the window's wall time × GOMAXPROCS (read at each sample, as it may change).
//
// [ProcessCPU.Run] takes the samples; CPULoad returns the load of the last full window, or 0 before Run
// has taken two samples. A queue that builds its own ProcessCPU runs it for the time of its Run; one
// given in Config.CPU must be run by its owner. On a platform without getrusage (Windows) CPULoad is
// always 0, so MaxCPU never holds a dial there.
type ProcessCPU struct {
	window time.Duration
	step   time.Duration
	read   func() (time.Duration, error) // the process's CPU time so far
	procs  func() int

	mu      sync.Mutex  // guards samples and load
	samples []cpuSample // oldest first; the first is the newest one at least window old
	load    float64
}

type cpuSample struct {
	at  time.Time
	cpu time.Duration
}

// The window and step of NewProcessCPU.
const (
	cpuWindow = time.Second
	cpuStep   = admit.Recheck
)

var _ CPUSampler = (*ProcessCPU)(nil)

// NewProcessCPU returns a sampler of this process's CPU load; call Run to start sampling.
func NewProcessCPU() *ProcessCPU {
	return newProcessCPU(cpuWindow, cpuStep, processCPUTime, func() int { return runtime.GOMAXPROCS(0) })
}

func newProcessCPU(window, step time.Duration, read func() (time.Duration, error), procs func() int) *ProcessCPU {
	return &ProcessCPU{window: window, step: step, read: read, procs: procs}
}

// Run takes a sample now and every 250 ms until ctx is done. It returns at once on a platform without
// getrusage. It must not run twice at once.
func (p *ProcessCPU) Run(ctx context.Context) {
	if !p.sample(time.Now()) {
		return
	}
	t := time.NewTicker(p.step)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.sample(time.Now())
		}
	}
}

// sample records the CPU time at now and recomputes the load; it returns false if the CPU time cannot
// be read.
func (p *ProcessCPU) sample(now time.Time) bool {
	cpu, err := p.read()
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.samples = append(p.samples, cpuSample{at: now, cpu: cpu})
	// Keep, as the base, the newest sample that is at least a window old.
	drop := 0
	for drop+1 < len(p.samples) && !p.samples[drop+1].at.After(now.Add(-p.window)) {
		drop++
	}
	p.samples = append(p.samples[:0], p.samples[drop:]...)
	base := p.samples[0]
	wall := now.Sub(base.at)
	if wall <= 0 {
		return true
	}
	p.load = max(0, float64(cpu-base.cpu)/(float64(wall)*float64(max(1, p.procs()))))
	return true
}

// CPULoad returns the load of the last window; see [ProcessCPU]. It is safe for concurrent use.
func (p *ProcessCPU) CPULoad() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.load
}
