package redis

import (
	"context"
	"time"
)

// TakeTokenAt is TakeToken that also returns Redis's time of the decision, so tests can count tokens
// by the limiter's own clock.
func (l *Limits) TakeTokenAt(ctx context.Context, key string, rate float64, burst int) (bool, time.Duration, time.Time, error) {
	return l.take(ctx, key, rate, burst)
}
