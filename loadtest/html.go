package loadtest

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"io"
	"math"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/opts"
	"github.com/go-echarts/go-echarts/v2/render"
)

// DefaultAssetsHost serves echarts.min.js, which the HTML report loads when it is opened: the page
// itself holds only the data and the chart options.
const DefaultAssetsHost = "https://go-echarts.github.io/go-echarts-assets/assets/"

// WriteHTML writes the report as one HTML page: the summary table and charts (go-echarts) of calls per
// second and active calls over time, the setup latency histograms (API → INVITE, INVITE → answer),
// request → code heard, the HTTP start latency, RTP pacing and jitter, recognition, outcomes by
// behaviour, and the sampled processes' CPU and memory over time. assetsHost is where
// echarts.min.js is loaded from; "" means DefaultAssetsHost.
func (r *Report) WriteHTML(w io.Writer, assetsHost string) error {
	if assetsHost == "" {
		assetsHost = DefaultAssetsHost
	}
	var summary bytes.Buffer
	if err := r.WriteSummary(&summary); err != nil {
		return err
	}
	var snippets []htmltemplate.HTML
	for _, c := range r.charts() {
		s := c.RenderSnippet()
		snippets = append(snippets, htmltemplate.HTML(s.Element+s.Script))
	}
	return pageTemplate.Execute(w, map[string]any{
		"Title":    fmt.Sprintf("ivr loadtest: %d calls, %.2f %% as expected", r.Summary.Calls, r.Summary.ExpectedPct),
		"Summary":  summary.String(),
		"Settings": r.Settings,
		"Started":  r.StartedAt.Format("2006-01-02 15:04:05 MST"),
		"Script":   htmltemplate.URL(assetsHost + "echarts.min.js"), // the caller chooses the host, file:// included
		"Charts":   snippets,
	})
}

var pageTemplate = htmltemplate.Must(htmltemplate.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<script src="{{.Script}}"></script>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}pre{background:#f6f6f6;padding:1em;overflow-x:auto}
.item{margin:1.5em 0}</style></head>
<body><h1>{{.Title}}</h1>
<p>Started {{.Started}}. Mix {{.Settings.Mix}}, {{.Settings.CPS}} calls/s, concurrency {{.Settings.Concurrency}},
answer delay {{.Settings.AnswerDelay}}, phone audio {{.Settings.PhoneAudio}}, phone media {{.Settings.PhoneMedia}}{{if .Settings.Target}}, server: {{.Settings.Target}}{{end}}.</p>
<pre>{{.Summary}}</pre>
{{range .Charts}}<div class="item">{{.}}</div>
{{end}}</body></html>
`))

func chartInit(title, subtitle string) []charts.GlobalOpts {
	return []charts.GlobalOpts{
		charts.WithInitializationOpts(opts.Initialization{Width: "960px", Height: "360px"}),
		charts.WithTitleOpts(opts.Title{Title: title, Subtitle: subtitle}),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "bottom"}),
	}
}

func (r *Report) charts() []render.Renderer {
	var out []render.Renderer
	sm := &r.Summary

	// Calls per second and active calls over time.
	var ts []string
	var cps, active, inflight []opts.LineData
	for _, s := range r.Timeline {
		ts = append(ts, fmt.Sprintf("%.0f", s.T))
		cps = append(cps, opts.LineData{Value: math.Round(s.CPS*10) / 10, YAxisIndex: 1})
		active = append(active, opts.LineData{Value: s.Active})
		inflight = append(inflight, opts.LineData{Value: s.InFlight})
	}
	load := charts.NewLine()
	load.SetGlobalOptions(append(chartInit("Calls over time", "seconds since the start"),
		charts.WithYAxisOpts(opts.YAxis{Name: "calls"}))...)
	load.ExtendYAxis(opts.YAxis{Name: "calls/s"})
	load.SetXAxis(ts).
		AddSeries("active (phones)", active).
		AddSeries("in flight (driver)", inflight).
		AddSeries("started per second", cps, charts.WithLineChartOpts(opts.LineChart{YAxisIndex: 1}))
	out = append(out, load)

	// Latency histograms.
	var q2d, d2a, r2c, start []float64
	for _, c := range r.Calls {
		if c.QueuedToDialedMS != nil {
			q2d = append(q2d, *c.QueuedToDialedMS)
		}
		if c.DialedToAnsweredMS != nil {
			d2a = append(d2a, *c.DialedToAnsweredMS)
		}
		if c.RequestToCodeMS != nil {
			r2c = append(r2c, *c.RequestToCodeMS)
		}
		if c.VerificationID != "" {
			start = append(start, c.StartMS)
		}
	}
	hist := func(title string, st Stats, v []float64) {
		if len(v) == 0 {
			return
		}
		labels, counts := histogram(v, 40)
		b := charts.NewBar()
		b.SetGlobalOptions(chartInit(title, fmt.Sprintf("ms; p50 %s, p99 %s, max %s, n=%d", fmtMS(st.P50), fmtMS(st.P99), fmtMS(st.Max), st.N))...)
		b.SetXAxis(labels).AddSeries("calls", counts)
		out = append(out, b)
	}
	hist("Setup: API → INVITE (queued_at → dialed_at)", sm.QueuedToDialedMS, q2d)
	hist("Setup: INVITE → answer (dialed_at → answered_at, answer delay included)", sm.DialedToAnsweredMS, d2a)
	hist("Request → code heard by the phone", sm.RequestToCodeMS, r2c)
	hist("HTTP start latency (POST /v1/verifications)", sm.StartMS, start)

	// RTP pacing: per-packet arrival deviation from 20 ms.
	if len(r.PacingHist) > 0 {
		var labels []string
		var counts []opts.BarData
		for i, n := range r.PacingHist {
			labels = append(labels, fmt.Sprintf("%.1f", float64(i)*0.1))
			counts = append(counts, opts.BarData{Value: n})
		}
		b := charts.NewBar()
		b.SetGlobalOptions(chartInit("RTP pacing: |arrival gap − 20 ms| per packet, at the phones",
			fmt.Sprintf("ms (100 µs buckets); p50 %s, p99 %s, max %s; loss %d of %d packets (%.3f %%)",
				fmtMS(sm.PacingMS.P50), fmtMS(sm.PacingMS.P99), fmtMS(sm.PacingMS.Max), sm.PacketsLost,
				sm.PacketsLost+sm.PacketsReceived, sm.LossPct))...)
		b.SetXAxis(labels).AddSeries("packets", counts)
		out = append(out, b)
	}
	var jit []float64
	for _, c := range r.Calls {
		if c.RTP != nil {
			jit = append(jit, c.RTP.JitterMS)
		}
	}
	hist("RTP interarrival jitter per call (RFC 3550)", sm.JitterMS, jit)

	// Recognition and outcomes.
	pct := func(a, b int) float64 {
		if b == 0 {
			return 0
		}
		return math.Round(1000*float64(a)/float64(b)) / 10
	}
	rec := charts.NewBar()
	rec.SetGlobalOptions(append(chartInit("Recognition accuracy", "% of calls"),
		charts.WithYAxisOpts(opts.YAxis{Max: 100}))...)
	rec.SetXAxis([]string{
		fmt.Sprintf("challenge digit (%d/%d)", sm.ChallengeOK, sm.ChallengeCalls),
		fmt.Sprintf("code approved (%d/%d)", sm.CodesOK, sm.CodeCalls),
	}).AddSeries("recognised", []opts.BarData{{Value: pct(sm.ChallengeOK, sm.ChallengeCalls)}, {Value: pct(sm.CodesOK, sm.CodeCalls)}})
	out = append(out, rec)

	outcomes := map[string]bool{}
	var bs []string
	for _, b := range Behaviours() {
		if len(sm.Outcomes[b]) > 0 {
			bs = append(bs, string(b))
			for o := range sm.Outcomes[b] {
				outcomes[o] = true
			}
		}
	}
	ob := charts.NewBar()
	ob.SetGlobalOptions(chartInit("Outcomes by behaviour", "calls")...)
	ob.SetXAxis(bs)
	for _, o := range sortedKeys(outcomes) {
		var data []opts.BarData
		for _, b := range bs {
			data = append(data, opts.BarData{Value: sm.Outcomes[Behaviour(b)][o]})
		}
		ob.AddSeries(o, data, charts.WithBarChartOpts(opts.BarChart{Stack: "outcome"}))
	}
	out = append(out, ob)

	// Processes.
	if len(r.Processes) > 0 {
		cpu, rss := charts.NewLine(), charts.NewLine()
		cpu.SetGlobalOptions(chartInit("CPU over time", "% of one core (200 % = both cores of a 2-core machine)")...)
		rss.SetGlobalOptions(chartInit("Resident memory over time", "MB")...)
		cpu.SetXAxis(ts)
		rss.SetXAxis(ts)
		for i, p := range r.Processes {
			var c, m []opts.LineData
			for _, s := range r.Timeline {
				if i < len(s.Procs) {
					c = append(c, opts.LineData{Value: math.Round(s.Procs[i].CPUPct)})
					m = append(m, opts.LineData{Value: math.Round(s.Procs[i].RSSMB*10) / 10})
				}
			}
			cpu.AddSeries(p.Name, c)
			rss.AddSeries(p.Name, m)
		}
		out = append(out, cpu, rss)
	}
	return out
}

// histogram bins v into n equal buckets from 0 to the maximum, labelled by their lower edge in ms.
func histogram(v []float64, n int) ([]string, []opts.BarData) {
	hi := 0.0
	for _, x := range v {
		hi = max(hi, x)
	}
	if hi <= 0 {
		hi = 1
	}
	width := hi / float64(n)
	counts := make([]int, n)
	for _, x := range v {
		i := int(x / width)
		counts[min(max(i, 0), n-1)]++
	}
	labels := make([]string, n)
	data := make([]opts.BarData, n)
	for i := range n {
		labels[i] = fmtMS(float64(i) * width)
		data[i] = opts.BarData{Value: counts[i]}
	}
	return labels, data
}
