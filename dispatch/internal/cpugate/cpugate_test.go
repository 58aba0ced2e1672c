package cpugate

import (
	"context"
	"log/slog"
	"math"
	"testing"
	"time"
)

type load float64

func (l load) CPULoad() float64 { return float64(l) }

func TestNew(t *testing.T) {
	tests := []struct {
		name       string
		max        float64
		s          Sampler
		off        bool
		wantResume float64
	}{
		{"zero is off", 0, load(1), true, 0},
		{"negative is off", -1, load(1), true, 0},
		{"NaN is off", math.NaN(), load(1), true, 0},
		{"no sampler is off", 0.9, nil, true, 0},
		{"margin below the threshold", 0.9, load(1), false, 0.85},
		{"one", 1, load(1), false, 0.95},
		{"half a small threshold", 0.06, load(1), false, 0.03},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(tt.max, tt.s, time.Now, nil, slog.New(slog.DiscardHandler))
			if (g == nil) != tt.off {
				t.Fatalf("New = %v, want off %v", g, tt.off)
			}
			if g != nil && math.Abs(g.resume-tt.wantResume) > 1e-9 {
				t.Errorf("resume level %v, want %v", g.resume, tt.wantResume)
			}
		})
	}
}

func TestNilGateIsOff(t *testing.T) {
	var g *Gate
	if err := g.Wait(context.Background()); err != nil {
		t.Errorf("Wait = %v", err)
	}
	if n, d := g.Held(); n != 0 || d != 0 {
		t.Errorf("Held = %d, %v", n, d)
	}
	if l := g.Load(); l != 0 {
		t.Errorf("Load = %v", l)
	}
}

// simulated is a machine whose load follows the calls a gate let in: each call adds perCall to the
// base load once it is older than showAfter (it rang, then the sampler's window caught up).
type simulated struct {
	now       time.Time
	base      float64
	perCall   float64
	showAfter time.Duration
	admitted  []time.Time
}

func (m *simulated) CPULoad() float64 {
	n := 0
	for _, t := range m.admitted {
		if m.now.Sub(t) >= m.showAfter {
			n++
		}
	}
	return m.base + m.perCall*float64(n)
}

// TestSurgeIsLetInALittleAtATime offers 2,000 dials at 200 per second to a machine where a call costs
// 0.1 % of the CPU, shown 1.5 s after its dial. Without the projection the gate holds only once the
// load shows the threshold crossed, by when the 1.5 s of dials behind it take the machine far past it;
// with it, the load the admitted calls end up making stays near the threshold, and the rest wait.
func TestSurgeIsLetInALittleAtATime(t *testing.T) {
	for _, tt := range []struct {
		name    string
		project bool
		maxLoad float64 // the load of every admitted call, once shown, at most
		minLoad float64 // and at least
	}{
		{"load alone", false, 2, 1.1},
		{"with the projection", true, 1.0, 0.8},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := &simulated{now: time.Unix(1000, 0), base: 0.05, perCall: 0.001, showAfter: 1500 * time.Millisecond}
			now := func() time.Time { return m.now }
			start := m.now
			end := start.Add(10 * time.Second) // the surge is over; the rest wait for calls to end
			sleepUntil := func(_ context.Context, u time.Time) error {
				if u.After(m.now) {
					m.now = u
				}
				if m.now.After(end) {
					return context.DeadlineExceeded
				}
				return nil
			}
			g := New(0.9, m, now, sleepUntil, slog.New(slog.DiscardHandler))
			if tt.project {
				g = g.WithActive(func() int { return len(m.admitted) })
			}
			// Calls last longer than the test: none ends.
			for i := range 2000 {
				offered := start.Add(time.Duration(i) * 5 * time.Millisecond)
				if offered.After(m.now) {
					m.now = offered
				}
				if err := g.Wait(context.Background()); err != nil {
					break
				}
				g.Started()
				m.admitted = append(m.admitted, m.now)
			}
			m.now = m.now.Add(time.Hour)
			t.Logf("%d calls admitted", len(m.admitted))
			if got := m.CPULoad(); got < tt.minLoad || got > tt.maxLoad {
				t.Errorf("%d calls admitted make a load of %.2f, want %.2f-%.2f", len(m.admitted), got, tt.minLoad, tt.maxLoad)
			}
		})
	}
}
