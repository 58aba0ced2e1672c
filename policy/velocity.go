package policy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Scope is what a velocity [Limit] counts starts by.
type Scope string

// The scopes of a [Limit].
const (
	// ScopeAPIKey counts the starts of each API key (by its id, never the key).
	ScopeAPIKey Scope = "api_key"
	// ScopeCountry counts the starts to each region ("US"); non-geographic numbers count under "001".
	ScopeCountry Scope = "country"
	// ScopePrefix counts the starts to each prefix of Limit.PrefixLength digits of the E.164 number
	// ("+155512" for 6): a pumped range shows up here first.
	ScopePrefix Scope = "prefix"
	// ScopeGlobal counts every start of the deployment.
	ScopeGlobal Scope = "global"
)

// Limit is one velocity limit: at most Max starts per sliding Window for each value of Scope.
type Limit struct {
	Scope  Scope
	Max    int
	Window time.Duration
	// PrefixLength is the number of digits after '+' that ScopePrefix counts by; unused otherwise.
	PrefixLength int
}

func (l Limit) validate() error {
	switch {
	case l.Scope != ScopeAPIKey && l.Scope != ScopeCountry && l.Scope != ScopePrefix && l.Scope != ScopeGlobal:
		return fmt.Errorf("unknown scope %q (api_key, country, prefix or global)", l.Scope)
	case l.Max <= 0:
		return errors.New("max must be positive")
	case l.Window < time.Second:
		return errors.New("window must be at least 1s")
	case l.Scope == ScopePrefix && (l.PrefixLength < 1 || l.PrefixLength > 14):
		return errors.New("prefix length must be 1 to 14 digits")
	}
	return nil
}

// key is the counter key of a start to d by apiKeyID under l.
func (l Limit) key(d Destination, apiKeyID string) string {
	w := strconv.FormatInt(int64(l.Window/time.Second), 10)
	switch l.Scope {
	case ScopeAPIKey:
		return "api_key:" + w + ":" + apiKeyID
	case ScopeCountry:
		c := d.Country
		if c == "" {
			c = nonGeoRegion
		}
		return "country:" + w + ":" + c
	case ScopePrefix:
		n := d.Number
		if len(n) > l.PrefixLength+1 {
			n = n[:l.PrefixLength+1]
		}
		return "prefix:" + w + ":" + n
	default:
		return "global:" + w
	}
}

// Counter keeps sliding-window logs of events by key, shared by every node that should count together;
// store/memory's and store/redis's Counters implement it.
type Counter interface {
	// Count records one event under key unless max events were recorded under it within window; then
	// it reports false and how long until the oldest leaves the window.
	Count(ctx context.Context, key string, window time.Duration, max int) (bool, time.Duration, error)
}

// CountStart counts one start to d by the API key apiKeyID against every configured [Limit], in order,
// and returns a [*Refusal] with code too_many_starts, rule the limit's scope and RetryAfter, at the first
// limit reached. The starts counted by the limits before it stay counted: a refused flood uses up the
// narrower budgets first, which is what they are for. Any other error is the Counter's (the limits
// could not be read: refuse the start, never assume them free).
func (p *Policy) CountStart(ctx context.Context, c Counter, d Destination, apiKeyID string) error {
	for _, l := range p.limits {
		if l.Scope == ScopeAPIKey && apiKeyID == "" {
			continue // no key: the API has no authentication (loopback only)
		}
		ok, wait, err := c.Count(ctx, l.key(d, apiKeyID), l.Window, l.Max)
		if err != nil {
			return fmt.Errorf("policy: counting a start: %w", err)
		}
		if !ok {
			return &Refusal{Code: CodeTooManyStarts, Rule: string(l.Scope), RetryAfter: max(time.Second, wait),
				Reason: fmt.Sprintf("more than %d starts per %s %s", l.Max, l.Window, scopeWords[l.Scope])}
		}
	}
	return nil
}

var scopeWords = map[Scope]string{
	ScopeAPIKey:  "for this API key",
	ScopeCountry: "to this country",
	ScopePrefix:  "to this number range",
	ScopeGlobal:  "in all",
}

// CallerID checks that id may be presented as the caller ID: "" always (the trunk's own), otherwise
// only one of Config.CallerIDs. The error is a [*Refusal] with code caller_id_not_allowed.
func (p *Policy) CallerID(id string) error {
	if id == "" {
		return nil
	}
	if _, ok := p.callerIDs[id]; ok {
		return nil
	}
	return &Refusal{Code: CodeCallerIDNotAllowed, Rule: RuleCallerIDs,
		Reason: "the caller ID is not one of the numbers this server may present"}
}
