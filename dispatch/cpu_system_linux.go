//go:build linux

package dispatch

// systemCPUTicks returns the machine's CPU counters from /proc/stat.
func systemCPUTicks() (cpuTicks, error) { return readProcStat("/proc/stat") }
