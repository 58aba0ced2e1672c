//go:build !linux

package dispatch

import "errors"

// systemCPUTicks is not implemented without /proc/stat: SystemCPU then reports no load.
func systemCPUTicks() (cpuTicks, error) {
	return cpuTicks{}, errors.New("dispatch: the machine's CPU time is not available on this platform (no /proc/stat)")
}
