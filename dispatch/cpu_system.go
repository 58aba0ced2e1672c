package dispatch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SystemCPU is the [CPUSampler] of [CPUSystem]: the busy fraction of the whole machine, whoever uses
// it, from the aggregate "cpu" line of /proc/stat (proc(5)) over a sliding window of about 1 s sampled
// every 250 ms. Busy time is user + nice + system + irq + softirq + steal, and the load is its growth
// over the growth of busy + idle + iowait: 0 is every core idle, 1 every core busy (or stolen by the
// hypervisor). It sees every core of the machine, not GOMAXPROCS nor a container's CPU quota.
//
// [SystemCPU.Run] takes the samples; CPULoad returns the load of the last window, or 0 before Run has
// taken two samples. A reading that fails or cannot be parsed sets the load to 0 and starts a new
// window: a load that cannot be measured holds no dial. A queue that builds its own SystemCPU
// ([Config.CPUSource]) runs it for the time of its Run; one given in Config.CPU must be run by its
// owner. Without /proc/stat (any system but Linux) CPULoad is always 0, so MaxCPU never holds a dial
// there.
type SystemCPU struct {
	step time.Duration
	read func() (cpuTicks, error) // the machine's counters so far

	mu   sync.Mutex              // guards win and load
	win  slidingWindow[cpuTicks] // counters by sample time
	load float64
}

// cpuTicks are the machine's CPU counters, summed over its cores, in clock ticks (USER_HZ).
type cpuTicks struct {
	busy  uint64 // user + nice + system + irq + softirq + steal
	total uint64 // busy + idle + iowait
}

// NewSystemCPU returns a sampler of the machine's CPU load; call Run to start sampling.
func NewSystemCPU() *SystemCPU {
	return newSystemCPU(cpuWindow, cpuStep, systemCPUTicks)
}

func newSystemCPU(window, step time.Duration, read func() (cpuTicks, error)) *SystemCPU {
	return &SystemCPU{step: step, read: read, win: slidingWindow[cpuTicks]{window: window}}
}

// Run takes a sample now and every 250 ms until ctx is done. It returns at once if the first reading
// fails, as it does without /proc/stat. It must not run twice at once.
func (s *SystemCPU) Run(ctx context.Context) { runSampling(ctx, s.step, s.sample) }

// sample records the counters at now and recomputes the load; it returns false, with the load reset to
// 0, if they cannot be read.
func (s *SystemCPU) sample(now time.Time) bool {
	t, err := s.read()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.win.reset()
		s.load = 0
		return false
	}
	base := s.win.add(now, t).v
	if t.busy < base.busy || t.total < base.total {
		// Counters do not go back; if they seem to, compare from here on, keeping the last load.
		s.win.reset()
		s.win.add(now, t)
		return true
	}
	if t.total == base.total {
		return true // no tick has passed: nothing new to say
	}
	// busy is part of total, so this is at most 1 unless iowait went back (it can, see proc(5)).
	s.load = min(1, float64(t.busy-base.busy)/float64(t.total-base.total))
	return true
}

// CPULoad returns the load of the last window; see [SystemCPU]. It is safe for concurrent use.
func (s *SystemCPU) CPULoad() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load
}

// readProcStat reads the counters of the file name, in the format of /proc/stat.
func readProcStat(name string) (cpuTicks, error) {
	f, err := os.Open(name)
	if err != nil {
		return cpuTicks{}, fmt.Errorf("dispatch: %w", err)
	}
	defer f.Close()
	return parseProcStat(f)
}

// errProcStat is wrapped by every error of parseProcStat.
var errProcStat = errors.New("dispatch: malformed /proc/stat")

// parseProcStat reads the first line of r, the aggregate line of /proc/stat:
//
//	cpu  user nice system idle iowait irq softirq steal guest guest_nice
//
// Counters a kernel does not have yet (iowait before 2.5.41, irq and softirq before 2.6.0, steal before
// 2.6.11) count as 0; guest and guest_nice are ignored, as user and nice include them. Anything else (a
// missing or other first field, a value that is not a decimal count, sums that overflow) is an error.
func parseProcStat(r io.Reader) (cpuTicks, error) {
	line, err := bufio.NewReader(r).ReadSlice('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		return cpuTicks{}, fmt.Errorf("%w: first line: %v", errProcStat, err)
	}
	f := strings.Fields(string(line))
	if len(f) == 0 || f[0] != "cpu" {
		return cpuTicks{}, fmt.Errorf("%w: the first line is not the aggregate cpu line", errProcStat)
	}
	f = f[1:]
	if len(f) < 4 {
		return cpuTicks{}, fmt.Errorf("%w: %d counters on the cpu line, want at least 4", errProcStat, len(f))
	}
	var v [8]uint64 // user nice system idle iowait irq softirq steal
	for i := range min(len(f), len(v)) {
		if v[i], err = strconv.ParseUint(f[i], 10, 64); err != nil {
			return cpuTicks{}, fmt.Errorf("%w: counter %d: %v", errProcStat, i+1, err)
		}
	}
	busy, c1 := sum(v[0], v[1], v[2], v[5], v[6], v[7])
	total, c2 := sum(busy, v[3], v[4])
	if c1|c2 != 0 {
		return cpuTicks{}, fmt.Errorf("%w: the counters overflow", errProcStat)
	}
	return cpuTicks{busy: busy, total: total}, nil
}

// sum adds xs, and returns a non-zero carry if the sum overflows.
func sum(xs ...uint64) (s, carry uint64) {
	for _, x := range xs {
		var c uint64
		s, c = bits.Add64(s, x, 0)
		carry |= c
	}
	return s, carry
}
