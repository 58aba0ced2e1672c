package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/store/redis"
	"github.com/voiceotp/voiceotp/store/redis/redistest"
	"github.com/voiceotp/voiceotp/store/storetest"
)

func TestExpiriesContract(t *testing.T) {
	redistest.Need(t, srv)
	storetest.RunExpiries(t, func(t *testing.T) storetest.Expiries { return redis.NewExpiries(fresh(t)) })
}

// A published end reaches every subscribed node, in order, and a malformed id is refused.
func TestSignalsReachEveryNode(t *testing.T) {
	redistest.Need(t, srv)
	pub := redis.NewSignals(fresh(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type msg struct{ id, status string }
	got := []chan msg{make(chan msg, 4), make(chan msg, 4)}
	ready := make(chan int, 64)
	for i := range got {
		s := redis.NewSignals(srv.Client(t))
		go func() {
			_ = s.Subscribe(ctx, func(id, status string) {
				if id == "VEready" {
					select {
					case ready <- i:
					default:
					}
					return
				}
				got[i] <- msg{id, status}
			})
		}()
	}
	// Subscriptions are confirmed inside Subscribe; publish a marker until each node has seen one.
	for seen := map[int]bool{}; len(seen) < 2; {
		if err := pub.Publish(ctx, "VEready", "pending"); err != nil {
			t.Fatal(err)
		}
		select {
		case i := <-ready:
			seen[i] = true
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("subscribers never ready")
		}
	}
	if err := pub.Publish(ctx, "VE1", "canceled"); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "VE2", "expired"); err != nil {
		t.Fatal(err)
	}
	for i, ch := range got {
		for _, want := range []msg{{"VE1", "canceled"}, {"VE2", "expired"}} {
			select {
			case m := <-ch:
				for m.id == "VEready" {
					m = <-ch
				}
				if m != want {
					t.Errorf("node %d got %+v, want %+v", i, m, want)
				}
			case <-ctx.Done():
				t.Fatalf("node %d never got %+v", i, want)
			}
		}
	}
	if err := pub.Publish(ctx, "VE bad", "canceled"); err == nil {
		t.Error("Publish of an id with a space succeeded")
	}
}
