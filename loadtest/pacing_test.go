package loadtest

import (
	"testing"
	"time"
)

func TestPacing(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name     string
		arrivals []time.Duration // offsets from t0
		p50, p99 time.Duration
		max      time.Duration
		packets  uint64
	}{
		{"none", nil, 0, 0, 0, 0},
		{"one packet", []time.Duration{0}, 0, 0, 0, 0},
		{"perfect", []time.Duration{0, 20 * time.Millisecond, 40 * time.Millisecond, 60 * time.Millisecond}, 0, 0, 0, 3},
		{
			"early and late count alike", []time.Duration{0, 19 * time.Millisecond, 40 * time.Millisecond, 60 * time.Millisecond},
			time.Millisecond, time.Millisecond, time.Millisecond, 3,
		},
		{
			// A stall of 100 ms then four packets back to back: one deviation of 80 ms, four of 20 ms
			// (reported to the upper edge of their 100 µs bucket).
			"stall then burst", []time.Duration{0, 20 * time.Millisecond, 120 * time.Millisecond, 120 * time.Millisecond,
				120 * time.Millisecond, 120 * time.Millisecond, 120 * time.Millisecond},
			20*time.Millisecond + 100*time.Microsecond, 80 * time.Millisecond, 80 * time.Millisecond, 6,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Pacing
			for _, a := range tt.arrivals {
				p.Observe(t0.Add(a))
			}
			if p.Packets != tt.packets || p.Max != tt.max {
				t.Errorf("packets %d max %s, want %d %s", p.Packets, p.Max, tt.packets, tt.max)
			}
			if got := p.Quantile(0.5); got != tt.p50 {
				t.Errorf("p50 %s, want %s", got, tt.p50)
			}
			if got := p.Quantile(0.99); got != tt.p99 {
				t.Errorf("p99 %s, want %s", got, tt.p99)
			}
		})
	}
}

func TestPacingMerge(t *testing.T) {
	var a, b Pacing
	t0 := time.Unix(0, 0)
	for i := range 100 {
		a.Observe(t0.Add(time.Duration(i) * 20 * time.Millisecond))
		b.Observe(t0.Add(time.Duration(i)*20*time.Millisecond + time.Duration(i%2)*3*time.Millisecond))
	}
	a.Merge(&b)
	if a.Packets != 198 || a.Max != 3*time.Millisecond {
		t.Fatalf("merged %d packets, max %s", a.Packets, a.Max)
	}
	if got := a.Quantile(0.99); got != 3*time.Millisecond {
		t.Errorf("p99 %s, want 3ms", got)
	}
}

func BenchmarkPacingObserve(b *testing.B) {
	b.ReportAllocs()
	var p Pacing
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		p.Observe(now.Add(time.Duration(i) * 20 * time.Millisecond))
	}
}
