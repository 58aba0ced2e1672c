package policy

import (
	"context"
	"errors"
	"testing"
	"time"
)

// guardLog is a GuardStore in a test's memory, with no time passing.
type guardLog struct {
	tallies map[string]int
	paused  map[string]bool
}

func newGuardLog() *guardLog { return &guardLog{tallies: map[string]int{}, paused: map[string]bool{}} }

func (g *guardLog) Tally(_ context.Context, key string, _ time.Duration, add bool) (int, error) {
	if add {
		g.tallies[key]++
	}
	return g.tallies[key], nil
}

func (g *guardLog) Pause(_ context.Context, key string, _ time.Duration) (bool, error) {
	if g.paused[key] {
		return false, nil
	}
	g.paused[key] = true
	return true, nil
}

func (g *guardLog) Paused(_ context.Context, key string) (time.Duration, error) {
	if g.paused[key] {
		return time.Hour, nil
	}
	return 0, nil
}

func (g *guardLog) Resume(_ context.Context, key string) (bool, error) {
	was := g.paused[key]
	delete(g.paused, key)
	return was, nil
}

func TestGuardPausesALowConversionRange(t *testing.T) {
	p, err := New(Config{AllowAllCountries: true, Guard: Guard{
		MinConversion: 0.5, MinVolume: 4, CountryMinVolume: 100, Window: time.Hour, Pause: time.Hour, PrefixLength: 6}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := newGuardLog()
	d, _ := p.Check("+12015550123")
	other, _ := p.Check("+12125551234")
	// Two approved, then unapproved ends: at the 4th end the conversion is 2/4 = 0.5 (not below), at
	// the 5th 2/5: paused, once.
	for i, approved := range []bool{true, true, false, false, false, false} {
		made, err := p.RecordEnd(ctx, s, "+12015550123", approved)
		if err != nil {
			t.Fatal(err)
		}
		if want := i == 4; (len(made) == 1) != want {
			t.Fatalf("end %d: pauses %+v, want a pause: %v", i+1, made, want)
		}
		if len(made) == 1 && (made[0].Range != "+120155" || made[0].Ended != 5 || made[0].Approved != 2) {
			t.Errorf("pause %+v", made[0])
		}
	}
	var r *Refusal
	if err := p.CheckPaused(ctx, s, d); !errors.As(err, &r) || r.Code != CodePrefixPaused || r.RetryAfter != time.Hour {
		t.Errorf("a start to the paused range: %v, want prefix_paused for 1h", err)
	}
	if err := p.CheckPaused(ctx, s, other); err != nil {
		t.Errorf("another range: %v", err)
	}
	if was, err := p.Resume(ctx, s, "+120155"); !was || err != nil {
		t.Errorf("Resume = %v, %v", was, err)
	}
	if err := p.CheckPaused(ctx, s, d); err != nil {
		t.Errorf("after the resume: %v", err)
	}
	if _, err := p.Resume(ctx, s, "+12a"); err == nil {
		t.Error("a malformed range was accepted")
	}
}

func TestGuardOff(t *testing.T) {
	p, _ := New(Config{AllowAllCountries: true})
	s := newGuardLog()
	for range 50 {
		if made, err := p.RecordEnd(context.Background(), s, "+12015550123", false); made != nil || err != nil {
			t.Fatal(made, err)
		}
	}
	if len(s.tallies) != 0 {
		t.Errorf("the guard counted while off: %v", s.tallies)
	}
	if _, err := New(Config{AllowAllCountries: true, Guard: Guard{MinConversion: 2}}); err == nil {
		t.Error("a conversion above 1 was accepted")
	}
}
