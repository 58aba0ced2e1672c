package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The conversion guard answers the fraud pattern of many starts and few approvals (traffic pumping):
// per number range and per country, it keeps the share of verifications that ended approved, and when
// that share falls below Guard.MinConversion over at least Guard.MinVolume ended verifications, it
// pauses the range (or country) for Guard.Pause: new starts there are refused (prefix_paused) until the
// pause ends or an operator resumes it.
//
// Conversion is measured on verifications that have ended (approved; or expired, locked or failed
// without an approval), not on starts, so that a burst of genuine starts whose codes are still on their
// way never looks like a flood; a flood is seen as its verifications expire, within otp.ttl. A
// verification the backend canceled tells nothing and is not counted.

// Guard configures the conversion guard. The zero value is off.
type Guard struct {
	// MinConversion is the share of ended verifications, 0 to 1, that must be approved; below it (with
	// MinVolume ended) the range is paused. 0 turns the guard off.
	MinConversion float64
	// MinVolume is how many verifications must have ended in a number range within Window before its
	// conversion is judged.
	MinVolume int
	// CountryMinVolume is the same for a whole country, which sees more genuine traffic; 0 leaves
	// countries unguarded.
	CountryMinVolume int
	// Window is the sliding window of the counts.
	Window time.Duration
	// Pause is how long a paused range stays paused.
	Pause time.Duration
	// PrefixLength is the number of digits after '+' that make a number range.
	PrefixLength int
}

func (g Guard) on() bool { return g.MinConversion > 0 }

func (g Guard) validate() error {
	switch {
	case !g.on():
		return nil
	case g.MinConversion > 1:
		return errors.New("min_conversion must be 0 to 1")
	case g.MinVolume < 1:
		return errors.New("min_volume must be at least 1")
	case g.CountryMinVolume < 0:
		return errors.New("country_min_volume must not be negative")
	case g.Window < time.Second || g.Pause < time.Second:
		return errors.New("window and pause must be at least 1s")
	case g.PrefixLength < 1 || g.PrefixLength > 14:
		return errors.New("prefix_length must be 1 to 14 digits")
	}
	return nil
}

// GuardStore keeps the guard's counts and pauses, shared by every node that should agree on them;
// store/memory's and store/redis's Counters implement it.
type GuardStore interface {
	// Tally records one event under key when add, forgets those older than window, and returns how
	// many remain.
	Tally(ctx context.Context, key string, window time.Duration, add bool) (int, error)
	// Pause pauses key for d unless it is paused; newly reports whether this call paused it.
	Pause(ctx context.Context, key string, d time.Duration) (newly bool, err error)
	// Paused returns how long key stays paused, 0 when it is not.
	Paused(ctx context.Context, key string) (time.Duration, error)
	// Resume lifts the pause of key and reports whether it was paused.
	Resume(ctx context.Context, key string) (bool, error)
}

// CodePrefixPaused is the code of a start refused because the conversion guard paused its number
// range or country; the Refusal's RetryAfter is the time left.
const CodePrefixPaused = "prefix_paused"

// RuleGuard (prefix_paused) names the guard's refusals.
const RuleGuard = "conversion_guard"

// Paused is one pause the guard made.
type Paused struct {
	// Range is the number range ("+155512") or the country ("US") paused.
	Range string
	// Ended and Approved are the counts that made the decision, within the window.
	Ended, Approved int
	// For is how long it is paused.
	For time.Duration
}

// Conversion is Approved / Ended.
func (p Paused) Conversion() float64 {
	if p.Ended == 0 {
		return 0
	}
	return float64(p.Approved) / float64(p.Ended)
}

// guardRanges are the range (prefix) and, when countries are guarded, the country of a number.
func (p *Policy) guardRanges(d Destination) []string {
	g := p.guard
	r := []string{d.Number}
	if len(d.Number) > g.PrefixLength+1 {
		r[0] = d.Number[:g.PrefixLength+1]
	}
	if g.CountryMinVolume > 0 && d.Country != "" {
		r = append(r, d.Country)
	}
	return r
}

// CheckPaused refuses (a *Refusal, prefix_paused) a start to a range or country the guard paused. It
// does nothing when the guard is off.
func (p *Policy) CheckPaused(ctx context.Context, s GuardStore, d Destination) error {
	if !p.guard.on() {
		return nil
	}
	for _, r := range p.guardRanges(d) {
		left, err := s.Paused(ctx, "guard:pause:"+r)
		if err != nil {
			return fmt.Errorf("policy: reading the guard's pauses: %w", err)
		}
		if left > 0 {
			return &Refusal{Code: CodePrefixPaused, Rule: RuleGuard, RetryAfter: max(time.Second, left),
				Reason: "calls to this number range are paused: too few of its verifications were approved"}
		}
	}
	return nil
}

// RecordEnd counts a verification to number that ended, approved or not, and pauses the ranges whose
// conversion fell below Guard.MinConversion; it returns the pauses it made (newly, on any node). It
// does nothing when the guard is off.
func (p *Policy) RecordEnd(ctx context.Context, s GuardStore, number string, approved bool) ([]Paused, error) {
	if !p.guard.on() {
		return nil, nil
	}
	d, _ := p.Check(number) // the number was allowed when it started; only its country is wanted here
	d.Number = number
	g := p.guard
	var made []Paused
	for i, r := range p.guardRanges(d) {
		ended, err := s.Tally(ctx, "guard:ended:"+r, g.Window, true)
		if err != nil {
			return made, fmt.Errorf("policy: counting an ended verification: %w", err)
		}
		ok, err := s.Tally(ctx, "guard:approved:"+r, g.Window, approved)
		if err != nil {
			return made, fmt.Errorf("policy: counting an approval: %w", err)
		}
		volume := g.MinVolume
		if i > 0 {
			volume = g.CountryMinVolume
		}
		if ended < volume || float64(ok) >= g.MinConversion*float64(ended) {
			continue
		}
		newly, err := s.Pause(ctx, "guard:pause:"+r, g.Pause)
		if err != nil {
			return made, fmt.Errorf("policy: pausing a range: %w", err)
		}
		if newly {
			made = append(made, Paused{Range: r, Ended: ended, Approved: ok, For: g.Pause})
		}
	}
	return made, nil
}

// Resume lifts the guard's pause of a number range ("+155512") or a country ("US"); it reports whether
// it was paused. A range that is not '+' and digits or a two-letter country is an error.
func (p *Policy) Resume(ctx context.Context, s GuardStore, r string) (bool, error) {
	valid := len(r) == 2 && strings.ToUpper(r) == r && r[0] >= 'A' && r[0] <= 'Z' && r[1] >= 'A' && r[1] <= 'Z'
	if len(r) >= 2 && len(r) <= maxDigits+1 && r[0] == '+' && allDigits(r[1:]) {
		valid = true
	}
	if !valid {
		return false, errors.New("policy: a paused range is '+' and digits, or a two-letter country code")
	}
	return s.Resume(ctx, "guard:pause:"+r)
}
