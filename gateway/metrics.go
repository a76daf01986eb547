package gateway

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the gateway's Prometheus series, on its own registry.
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec   // endpoint, tier, status, cache
	latency     *prometheus.HistogramVec // tier
	escalations *prometheus.CounterVec   // from, to
	capBlocked  *prometheus.CounterVec   // action
	tokens      *prometheus.CounterVec   // tier, kind
	cost        *prometheus.CounterVec   // tier
	inflight    prometheus.Gauge
	reloads     *prometheus.CounterVec // model
	confidence  prometheus.Histogram
}

func newMetrics(g *Gateway) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{reg: reg}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "distillery_gateway_requests_total",
		Help: "Requests answered, by endpoint, answering tier, HTTP status and cache result."}, []string{"endpoint", "tier", "status", "cache"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "distillery_gateway_request_seconds",
		Help:    "Request latency by answering tier.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"tier"})
	m.escalations = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "distillery_gateway_escalations_total",
		Help: "Cascade escalations, by tier escalated from and to."}, []string{"from", "to"})
	m.capBlocked = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "distillery_gateway_premium_cap_blocked_total",
		Help: "Premium requests the cap turned away, by action (downgrade, refuse)."}, []string{"action"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "distillery_gateway_tokens_total",
		Help: "Tokens by tier and kind (prompt, completion)."}, []string{"tier", "kind"})
	m.cost = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "distillery_gateway_cost_usd_total",
		Help: "Spend in US dollars by tier."}, []string{"tier"})
	m.inflight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "distillery_gateway_inflight_requests", Help: "Requests being answered."})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "distillery_gateway_student_reloads_total",
		Help: "Student hot reloads, by model."}, []string{"model"})
	m.confidence = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "distillery_gateway_student_confidence",
		Help: "Confidence of the student's answers.", Buckets: prometheus.LinearBuckets(0.1, 0.1, 10)})
	reg.MustRegister(m.requests, m.latency, m.escalations, m.capBlocked, m.tokens, m.cost, m.inflight, m.reloads, m.confidence,
		collectors.NewGoCollector())
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "distillery_gateway_premium_share",
		Help: "Premium share of the rolling window (requests or tokens, as configured)."}, func() float64 {
		p, t := g.cap.stats()
		if t == 0 {
			return 0
		}
		return p / t
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "distillery_gateway_cache_entries", Help: "Cached answers."},
		func() float64 {
			if g.cache == nil {
				return 0
			}
			n, _ := g.cache.stats()
			return float64(n)
		}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "distillery_gateway_cache_bytes", Help: "Bytes held by the cache."},
		func() float64 {
			if g.cache == nil {
				return 0
			}
			_, b := g.cache.stats()
			return float64(b)
		}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
