package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a load test did: its settings, every call's verdict, the summary, and the timeline.
// It marshals to the JSON report; WriteSummary prints the table and WriteHTML the page with charts.
// It never holds a code.
type Report struct {
	Settings  Settings      `json:"settings"`
	StartedAt time.Time     `json:"started_at"`
	ElapsedS  float64       `json:"elapsed_s"`
	Summary   Summary       `json:"summary"`
	Processes []ProcSummary `json:"processes,omitempty"`
	Timeline  []Sample      `json:"timeline"`
	// PacingHist is the distribution of packet arrival deviations from 20 ms, in 100 µs buckets (see
	// [Pacing]), over every packet of every call.
	PacingHist []uint32     `json:"pacing_hist_100us"`
	Calls      []CallResult `json:"calls"`
}

// Settings is how the load test was run.
type Settings struct {
	Mix         string  `json:"mix"`
	CPS         float64 `json:"cps"`
	Concurrency int     `json:"concurrency"`
	Calls       int     `json:"calls,omitempty"`
	DurationS   float64 `json:"duration_s,omitempty"`
	AnswerDelay string  `json:"answer_delay"`
	PressDelay  string  `json:"press_delay"`
	PhoneAudio  string  `json:"phone_audio"`
	PhoneMedia  string  `json:"phone_media"` // socket (one per call) or dense (a media.Mux)
	Run         int     `json:"run"`
	// Target describes the server under test (set by the caller, e.g. "spawned in-process").
	Target string `json:"target,omitempty"`
}

// CallResult is the verdict on one call. Times are in milliseconds; a missing one is omitted.
type CallResult struct {
	Serial         int       `json:"serial"`
	Number         string    `json:"number"`
	Behaviour      Behaviour `json:"behaviour"`
	VerificationID string    `json:"verification_id,omitempty"`
	// StartedAt is when the start request left, in seconds since the run began.
	StartedAt     float64 `json:"started_at_s"`
	AnswerDelayMS float64 `json:"answer_delay_ms"`
	Expected      string  `json:"expected"`
	Outcome       string  `json:"outcome"`
	SIPStatus     int     `json:"sip_status,omitempty"`
	HangupCause   string  `json:"hangup_cause,omitempty"`
	ChallengeOK   bool    `json:"challenge_digit_ok"`
	CodePlays     int     `json:"code_plays"`
	// CheckStatus is the API's answer to the check of the code heard ("approved"), for answer calls.
	CheckStatus string `json:"check_status,omitempty"`
	OK          bool   `json:"ok"`
	Error       string `json:"error,omitempty"`

	// StartMS is the latency of POST /v1/verifications.
	StartMS float64 `json:"start_ms"`
	// QueuedToDialedMS is the call record's queued_at → dialed_at (API → INVITE).
	QueuedToDialedMS *float64 `json:"queued_to_dialed_ms,omitempty"`
	// DialedToAnsweredMS is dialed_at → answered_at (INVITE → answer, the phone's answer delay included).
	DialedToAnsweredMS *float64 `json:"dialed_to_answered_ms,omitempty"`
	// InviteTransitMS is dialed_at → the INVITE's arrival at the phone.
	InviteTransitMS *float64 `json:"invite_transit_ms,omitempty"`
	// RequestToCodeMS is the start request → the phone's first complete hearing of the code.
	RequestToCodeMS *float64 `json:"request_to_code_ms,omitempty"`

	Phone          bool       `json:"phone_report"`
	Pressed        bool       `json:"pressed"`
	CodeHeard      bool       `json:"code_heard"`
	CodePlaysHeard int        `json:"code_plays_heard"`
	RTP            *RTPResult `json:"rtp,omitempty"`
}

// RTPResult is the server's audio stream as one phone received it, and what the phone sent.
type RTPResult struct {
	Packets     uint64  `json:"packets"`
	Lost        uint64  `json:"lost"`
	JitterMS    float64 `json:"jitter_ms"` // RFC 3550 interarrival jitter at the end of the call
	PacingP99MS float64 `json:"pacing_p99_ms"`
	PacingMaxMS float64 `json:"pacing_max_ms"`
	Sent        uint64  `json:"sent"`
}

// Stats summarises a sample of values (milliseconds unless named otherwise).
type Stats struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

func statsOf(v []float64) Stats {
	if len(v) == 0 {
		return Stats{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	q := func(p float64) float64 { return s[min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1)] }
	return Stats{N: len(s), Mean: sum / float64(len(s)), P50: q(0.5), P90: q(0.9), P99: q(0.99), Max: s[len(s)-1]}
}

// Summary is the load test in figures.
type Summary struct {
	Calls  int `json:"calls"`
	OK     int `json:"ok"`
	Errors int `json:"errors"`
	// ExpectedPct is the share of calls whose outcome, code and check were all as their behaviour
	// should produce.
	ExpectedPct float64 `json:"expected_pct"`
	// AchievedCPS is the calls started over the time spent starting them.
	AchievedCPS float64 `json:"achieved_cps"`
	PeakActive  int     `json:"peak_active"`
	// Outcomes counts outcomes by behaviour.
	Outcomes map[Behaviour]map[string]int `json:"outcomes"`

	// ChallengeOK/ChallengeCalls: answered answer and hangup calls whose challenge digit the phone
	// recognised and pressed (the server's challenge_digit_ok).
	ChallengeOK    int `json:"challenge_ok"`
	ChallengeCalls int `json:"challenge_calls"`
	// CodesOK/CodeCalls: delivered answer calls whose code the phone recognised and the API approved.
	CodesOK   int `json:"codes_ok"`
	CodeCalls int `json:"code_calls"`

	StartMS            Stats `json:"start_ms"`
	QueuedToDialedMS   Stats `json:"queued_to_dialed_ms"`
	DialedToAnsweredMS Stats `json:"dialed_to_answered_ms"`
	InviteTransitMS    Stats `json:"invite_transit_ms"`
	RequestToCodeMS    Stats `json:"request_to_code_ms"`
	// JitterMS is the RFC 3550 jitter of each answered call's received stream.
	JitterMS Stats `json:"jitter_ms"`
	// PacingMS is the deviation of each packet's arrival from 20 ms after the previous one, over all
	// packets (P90 is not computed).
	PacingMS        Stats   `json:"pacing_ms"`
	PacketsReceived uint64  `json:"packets_received"`
	PacketsLost     uint64  `json:"packets_lost"`
	LossPct         float64 `json:"loss_pct"`
	// ErrorSamples are the first distinct error messages, with their counts.
	ErrorSamples []ErrorCount `json:"error_samples,omitempty"`
}

// ErrorCount is one error message and how many calls had it.
type ErrorCount struct {
	Error string `json:"error"`
	Count int    `json:"count"`
}

// Sample is one point of the timeline.
type Sample struct {
	T        float64      `json:"t_s"` // seconds since the run began
	Started  int          `json:"started"`
	Done     int          `json:"done"`
	Active   int          `json:"active"` // calls the phones have up
	InFlight int          `json:"in_flight"`
	CPS      float64      `json:"cps"` // starts per second since the previous sample
	Procs    []ProcSample `json:"procs,omitempty"`
}

// ProcSample is one process's CPU use since the previous sample and its memory.
type ProcSample struct {
	CPUPct float64 `json:"cpu_pct"` // 100 = one core busy
	RSSMB  float64 `json:"rss_mb"`
}

// ProcSummary is one sampled process over the run.
type ProcSummary struct {
	Name       string  `json:"name"`
	CPUSeconds float64 `json:"cpu_s"`
	// CPUMSPerCall is the CPU time over the calls started.
	CPUMSPerCall float64 `json:"cpu_ms_per_call"`
	// CoresPer1000Active is the CPU used per 1,000 calls up at once, measured over the samples where
	// the active calls were at least 80 % of the peak (the plateau); 0 without such samples.
	CoresPer1000Active float64 `json:"cores_per_1000_active"`
	BaseRSSMB          float64 `json:"base_rss_mb"`
	PeakRSSMB          float64 `json:"peak_rss_mb"`
	// RSSKBPerCall is (peak − base RSS) over the peak of active calls.
	RSSKBPerCall float64 `json:"rss_kb_per_call"`
	Err          string  `json:"error,omitempty"`
}

func newReport(cfg DriverConfig, start time.Time) *Report {
	audio := "silence"
	switch {
	case cfg.NoAudio:
		audio = "none"
	case cfg.Audio != nil:
		audio = cfg.Audio.Name()
	}
	phoneMedia := "socket"
	if cfg.Mux != nil {
		phoneMedia = "dense"
	}
	return &Report{
		Settings: Settings{
			Mix: cfg.Mix.String(), CPS: cfg.CPS, Concurrency: cfg.Concurrency, Calls: cfg.Calls,
			DurationS: cfg.Duration.Seconds(), AnswerDelay: cfg.AnswerDelay.String(),
			PressDelay: cfg.PressDelay.String(), PhoneAudio: audio, PhoneMedia: phoneMedia, Run: cfg.Run,
		},
		StartedAt: start,
	}
}

// sampler builds the timeline; it is used by one goroutine at a time (Run's sampler, then Run).
type sampler struct {
	start    time.Time
	procs    []Proc
	samples  []Sample
	usage    [][]ProcUsage // per sample, per proc
	errs     []error       // per proc, the first read error
	last     time.Time
	lastSt   int
	lastCPU  []time.Duration
	haveLast []bool
}

func newSampler(procs []Proc, start time.Time) *sampler {
	return &sampler{start: start, procs: procs, errs: make([]error, len(procs)),
		lastCPU: make([]time.Duration, len(procs)), haveLast: make([]bool, len(procs))}
}

func (s *sampler) sample(now time.Time, started, done, active, inFlight int) Sample {
	x := Sample{T: now.Sub(s.start).Seconds(), Started: started, Done: done, Active: active, InFlight: inFlight}
	dt := now.Sub(s.last).Seconds()
	if len(s.samples) > 0 && dt > 0 {
		x.CPS = float64(started-s.lastSt) / dt
	}
	us := make([]ProcUsage, len(s.procs))
	for i, p := range s.procs {
		u, err := p.Read()
		if err != nil {
			if s.errs[i] == nil {
				s.errs[i] = err
			}
			x.Procs = append(x.Procs, ProcSample{})
			continue
		}
		us[i] = u
		ps := ProcSample{RSSMB: float64(u.RSS) / (1 << 20)}
		if s.haveLast[i] && dt > 0 {
			ps.CPUPct = 100 * (u.CPU - s.lastCPU[i]).Seconds() / dt
		}
		s.lastCPU[i], s.haveLast[i] = u.CPU, true
		x.Procs = append(x.Procs, ps)
	}
	s.last, s.lastSt = now, started
	s.samples = append(s.samples, x)
	s.usage = append(s.usage, us)
	return x
}

// finish computes the summary once every call has a verdict.
func (r *Report) finish(end time.Time, s *sampler, pacing *Pacing) {
	r.ElapsedS = end.Sub(r.StartedAt).Seconds()
	r.Timeline = s.samples
	sort.Slice(r.Calls, func(i, j int) bool { return r.Calls[i].Serial < r.Calls[j].Serial })
	sm := &r.Summary
	sm.Calls = len(r.Calls)
	sm.Outcomes = map[Behaviour]map[string]int{}
	var start, q2d, d2a, transit, r2c, jitter []float64
	errs := map[string]int{}
	var errOrder []string
	lastStart := 0.0
	for _, c := range r.Calls {
		lastStart = max(lastStart, c.StartedAt)
		if sm.Outcomes[c.Behaviour] == nil {
			sm.Outcomes[c.Behaviour] = map[string]int{}
		}
		out := c.Outcome
		if out == "" {
			out = "unknown"
		}
		sm.Outcomes[c.Behaviour][out]++
		if c.OK {
			sm.OK++
		} else {
			sm.Errors++
			if errs[c.Error] == 0 {
				errOrder = append(errOrder, c.Error)
			}
			errs[c.Error]++
		}
		if c.VerificationID != "" {
			start = append(start, c.StartMS)
		}
		for _, p := range []struct {
			v   *float64
			dst *[]float64
		}{{c.QueuedToDialedMS, &q2d}, {c.DialedToAnsweredMS, &d2a}, {c.InviteTransitMS, &transit}, {c.RequestToCodeMS, &r2c}} {
			if p.v != nil {
				*p.dst = append(*p.dst, *p.v)
			}
		}
		if c.RTP != nil {
			jitter = append(jitter, c.RTP.JitterMS)
			sm.PacketsReceived += c.RTP.Packets
			sm.PacketsLost += c.RTP.Lost
		}
		answered := c.RTP != nil
		if answered && (c.Behaviour == Answer || c.Behaviour == Hangup) {
			sm.ChallengeCalls++
			if c.ChallengeOK {
				sm.ChallengeOK++
			}
		}
		if c.Behaviour == Answer && c.Outcome == "delivered" {
			sm.CodeCalls++
			if c.CodeHeard && c.CheckStatus == "approved" {
				sm.CodesOK++
			}
		}
	}
	if sm.Calls > 0 {
		sm.ExpectedPct = 100 * float64(sm.OK) / float64(sm.Calls)
	}
	if lastStart > 0 {
		sm.AchievedCPS = float64(sm.Calls-1) / lastStart
	}
	for _, x := range s.samples {
		sm.PeakActive = max(sm.PeakActive, x.Active)
	}
	sm.StartMS, sm.QueuedToDialedMS, sm.DialedToAnsweredMS = statsOf(start), statsOf(q2d), statsOf(d2a)
	sm.InviteTransitMS, sm.RequestToCodeMS, sm.JitterMS = statsOf(transit), statsOf(r2c), statsOf(jitter)
	sm.PacingMS = Stats{N: int(pacing.Packets), P50: ms(pacing.Quantile(0.5)), P99: ms(pacing.Quantile(0.99)), Max: ms(pacing.Max)}
	r.PacingHist = trimHist(pacing.Hist[:])
	if n := sm.PacketsReceived + sm.PacketsLost; n > 0 {
		sm.LossPct = 100 * float64(sm.PacketsLost) / float64(n)
	}
	for i, e := range errOrder {
		if i == 10 {
			break
		}
		sm.ErrorSamples = append(sm.ErrorSamples, ErrorCount{Error: e, Count: errs[e]})
	}
	r.Processes = summariseProcs(s, sm.Calls, sm.PeakActive)
}

func trimHist(h []uint32) []uint32 {
	n := len(h)
	for n > 0 && h[n-1] == 0 {
		n--
	}
	return slices.Clone(h[:n])
}

func summariseProcs(s *sampler, calls, peakActive int) []ProcSummary {
	var out []ProcSummary
	for i, p := range s.procs {
		ps := ProcSummary{Name: p.Name}
		if s.errs[i] != nil {
			ps.Err = s.errs[i].Error()
		}
		var first, last *ProcUsage
		var plateauCPU, plateauCallSec float64
		for k := range s.samples {
			u := &s.usage[k][i]
			if u.RSS == 0 && u.CPU == 0 {
				continue
			}
			if first == nil {
				first = u
				ps.BaseRSSMB = float64(u.RSS) / (1 << 20)
			}
			ps.PeakRSSMB = max(ps.PeakRSSMB, float64(u.RSS)/(1<<20))
			if last != nil && s.samples[k].Active > 0 && float64(s.samples[k].Active) >= 0.8*float64(peakActive) &&
				float64(s.samples[k-1].Active) >= 0.8*float64(peakActive) {
				dt := s.samples[k].T - s.samples[k-1].T
				plateauCPU += (u.CPU - last.CPU).Seconds()
				plateauCallSec += dt * float64(s.samples[k].Active+s.samples[k-1].Active) / 2
			}
			last = u
		}
		if first != nil && last != nil {
			ps.CPUSeconds = (last.CPU - first.CPU).Seconds()
			if calls > 0 {
				ps.CPUMSPerCall = 1000 * ps.CPUSeconds / float64(calls)
			}
			if peakActive > 0 {
				ps.RSSKBPerCall = 1024 * (ps.PeakRSSMB - ps.BaseRSSMB) / float64(peakActive)
			}
		}
		if plateauCallSec > 0 {
			ps.CoresPer1000Active = 1000 * plateauCPU / plateauCallSec
		}
		out = append(out, ps)
	}
	return out
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteSummary prints the summary table.
func (r *Report) WriteSummary(w io.Writer) error {
	sm := &r.Summary
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{name}, a...)...) }
	lat := func(name string, s Stats) {
		if s.N == 0 {
			row(name, "-")
			return
		}
		row(name, "p50 %s  p90 %s  p99 %s  max %s  (n=%d)", fmtMS(s.P50), fmtMS(s.P90), fmtMS(s.P99), fmtMS(s.Max), s.N)
	}
	row("calls", "%d in %.1f s: %d as expected (%.2f %%), %d errors", sm.Calls, r.ElapsedS, sm.OK, sm.ExpectedPct, sm.Errors)
	row("rate", "%.1f calls/s started (target %g), peak %d calls up at once", sm.AchievedCPS, r.Settings.CPS, sm.PeakActive)
	for _, b := range Behaviours() {
		o := sm.Outcomes[b]
		if len(o) == 0 {
			continue
		}
		var parts []string
		for _, k := range sortedKeys(o) {
			parts = append(parts, fmt.Sprintf("%s %d", k, o[k]))
		}
		row("  "+string(b), "%s (want %s)", strings.Join(parts, ", "), Expected(b))
	}
	row("recognition", "challenge digits %d/%d, codes %d/%d approved", sm.ChallengeOK, sm.ChallengeCalls, sm.CodesOK, sm.CodeCalls)
	lat("HTTP start", sm.StartMS)
	lat("API → INVITE", sm.QueuedToDialedMS)
	lat("INVITE → phone", sm.InviteTransitMS)
	lat("INVITE → answer", sm.DialedToAnsweredMS)
	lat("request → code heard", sm.RequestToCodeMS)
	lat("RTP jitter (per call)", sm.JitterMS)
	if sm.PacingMS.N > 0 {
		row("RTP pacing (per packet)", "p50 %s  p99 %s  max %s  (n=%d)", fmtMS(sm.PacingMS.P50), fmtMS(sm.PacingMS.P99), fmtMS(sm.PacingMS.Max), sm.PacingMS.N)
	}
	row("RTP loss", "%d of %d packets (%.3f %%)", sm.PacketsLost, sm.PacketsLost+sm.PacketsReceived, sm.LossPct)
	for _, p := range r.Processes {
		if p.Err != "" {
			row(p.Name, "not sampled: %s", p.Err)
			continue
		}
		row(p.Name+" CPU", "%.1f s, %.1f ms per call, %.3f cores per 1,000 active calls", p.CPUSeconds, p.CPUMSPerCall, p.CoresPer1000Active)
		row(p.Name+" RSS", "%.0f MB → peak %.0f MB, %.0f KB per active call", p.BaseRSSMB, p.PeakRSSMB, p.RSSKBPerCall)
	}
	for _, e := range sm.ErrorSamples {
		row("error", "%d× %s", e.Count, e.Error)
	}
	return tw.Flush()
}

func fmtMS(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1fs", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	}
	return fmt.Sprintf("%.2fms", v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
