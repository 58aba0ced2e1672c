package admit

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
