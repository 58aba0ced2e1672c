package policy

import (
	"context"
	"errors"
	"testing"
	"time"
)

// countLog is a Counter that keeps every event (no window sliding: the tests stay within one window).
type countLog map[string]int

func (c countLog) Count(_ context.Context, key string, _ time.Duration, max int) (bool, time.Duration, error) {
	if c[key] >= max {
		return false, 30 * time.Second, nil
	}
	c[key]++
	return true, 0, nil
}

func TestCountStart(t *testing.T) {
	p, err := New(Config{AllowAllCountries: true, Limits: []Limit{
		{Scope: ScopePrefix, Max: 2, Window: time.Hour, PrefixLength: 6},
		{Scope: ScopeCountry, Max: 3, Window: time.Hour},
		{Scope: ScopeAPIKey, Max: 4, Window: time.Hour},
		{Scope: ScopeGlobal, Max: 5, Window: 24 * time.Hour},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := countLog{}
	start := func(number, key string) *Refusal {
		t.Helper()
		d, err := p.Check(number)
		if err != nil {
			t.Fatalf("Check(%s): %v", number, err)
		}
		err = p.CountStart(context.Background(), c, d, key)
		var r *Refusal
		if err != nil && !errors.As(err, &r) {
			t.Fatalf("CountStart: %v", err)
		}
		return r
	}
	us1, us2, gb, gb2 := "+12015550123", "+12025550123", "+447911123456", "+447400123456"
	for _, tc := range []struct {
		number, key, rule string
	}{
		{us1, "k1", ""}, {us1, "k1", ""}, {us1, "k1", "prefix"}, // the range +120155 is full
		{us2, "k1", ""}, {us2, "k1", "country"}, // US is full (3: two of +120155, one of +120255)
		{gb, "k1", ""}, {gb, "k2", ""}, {gb2, "k2", "global"}, // k1 made 4 starts; 5 in all
	} {
		r := start(tc.number, tc.key)
		switch {
		case tc.rule == "" && r != nil:
			t.Errorf("%s by %s refused: %v", tc.number, tc.key, r)
		case tc.rule != "" && (r == nil || r.Rule != tc.rule || r.Code != CodeTooManyStarts || r.RetryAfter != 30*time.Second):
			t.Errorf("%s by %s: %v, want too_many_starts by %s after 30s", tc.number, tc.key, r, tc.rule)
		}
	}
	if c["api_key:3600:k1"] != 4 || c["global:86400"] != 5 {
		t.Errorf("counts %v", c)
	}
}

func TestCallerID(t *testing.T) {
	p, err := New(Config{AllowAllCountries: true, CallerIDs: []string{"+12015550100"}})
	if err != nil {
		t.Fatal(err)
	}
	for id, ok := range map[string]bool{"": true, "+12015550100": true, "+12015550101": false, "voiceotp": false} {
		err := p.CallerID(id)
		if (err == nil) != ok || (!ok && !errors.Is(err, ErrCallerIDNotAllowed)) {
			t.Errorf("CallerID(%q) = %v, want ok %v", id, err, ok)
		}
	}
	if _, err := New(Config{AllowAllCountries: true, CallerIDs: []string{"+1 201"}, Limits: []Limit{{Scope: "x", Max: 1, Window: time.Hour}}}); err == nil {
		t.Error("a bad caller ID and an unknown scope were accepted")
	}
}
