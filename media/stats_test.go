package media

import (
	"math"
	"testing"
	"time"
)

// seqs builds a sequence-number list from inclusive ranges written as pairs.
func seqs(ranges ...uint16) []uint16 {
	var out []uint16
	for i := 0; i+1 < len(ranges); i += 2 {
		for s := ranges[i]; ; s++ {
			out = append(out, s)
			if s == ranges[i+1] {
				break
			}
		}
	}
	return out
}

func TestSeqTrackerLost(t *testing.T) {
	tests := []struct {
		name string
		seqs []uint16
		want uint64
	}{
		{name: "no packets", want: 0},
		{name: "in order", seqs: seqs(0, 99), want: 0},
		{name: "one gap", seqs: seqs(0, 9, 15, 20), want: 5},
		{name: "two gaps", seqs: seqs(100, 109, 111, 119, 130, 139), want: 11},
		{name: "wrap without loss", seqs: seqs(65530, 65535, 0, 5), want: 0},
		{name: "loss across the wrap", seqs: seqs(65530, 65534, 2, 5), want: 3},
		{name: "two wraps", seqs: append(seqs(65000, 65535, 0, 65535), seqs(0, 9)...), want: 0},
		{name: "two wraps with loss", seqs: append(seqs(65000, 65535, 0, 65535), seqs(5, 9)...), want: 5},
		{name: "duplicates do not make loss negative", seqs: []uint16{1, 2, 2, 3, 3, 3}, want: 0},
		{name: "reordered", seqs: []uint16{1, 3, 2, 5, 4, 6}, want: 0},
		{name: "reordered across the wrap", seqs: []uint16{65534, 65535, 1, 0, 2}, want: 0},
		{name: "late packet then loss", seqs: []uint16{10, 12, 11, 20}, want: 7},
		{name: "one stray far packet is ignored", seqs: append(append(seqs(0, 9), 40000), seqs(10, 19)...), want: 0},
		{name: "sequence restart resyncs", seqs: append(seqs(0, 9), seqs(40000, 40009)...), want: 0},
		{name: "loss before a restart is kept", seqs: append(seqs(0, 4, 8, 9), seqs(40000, 40009)...), want: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr seqTracker
			for _, s := range tt.seqs {
				tr.update(s)
			}
			if got := tr.lost(); got != tt.want {
				t.Errorf("lost = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestSeqTrackerNewSource(t *testing.T) {
	var tr seqTracker
	for _, s := range seqs(0, 4, 7, 9) { // 2 lost
		tr.update(s)
	}
	tr.newSource()
	for _, s := range seqs(30000, 30004, 30006, 30006) { // 1 lost
		tr.update(s)
	}
	if got := tr.lost(); got != 3 {
		t.Errorf("lost over two sources = %d, want 3", got)
	}
}

func TestJitter(t *testing.T) {
	const ptime = 20 * time.Millisecond
	tests := []struct {
		name    string
		n       int
		delay   func(i int) time.Duration // network delay of packet i
		want    time.Duration
		within  time.Duration
		compare bool // also check against a float model of RFC 3550 §6.4.1
	}{
		{name: "perfect pacing", n: 200, delay: func(int) time.Duration { return 0 }, want: 0},
		{name: "constant delay is not jitter", n: 200, delay: func(int) time.Duration { return 80 * time.Millisecond }, want: 0},
		{
			// |D| is 10 ms for every pair, so J converges to 10 ms: J(n) = 10ms·(1 - (15/16)^(n-1)).
			name: "alternating 0 and 10 ms", n: 300,
			delay: func(i int) time.Duration { return time.Duration(i%2) * 10 * time.Millisecond },
			want:  10 * time.Millisecond, within: 200 * time.Microsecond,
		},
		{
			name: "one 40 ms spike decays", n: 100,
			delay: func(i int) time.Duration {
				if i == 50 {
					return 40 * time.Millisecond
				}
				return 0
			},
			compare: true,
		},
		{
			name: "irregular schedule", n: 500,
			delay:   func(i int) time.Duration { return time.Duration((i*7919)%23) * time.Millisecond },
			compare: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var j jitterEstimator
			epoch := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			r := &Receiver{epoch: epoch}
			var model, prevTransit float64
			for i := range tt.n {
				ts := 0xFFFFF000 + uint32(i)*160 // crosses the 32-bit wrap
				arrival := epoch.Add(time.Duration(i)*ptime + tt.delay(i))
				j.update(r.arrivalUnits(arrival), ts)
				transit := arrival.Sub(epoch).Seconds()*8000 - float64(i*160)
				if i > 0 {
					model += (math.Abs(transit-prevTransit) - model) / 16
				}
				prevTransit = transit
			}
			got := j.duration()
			if tt.compare {
				tt.want = time.Duration(model * float64(tsUnit))
				tt.within = 2 * tsUnit // integer rounding of A.8
			}
			if diff := got - tt.want; diff < -tt.within || diff > tt.within {
				t.Errorf("jitter = %v, want %v ± %v", got, tt.want, tt.within)
			}
		})
	}
}
