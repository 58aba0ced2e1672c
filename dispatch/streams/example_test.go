package streams_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/voiceotp/voiceotp/dispatch"
	"github.com/voiceotp/voiceotp/dispatch/streams"
	"github.com/voiceotp/voiceotp/store/redis"
)

// The wiring of one node: every node runs the same with its own Consumer name, on the same Redis.
// (No Output: it needs a Redis server.)
func ExampleNew() {
	client, err := redis.ParseURL("redis://localhost:6379/0")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	host, _ := os.Hostname()
	var (
		caller  dispatch.Caller  // a *callflow.Runner
		handler dispatch.Handler // the verifications' handler
	)
	q := streams.New(client, streams.Config{
		// Every node shares the calls-per-second budget through the same Redis.
		Config:   dispatch.Config{MaxConcurrent: 50, CPS: 20, Rate: redis.NewCounters(client)},
		Consumer: fmt.Sprintf("%s-%d", host, os.Getpid()),
	})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = q.Run(ctx, caller, handler) }() // until SIGTERM: then stop() and wait for Run to return
	_ = q.Enqueue(ctx, dispatch.Job{VerificationID: "VE1", CallID: "CA1", To: "+15551230001", Attempt: 1})
}
