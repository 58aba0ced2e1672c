package dispatch_test

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/dispatch"
)

// phone stands in for *callflow.Runner: every call is answered and delivered.
type phone struct{}

func (phone) Run(_ context.Context, req callflow.Request, onEvent func(callflow.Event)) *callflow.Result {
	onEvent(callflow.Event{Type: callflow.EventDialing})
	onEvent(callflow.Event{Type: callflow.EventAnswered, SIPStatus: 200})
	return &callflow.Result{Outcome: callflow.Delivered, Number: req.Number, SIPStatus: 200}
}

// verifications stands in for the Handler: VE2 expired while its job waited.
type verifications struct{ reported chan string }

func (v verifications) Prepare(_ context.Context, j dispatch.Job, _ context.CancelCauseFunc) (callflow.Request, error) {
	if j.VerificationID == "VE2" {
		return callflow.Request{}, fmt.Errorf("verification %s expired: %w", j.VerificationID, dispatch.ErrSkip)
	}
	return callflow.Request{Number: j.To, Code: "482913"}, nil
}

func (v verifications) Event(j dispatch.Job, e callflow.Event) {
	fmt.Println(j.CallID, "event", e.Type)
}

func (v verifications) Finish(j dispatch.Job, r *callflow.Result) {
	v.reported <- fmt.Sprint(j.CallID, " finished: ", r.Outcome)
}

func (v verifications) Skipped(j dispatch.Job, err error) {
	v.reported <- fmt.Sprint(j.CallID, " skipped: ", err)
}

func ExampleMemory() {
	h := verifications{reported: make(chan string)}
	q := dispatch.NewMemory(dispatch.Config{MaxConcurrent: 1, CPS: 1000})
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- q.Run(ctx, phone{}, h) }()

	_ = q.Enqueue(ctx, dispatch.Job{VerificationID: "VE1", CallID: "CA1", To: "+15551230001", Attempt: 1})
	_ = q.Enqueue(ctx, dispatch.Job{VerificationID: "VE2", CallID: "CA2", To: "+15551230002", Attempt: 1})
	fmt.Println(<-h.reported)
	fmt.Println(<-h.reported)

	stop()
	fmt.Println("run:", <-stopped)
	st := q.Stats()
	fmt.Println("dialled", st.Dialled, "skipped", st.Skipped)
	// Output:
	// CA1 event dialing
	// CA1 event answered
	// CA1 finished: delivered
	// CA2 skipped: verification VE2 expired: dispatch: job skipped
	// run: <nil>
	// dialled 1 skipped 1
}

// busyThenIdle stands in for the process's CPU: busy at the first look, idle after.
type busyThenIdle struct{ looks atomic.Int32 }

func (b *busyThenIdle) CPULoad() float64 {
	if b.looks.Add(1) == 1 {
		return 0.97
	}
	return 0.2
}

// With MaxCPU set, a job waits, still queued, while the load is above it; it is dialled once the load
// has dropped (here at the next look, 250 ms later).
func ExampleConfig_maxCPU() {
	h := verifications{reported: make(chan string)}
	q := dispatch.NewMemory(dispatch.Config{MaxCPU: 0.9, CPU: &busyThenIdle{}})
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- q.Run(ctx, phone{}, h) }()

	_ = q.Enqueue(ctx, dispatch.Job{VerificationID: "VE1", CallID: "CA1", To: "+15551230001", Attempt: 1})
	fmt.Println(<-h.reported)
	stop()
	<-stopped
	st := q.Stats()
	fmt.Println("dialled", st.Dialled, "held for CPU", st.HeldForCPU)
	// Output:
	// CA1 event dialing
	// CA1 event answered
	// CA1 finished: delivered
	// dialled 1 held for CPU 1
}
