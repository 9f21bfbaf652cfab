package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedgate/fedgate/relabel"
)

type writeMetrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	size       *prometheus.HistogramVec
	received   prometheus.Counter
	accepted   prometheus.Counter
	discarded  *prometheus.CounterVec
	overwrites prometheus.Counter
	known      prometheus.Counter
}

func newWriteMetrics(reg prometheus.Registerer, h *WriteHandler) *writeMetrics {
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
		known: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_write_known_series_total",
			Help: "Series of remote-write requests recognised as held series, sent in the same form before: not validated or looked up again.",
		}),
	}
	for _, r := range []string{reasonMissingName, reasonInvalidName, reasonInvalidLabel, reasonDuplicateLabel,
		reasonInvalidUTF8, reasonTooManyLabels, reasonNameTooLong, reasonValueTooLong, reasonTooFarInFuture,
		reasonNativeHistograms, reasonRateLimited, reasonSeriesLimit, relabel.ReasonAllowlist, relabel.ReasonRelabel} {
		m.discarded.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.size, m.received, m.accepted, m.discarded, m.overwrites, m.known)
		for _, limit := range []string{"rate", "series"} {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "fedgate_limited_tenants",
				Help:        "Tenants refused by a limit in the last minute; which ones is on the status page.",
				ConstLabels: prometheus.Labels{"limit": limit},
			}, func() float64 {
				return float64(h.tenants.limitedWithin(h.opts.Now().Add(-time.Minute), limit == "series"))
			}))
		}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fedgate_write_requests_in_progress",
			Help: "Write requests holding a processing slot; at --web.max-concurrent-writes more wait, then get 503.",
		}, func() float64 { return float64(len(h.slots)) }))
	}
	return m
}
