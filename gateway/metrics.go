package gateway

import "github.com/prometheus/client_golang/prometheus"

type writeMetrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	size       *prometheus.HistogramVec
	received   prometheus.Counter
	accepted   prometheus.Counter
	discarded  *prometheus.CounterVec
	overwrites prometheus.Counter
}

func newWriteMetrics(reg prometheus.Registerer) *writeMetrics {
	m := &writeMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedgate_write_requests_total",
			Help: "Remote-write requests by HTTP status code.",
		}, []string{"code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fedgate_write_request_duration_seconds",
			Help:    "Time from a remote-write request's arrival to its answer, by HTTP status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"code"}),
		size: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fedgate_write_request_size_bytes",
			Help:    "Size of remote-write request bodies, as sent (compressed) and decoded.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 10),
		}, []string{"encoding"}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_received_samples_total",
			Help: "Samples received in decoded remote-write requests of authenticated tenants.",
		}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_accepted_samples_total",
			Help: "Samples stored and acknowledged.",
		}),
		discarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedgate_discarded_samples_total",
			Help: "Samples received but not stored, by reason.",
		}, []string{"reason"}),
		overwrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_cluster_label_overwrites_total",
			Help: "Series whose client-sent cluster label differed from the authenticated tenant and was overwritten.",
		}),
	}
	for _, r := range []string{reasonMissingName, reasonInvalidName, reasonInvalidLabel, reasonDuplicateLabel,
		reasonInvalidUTF8, reasonTooManyLabels, reasonNameTooLong, reasonValueTooLong, reasonTooFarInFuture,
		reasonNativeHistograms} {
		m.discarded.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.size, m.received, m.accepted, m.discarded, m.overwrites)
	}
	return m
}
