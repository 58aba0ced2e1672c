package calls

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Prometheus series of verifications and calls. They carry outcomes and timings, never a
// number or a code.
type metrics struct {
	calls         *prometheus.CounterVec // ivr_calls_total{outcome}
	active        prometheus.Gauge       // ivr_active_calls
	setup         prometheus.Histogram   // ivr_call_setup_seconds: INVITE → 200 OK
	queueWait     prometheus.Histogram   // ivr_call_queue_seconds: accepted → dialling
	verifications *prometheus.CounterVec // ivr_verifications_started_total{kind}
	checks        *prometheus.CounterVec // ivr_checks_total{result}
	stopped       *prometheus.CounterVec // ivr_calls_stopped_total{cause}
	expired       prometheus.Counter     // ivr_verifications_expired_total
	refused       *prometheus.CounterVec // ivr_starts_refused_total{code}
	pauses        prometheus.Counter     // ivr_guard_pauses_total
	resumes       prometheus.Counter     // ivr_guard_resumes_total
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
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
		stopped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ivr_calls_stopped_total", Help: "Calls stopped because their verification ended, by cause (canceled, expired, approved, locked, failed).",
		}, []string{"cause"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ivr_verifications_expired_total", Help: "Verifications that expired while pending (as announced by this node).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ivr_starts_refused_total", Help: "Starts refused by the policy, by error code (invalid_number, country_not_allowed, number_type_not_allowed, prefix_denied, caller_id_not_allowed, too_many_starts).",
		}, []string{"code"}),
		pauses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ivr_guard_pauses_total", Help: "Number ranges or countries the conversion guard paused (counted by the node that paused them).",
		}),
		resumes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ivr_guard_resumes_total", Help: "Pauses of the conversion guard lifted early by an operator.",
		}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.active, m.setup, m.queueWait, m.verifications, m.checks, m.stopped, m.expired, m.refused, m.pauses, m.resumes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("calls: metrics: %w", err)
		}
	}
	return m, nil
}
