package wal

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	fsyncDuration      prometheus.Histogram
	bytesWritten       prometheus.Counter
	recordsWritten     prometheus.Counter
	writeErrors        prometheus.Counter
	segments           prometheus.Gauge
	checkpointDuration prometheus.Histogram
	checkpointBytes    prometheus.Gauge
	checkpointErrors   prometheus.Counter
	checkpoints        *prometheus.CounterVec
	replayDuration     prometheus.Gauge
	corruptions        prometheus.Counter
	unknownRefs        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		fsyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fedgate_wal_fsync_duration_seconds",
			Help:    "Duration of WAL write-and-fdatasync calls, one per group commit.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		bytesWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_wal_bytes_written_total",
			Help: "Bytes written to WAL segments and synced.",
		}),
		recordsWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_wal_records_written_total",
			Help: "Records written to WAL segments and synced.",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_wal_write_errors_total",
			Help: "WAL writes or syncs that failed; each abandons its segment.",
		}),
		segments: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fedgate_wal_segments",
			Help: "WAL segment files on disk.",
		}),
		checkpointDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fedgate_wal_checkpoint_duration_seconds",
			Help:    "Time taken to write a checkpoint.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		checkpointBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fedgate_wal_checkpoint_size_bytes",
			Help: "Size of the last checkpoint written.",
		}),
		checkpointErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_wal_checkpoint_errors_total",
			Help: "Checkpoints that failed; the segments they would have covered are kept.",
		}),
		checkpoints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedgate_wal_checkpoints_written_total",
			Help: "Checkpoints written, by kind: full (every series' labels) or delta (samples, and the series its full base lacks).",
		}, []string{"kind"}),
		replayDuration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fedgate_wal_replay_duration_seconds",
			Help: "Time the startup replay took.",
		}),
		corruptions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_wal_corruptions_total",
			Help: "Corrupt or torn records and missing segments found during replay.",
		}),
		unknownRefs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_wal_replay_unknown_series_samples_total",
			Help: "Samples found during replay whose series record was lost.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.fsyncDuration, m.bytesWritten, m.recordsWritten, m.writeErrors, m.segments,
			m.checkpointDuration, m.checkpointBytes, m.checkpointErrors, m.checkpoints, m.replayDuration, m.corruptions, m.unknownRefs)
		for _, kind := range []string{"full", "delta"} {
			m.checkpoints.WithLabelValues(kind)
		}
	}
	return m
}
