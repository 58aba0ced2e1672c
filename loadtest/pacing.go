package loadtest

import "time"

// Pacing histogram geometry: 100 µs buckets up to 25 ms; anything later lands in the last bucket.
const (
	pacingBucket  = 100 * time.Microsecond
	pacingBuckets = 251
	framePeriod   = 20 * time.Millisecond
)

// Pacing is the distribution of how far apart the server's audio packets arrived, compared with the
// 20 ms they should be apart: for each packet after the first, |arrival − previous arrival − 20 ms|.
// That is the per-packet transit difference D(i−1, i) of RFC 3550 §6.4.1 for 20 ms G.711 frames, the
// quantity the interarrival jitter smooths; its tail shows late frames the smoothed jitter hides. It is
// measured on the phone, so it includes the phone's own scheduling delay: an upper bound on the
// server's pacing error. A gap from a lost packet counts as one large deviation.
//
// The zero value is ready; Observe allocates nothing. It is not safe for concurrent use.
type Pacing struct {
	// Packets is the number of deviations recorded (audio packets after the first).
	Packets uint64
	// Max is the largest deviation.
	Max time.Duration
	// Hist counts deviations in 100 µs buckets: Hist[i] holds [i×100 µs, (i+1)×100 µs); the last
	// bucket also holds everything above.
	Hist [pacingBuckets]uint32

	last time.Time
}

// Observe records the arrival of one 20 ms audio packet at now.
func (p *Pacing) Observe(now time.Time) {
	if p.last.IsZero() {
		p.last = now
		return
	}
	d := now.Sub(p.last) - framePeriod
	p.last = now
	if d < 0 {
		d = -d
	}
	p.Packets++
	p.Max = max(p.Max, d)
	i := int(d / pacingBucket)
	if i >= pacingBuckets {
		i = pacingBuckets - 1
	}
	p.Hist[i]++
}

// Merge adds o's counts to p.
func (p *Pacing) Merge(o *Pacing) {
	p.Packets += o.Packets
	p.Max = max(p.Max, o.Max)
	for i, n := range o.Hist {
		p.Hist[i] += n
	}
}

// Quantile returns the deviation below which a fraction q (0–1) of the packets fall, to the upper
// edge of its 100 µs bucket (Max for the last one); 0 when nothing was recorded.
func (p *Pacing) Quantile(q float64) time.Duration {
	if p.Packets == 0 {
		return 0
	}
	rank := uint64(q*float64(p.Packets) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i, n := range p.Hist {
		seen += uint64(n)
		if seen >= rank {
			if i == pacingBuckets-1 {
				return p.Max
			}
			return min(time.Duration(i+1)*pacingBucket, p.Max)
		}
	}
	return p.Max
}
