package api

import "github.com/prometheus/client_golang/prometheus"

// metrics are the server's Prometheus series. They carry outcomes and
// timings, never a number or a code.
type metrics struct {
	reg           *prometheus.Registry
	calls         *prometheus.CounterVec // ivr_calls_total{outcome}
	active        prometheus.Gauge       // ivr_active_calls
	setup         prometheus.Histogram   // ivr_call_setup_seconds: INVITE → 200 OK
	queueWait     prometheus.Histogram   // ivr_call_queue_seconds: accepted → dialling
	verifications *prometheus.CounterVec // ivr_verifications_started_total{kind}
	checks        *prometheus.CounterVec // ivr_checks_total{result}
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		reg: reg,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ivr_calls_total", Help: "Calls by final outcome.",
		}, []string{"outcome"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ivr_active_calls", Help: "Calls being dialled or in progress.",
		}),
		setup: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ivr_call_setup_seconds",
			Help:    "Time from the INVITE to the 200 OK of answered calls.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 60},
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ivr_call_queue_seconds",
			Help:    "Time from the API request to the start of dialling.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60},
		}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ivr_verifications_started_total", Help: "Accepted starts: new verifications, or extra calls joined to a pending one.",
		}, []string{"kind"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ivr_checks_total", Help: "Code checks by result (approved, wrong, locked, refused).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.calls, m.active, m.setup, m.queueWait, m.verifications, m.checks)
	return m
}
