package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Expiries is an index of verifications by expiry time, shared by every node: one sorted set, scored by
// the expiry in Unix milliseconds, so that the node that removes an id (ZREM, atomic) is the one that
// announces its expiry. It is safe for concurrent use; the caller closes the client.
//
//	ivr:{expiries}   sorted set: verification id → ExpiresAt in Unix ms
type Expiries struct {
	c   goredis.UniversalClient
	key string
}

// NewExpiries returns the index on c. Of the options only WithKeyPrefix applies. c is required (it
// panics if nil, a wiring mistake).
func NewExpiries(c goredis.UniversalClient, opts ...Option) *Expiries {
	if c == nil {
		panic("redis: NewExpiries needs a client")
	}
	return &Expiries{c: c, key: buildOptions(opts).prefix + "{expiries}"}
}

// Add records that verification id expires at at (again: the latest Add wins).
func (e *Expiries) Add(ctx context.Context, id string, at time.Time) error {
	if err := e.c.ZAdd(ctx, e.key, goredis.Z{Score: float64(at.UnixMilli()), Member: id}).Err(); err != nil {
		return fmt.Errorf("redis: expiries: add: %w", err)
	}
	return nil
}

// Due returns up to n ids whose expiry is at or before now, earliest first; they stay until taken.
func (e *Expiries) Due(ctx context.Context, now time.Time, n int) ([]string, error) {
	ids, err := e.c.ZRangeByScore(ctx, e.key, &goredis.ZRangeBy{
		Min: "-inf", Max: fmt.Sprint(now.UnixMilli()), Count: int64(n),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: expiries: due: %w", err)
	}
	return ids, nil
}

// Take removes id and reports whether this call removed it; of several nodes taking one id, one gets true.
func (e *Expiries) Take(ctx context.Context, id string) (bool, error) {
	n, err := e.c.ZRem(ctx, e.key, id).Result()
	if err != nil {
		return false, fmt.Errorf("redis: expiries: take: %w", err)
	}
	return n == 1, nil
}

// Signals tells every node that a verification ended, over Redis pub/sub (one channel, PUBLISH; in
// Cluster a publish reaches every node's subscribers). Delivery is at most once: a subscriber that is
// disconnected when a message is published never gets it. It is safe for concurrent use; the caller
// closes the client.
//
//	ivr:ended   the channel; each message is "<verification id> <status>"
type Signals struct {
	c       goredis.UniversalClient
	channel string
}

// NewSignals returns the signals on c. Of the options only WithKeyPrefix applies. c is required (it
// panics if nil, a wiring mistake).
func NewSignals(c goredis.UniversalClient, opts ...Option) *Signals {
	if c == nil {
		panic("redis: NewSignals needs a client")
	}
	return &Signals{c: c, channel: buildOptions(opts).prefix + "ended"}
}

// Publish tells every subscribed node that verification id ended with status.
func (s *Signals) Publish(ctx context.Context, id, status string) error {
	if strings.ContainsAny(id, " \r\n") || id == "" {
		return errors.New("redis: signals: bad verification id")
	}
	if err := s.c.Publish(ctx, s.channel, id+" "+status).Err(); err != nil {
		return fmt.Errorf("redis: signals: publish: %w", err)
	}
	return nil
}

// Subscribe subscribes, then calls fn for every message, serially, until ctx is done, and returns nil.
// It returns an error if the subscription is not confirmed. While subscribed, go-redis reconnects by
// itself after a lost connection; messages published meanwhile are lost. Malformed messages are dropped.
func (s *Signals) Subscribe(ctx context.Context, fn func(id, status string)) error {
	ps := s.c.Subscribe(ctx, s.channel)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("redis: signals: subscribe: %w", err)
	}
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			id, status, ok := strings.Cut(m.Payload, " ")
			if ok && id != "" && status != "" {
				fn(id, status)
			}
		}
	}
}
