package mta

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are kiln's Prometheus series. No label ever carries an address or a
// message id: cardinality stays bounded whatever the traffic.
type metrics struct {
	reg *prometheus.Registry

	received          prometheus.Counter
	outcomes          *prometheus.CounterVec // by result and reason
	authFailures      prometheus.Counter
	refusedSmuggling  prometheus.Counter
	connections       *prometheus.GaugeVec // outbound connections open
	deliveryLatency   prometheus.Histogram // received to delivered
	attemptLatency    prometheus.Histogram
	panics            prometheus.Counter
	queueSize         *prometheus.GaugeVec
	pendingRecipients prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.received = prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_messages_received_total", Help: "Messages accepted and queued."})
	m.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_recipient_outcomes_total",
		Help: "Delivery outcomes per recipient, by result (delivered, deferred, bounced, expired, dropped) and reason."}, []string{"result", "reason"})
	m.authFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_auth_failures_total", Help: "Failed AUTH attempts."})
	m.refusedSmuggling = prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_refused_bare_cr_total", Help: "Messages refused for a bare CR or NUL."})
	m.connections = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kiln_outbound_connections", Help: "Outbound SMTP connections open."}, []string{"egress"})
	m.deliveryLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kiln_delivery_latency_seconds",
		Help: "Time from acceptance to delivery, per delivered recipient.", Buckets: prometheus.ExponentialBuckets(0.005, 4, 12)})
	m.attemptLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kiln_attempt_seconds",
		Help: "Duration of one delivery transaction.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)})
	m.panics = prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_panics_total", Help: "Panics recovered in kiln's goroutines."})
	m.queueSize = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kiln_queue_messages", Help: "Messages in the queue by state."}, []string{"state"})
	m.pendingRecipients = prometheus.NewGauge(prometheus.GaugeOpts{Name: "kiln_pending_recipients", Help: "Recipients still to deliver."})
	m.reg.MustRegister(m.pendingRecipients, m.received, m.outcomes, m.authFailures, m.refusedSmuggling, m.connections,
		m.deliveryLatency, m.attemptLatency, m.panics, m.queueSize,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
