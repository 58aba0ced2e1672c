package loadtest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Mix is how a load test shares its calls between behaviours: a weight per behaviour, in the order of
// [Behaviours]. The zero Mix has no weight and cannot pick; use [DefaultMix] or [ParseMix].
type Mix struct {
	weights [5]int
}

// DefaultMix is answer=85,nokey=5,busy=4,noanswer=3,hangup=3.
func DefaultMix() Mix { return Mix{weights: [5]int{85, 5, 4, 3, 3}} }

// ParseMix reads "answer=85,nokey=5,busy=4,noanswer=3,hangup=3": comma-separated behaviour=weight
// pairs, weights whole and not negative, each behaviour at most once, at least one weight positive.
// Behaviours left out weigh 0. Weights are relative; they need not add up to 100.
func ParseMix(s string) (Mix, error) {
	var m Mix
	seen := map[Behaviour]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, ok := strings.Cut(part, "=")
		if !ok {
			return Mix{}, fmt.Errorf("loadtest: mix %q: want behaviour=weight, not %q", s, part)
		}
		b, err := ParseBehaviour(name)
		if err != nil || strings.TrimSpace(name) == "" {
			return Mix{}, fmt.Errorf("loadtest: mix %q: unknown behaviour %q (answer, nokey, busy, noanswer, hangup)", s, name)
		}
		if seen[b] {
			return Mix{}, fmt.Errorf("loadtest: mix %q: %s given twice", s, b)
		}
		seen[b] = true
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 0 {
			return Mix{}, fmt.Errorf("loadtest: mix %q: weight of %s must be a whole number ≥ 0, not %q", s, b, w)
		}
		m.weights[behaviourIndex(b)] = n
	}
	if m.total() == 0 {
		return Mix{}, fmt.Errorf("loadtest: mix %q: no behaviour has a positive weight", s)
	}
	return m, nil
}

// Weight returns b's weight.
func (m Mix) Weight(b Behaviour) int {
	if i := behaviourIndex(b); i >= 0 {
		return m.weights[i]
	}
	return 0
}

func (m Mix) total() int {
	t := 0
	for _, w := range m.weights {
		t += w
	}
	return t
}

// String returns the mix in the form ParseMix reads, behaviours of weight 0 left out.
func (m Mix) String() string {
	var parts []string
	for i, b := range Behaviours() {
		if m.weights[i] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", b, m.weights[i]))
		}
	}
	return strings.Join(parts, ",")
}

func behaviourIndex(b Behaviour) int {
	for i, k := range Behaviours() {
		if k == b {
			return i
		}
	}
	return -1
}

// mixer deals behaviours in the proportions of a mix, spread evenly (smooth weighted round-robin),
// so that any run of total() calls holds each behaviour exactly its weight times: 200 calls of the
// default mix are 170 answer, 10 nokey, 8 busy, 6 noanswer and 6 hangup. It is not safe for
// concurrent use.
type mixer struct {
	mix     Mix
	current [5]int
}

func (x *mixer) next() Behaviour {
	total, best := x.mix.total(), -1
	for i, w := range x.mix.weights {
		x.current[i] += w
		if w > 0 && (best < 0 || x.current[i] > x.current[best]) {
			best = i
		}
	}
	x.current[best] -= total
	return Behaviours()[best]
}

// Numbers: a load test calls +1 555 B RRR SSSSSS, where B is the behaviour's index in Behaviours, RRR
// the run and SSSSSS the call's serial. The phone learns its behaviour from the number alone, and
// numbers never repeat within a run nor, with a random run, across runs against one server (a second
// start for a number whose verification is pending would join that verification).
const (
	// NumberPrefix starts every number the load tester calls: +1 555 is a fictional NANP range that
	// libphonenumber does not consider valid, so a server under test allows it explicitly
	// (policy.allow_prefixes).
	NumberPrefix = "+1555"
	maxSerial    = 999_999
	maxRun       = 999
)

// Number returns the number to call for the serial-th call of run with behaviour b.
func Number(b Behaviour, run, serial int) string {
	return fmt.Sprintf("%s%d%03d%06d", NumberPrefix, max(behaviourIndex(b), 0), run%(maxRun+1), serial%(maxSerial+1))
}

// BehaviourOf returns the behaviour encoded in a number made by Number, and false for any other number.
func BehaviourOf(number string) (Behaviour, bool) {
	rest, ok := strings.CutPrefix(number, NumberPrefix)
	if !ok || len(rest) != 10 {
		return "", false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	i := int(rest[0] - '0')
	if i >= len(Behaviours()) {
		return "", false
	}
	return Behaviours()[i], true
}

// Delay is a uniform distribution of durations between Min and Max, as in "200ms-2s"; Min == Max is a
// fixed delay, and the zero Delay is no delay.
type Delay struct {
	Min, Max time.Duration
}

// ParseDelay reads "200ms-2s" (uniform between the two) or "1s" (fixed); "" and "0" are no delay.
func ParseDelay(s string) (Delay, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return Delay{}, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := time.ParseDuration(strings.TrimSpace(lo))
	if err != nil {
		return Delay{}, fmt.Errorf("loadtest: delay %q: want a duration such as 1s or a range such as 200ms-2s", s)
	}
	b := a
	if isRange {
		if b, err = time.ParseDuration(strings.TrimSpace(hi)); err != nil {
			return Delay{}, fmt.Errorf("loadtest: delay %q: want a duration such as 1s or a range such as 200ms-2s", s)
		}
	}
	if a < 0 || b < a {
		return Delay{}, errors.New("loadtest: delay " + strconv.Quote(s) + ": want 0 ≤ min ≤ max")
	}
	return Delay{Min: a, Max: b}, nil
}

// Draw returns a duration drawn uniformly from d with r.
func (d Delay) Draw(r *rand.Rand) time.Duration {
	if d.Max <= d.Min {
		return d.Min
	}
	return d.Min + time.Duration(r.Int64N(int64(d.Max-d.Min)+1))
}

// String returns d in the form ParseDelay reads.
func (d Delay) String() string {
	switch {
	case d.Max <= 0:
		return "0"
	case d.Min == d.Max:
		return d.Min.String()
	}
	return d.Min.String() + "-" + d.Max.String()
}
