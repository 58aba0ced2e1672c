//go:build !unix

package dispatch

import (
	"errors"
	"time"
)

// processCPUTime is not implemented without getrusage: ProcessCPU then reports no load.
func processCPUTime() (time.Duration, error) {
	return 0, errors.New("dispatch: process CPU time is not available on this platform")
}
