package redis_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/voiceotp/voiceotp/store/redis"
)

// A node's store and counters on one client. (No Output: it needs a Redis server.)
func ExampleNew() {
	client, err := redis.ParseURL("redis-sentinel://s1:26379,s2:26379/0?master_name=mymaster&dial_timeout=1s")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close() // after the Store and Counters are done with it
	store := redis.New(client, redis.WithRetention(6*time.Hour))
	counters := redis.NewCounters(client)

	ctx := context.Background()
	if err := store.Ping(ctx); err != nil {
		fmt.Println("redis is down: answer 503")
		return
	}
	if ok, retry, err := counters.Count(ctx, "+15551234567", time.Hour, 5); err != nil || !ok {
		fmt.Println("429, Retry-After", retry.Round(time.Second))
		return
	}
	if ok, wait, err := counters.TakeToken(ctx, "trunk:main", 10, 1); err != nil || !ok {
		fmt.Println("429, Retry-After", wait.Round(time.Second))
	}
}
