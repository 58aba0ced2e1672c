package loadtest

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestParseMix(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string // Mix.String(), or the error's substring
		wantErr bool
	}{
		{"default", "answer=85,nokey=5,busy=4,noanswer=3,hangup=3", "answer=85,nokey=5,busy=4,noanswer=3,hangup=3", false},
		{"spaces and case", " Answer = 9 , busy=1 ", "answer=9,busy=1", false},
		{"one behaviour", "noanswer=1", "noanswer=1", false},
		{"zero weight left out", "answer=1,busy=0", "answer=1", false},
		{"unknown behaviour", "answer=1,ring=2", "unknown behaviour", true},
		{"empty name", "=3", "unknown behaviour", true},
		{"no weight", "answer", "behaviour=weight", true},
		{"negative", "answer=-1", "whole number", true},
		{"fraction", "answer=1.5", "whole number", true},
		{"twice", "answer=1,answer=2", "twice", true},
		{"all zero", "answer=0", "no behaviour", true},
		{"empty", "", "no behaviour", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMix(tt.in)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("ParseMix(%q) = %v, %v; want an error with %q", tt.in, m, err, tt.want)
				}
				return
			}
			if err != nil || m.String() != tt.want {
				t.Fatalf("ParseMix(%q) = %q, %v; want %q", tt.in, m, err, tt.want)
			}
		})
	}
}

func TestMixerDealsExactProportions(t *testing.T) {
	x := mixer{mix: DefaultMix()}
	got := map[Behaviour]int{}
	for range 200 {
		got[x.next()]++
	}
	want := map[Behaviour]int{Answer: 170, NoKey: 10, Busy: 8, NoAnswer: 6, Hangup: 6}
	for b, n := range want {
		if got[b] != n {
			t.Errorf("%s: %d of 200, want %d", b, got[b], n)
		}
	}
}

func TestMixerSpreadsRareBehaviours(t *testing.T) {
	// The first 20 calls of the default mix already hold a call of every behaviour, so a short run
	// exercises them all.
	x := mixer{mix: DefaultMix()}
	seen := map[Behaviour]bool{}
	for range 34 {
		seen[x.next()] = true
	}
	if len(seen) != len(Behaviours()) {
		t.Errorf("34 calls cover %v", seen)
	}
}

func TestNumberRoundTrip(t *testing.T) {
	for _, b := range Behaviours() {
		for _, c := range []struct{ run, serial int }{{0, 0}, {7, 42}, {999, 999_999}} {
			n := Number(b, c.run, c.serial)
			if len(n) != 15 || !strings.HasPrefix(n, "+1555") {
				t.Errorf("Number(%s, %d, %d) = %q", b, c.run, c.serial, n)
			}
			if got, ok := BehaviourOf(n); !ok || got != b {
				t.Errorf("BehaviourOf(%q) = %q, %v; want %s", n, got, ok, b)
			}
		}
	}
	if Number(Answer, 1, 2) == Number(Answer, 2, 1) {
		t.Error("two runs call the same number")
	}
}

func TestBehaviourOfRejects(t *testing.T) {
	for _, n := range []string{"", "+15551234567", "+15559000000001", "+1555000000000x", "+1666000000000", "+15550000000000"[:14]} {
		if b, ok := BehaviourOf(n); ok {
			t.Errorf("BehaviourOf(%q) = %s, want not ours", n, b)
		}
	}
}

func TestParseDelay(t *testing.T) {
	tests := []struct {
		in      string
		want    Delay
		wantErr bool
	}{
		{"", Delay{}, false},
		{"0", Delay{}, false},
		{"1s", Delay{time.Second, time.Second}, false},
		{"200ms-2s", Delay{200 * time.Millisecond, 2 * time.Second}, false},
		{" 1s - 1s ", Delay{time.Second, time.Second}, false},
		{"2s-1s", Delay{}, true},
		{"-1s", Delay{}, true},
		{"soon", Delay{}, true},
		{"1s-later", Delay{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDelay(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseDelay(%q) = %v, %v", tt.in, got, err)
			}
		})
	}
}

func TestDelayDrawStaysInRange(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	d := Delay{200 * time.Millisecond, 2 * time.Second}
	lo, hi := d.Max, d.Min
	for range 10000 {
		v := d.Draw(r)
		if v < d.Min || v > d.Max {
			t.Fatalf("drew %s outside %s", v, d)
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	if lo > 250*time.Millisecond || hi < 1950*time.Millisecond {
		t.Errorf("10000 draws span only %s–%s", lo, hi)
	}
	if got := (Delay{time.Second, time.Second}).Draw(r); got != time.Second {
		t.Errorf("a fixed delay drew %s", got)
	}
}
