package loadtest

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ProcUsage is a process's cumulative CPU time and its resident memory at one moment.
type ProcUsage struct {
	CPU time.Duration // user + system time since the process started
	RSS uint64        // resident set size, bytes
}

// Proc samples one process's CPU and memory. Its zero value is not usable: see [SelfProc] and
// [PidProc].
type Proc struct {
	// Name labels the process in reports ("server", "farm").
	Name string
	read func() (ProcUsage, error)
}

// Read returns the process's usage now.
func (p Proc) Read() (ProcUsage, error) { return p.read() }

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux architecture Go
// supports.
const clockTicks = 100

// PidProc samples process pid from /proc/<pid>/stat (Linux only; Read fails elsewhere). CPU has the
// 10 ms resolution of the kernel's clock ticks.
func PidProc(name string, pid int) Proc {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	return Proc{Name: name, read: func() (ProcUsage, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return ProcUsage{}, fmt.Errorf("loadtest: %w", err)
		}
		return parseStat(b)
	}}
}

// SelfProc samples this process.
func SelfProc(name string) Proc { return PidProc(name, os.Getpid()) }

// parseStat reads utime, stime (fields 14, 15) and rss (field 24, in pages) from a /proc/<pid>/stat
// line. The command name (field 2) is in parentheses and may hold spaces, so fields are counted after
// the last ')'.
func parseStat(b []byte) (ProcUsage, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ProcUsage{}, fmt.Errorf("loadtest: /proc stat %q: no command name", b)
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state)
	if len(f) < 22 {
		return ProcUsage{}, fmt.Errorf("loadtest: /proc stat: %d fields after the command name, want 22", len(f))
	}
	num := func(k int) (uint64, error) { return strconv.ParseUint(string(f[k-3]), 10, 64) }
	ut, err1 := num(14)
	st, err2 := num(15)
	rss, err3 := num(24)
	if err1 != nil || err2 != nil || err3 != nil {
		return ProcUsage{}, fmt.Errorf("loadtest: /proc stat: bad number in utime, stime or rss")
	}
	return ProcUsage{
		CPU: time.Duration(ut+st) * time.Second / clockTicks,
		RSS: rss * uint64(os.Getpagesize()),
	}, nil
}
