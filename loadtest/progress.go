package loadtest

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// ProgressPrinter shows a running load test: on a terminal one line redrawn in place (calls done of
// the target, a bar, active calls, calls per second, errors, elapsed and estimated time left), and
// elsewhere (a CI log, a pipe) one plain line per update. Its Update method is a DriverConfig.OnProgress.
// It is not safe for concurrent use; the driver calls it from one goroutine.
type ProgressPrinter struct {
	w     io.Writer
	bar   *progressbar.ProgressBar // nil when not a terminal
	every time.Duration
	last  time.Time
}

// NewProgressPrinter returns a printer writing to w. tty says whether w is a terminal (the caller knows,
// e.g. with golang.org/x/term's IsTerminal); target is the number of calls, or 0 for a test that runs
// for a duration. Off a terminal a line is printed at most every plainEvery (if zero, 5 s), and the
// final one always.
func NewProgressPrinter(w io.Writer, tty bool, target int, plainEvery time.Duration) *ProgressPrinter {
	if plainEvery <= 0 {
		plainEvery = 5 * time.Second
	}
	p := &ProgressPrinter{w: w, every: plainEvery}
	if tty {
		max := int64(target)
		if target <= 0 {
			max = -1 // a spinner
		}
		p.bar = progressbar.NewOptions64(max,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetWidth(24),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(false), // the driver's ETA knows the pace and call length
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
	}
	return p
}

// Update shows p; after the final one the line is finished with a newline.
func (pp *ProgressPrinter) Update(p Progress) {
	if pp.bar != nil {
		pp.bar.Describe(fmt.Sprintf("active %d · %.1f cps · %d errors · eta %s", p.Active, p.CPS, p.Errors, etaString(p.ETA)))
		_ = pp.bar.Set(p.Done)
		if p.Final {
			_ = pp.bar.Finish()
			fmt.Fprintln(pp.w)
		}
		return
	}
	now := time.Now()
	if !p.Final && now.Sub(pp.last) < pp.every {
		return
	}
	pp.last = now
	fmt.Fprintln(pp.w, ProgressLine(p))
}

// ProgressLine formats p as one plain line.
func ProgressLine(p Progress) string {
	done := fmt.Sprintf("%d", p.Done)
	if p.Target > 0 {
		done = fmt.Sprintf("%d/%d", p.Done, p.Target)
	}
	return fmt.Sprintf("[%6.1fs] calls %s done, %d started, %d active, %.1f cps, %d errors, eta %s",
		p.Elapsed.Seconds(), done, p.Started, p.Active, p.CPS, p.Errors, etaString(p.ETA))
}

func etaString(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(time.Second).String()
}
