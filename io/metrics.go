package io

import (
	"github.com/apmkit/apmkit/point"
	"github.com/prometheus/client_golang/prometheus"
)

// metricsCollector exposes the uploader's counters as apmkit_io_* metrics. It reads the
// same atomics as Stats at scrape time instead of keeping a second set of Prometheus
// counters, so /metrics and Stats always agree and the hot path pays for one count only.
type metricsCollector struct {
	u *Uploader

	queuePoints, queueBytes, queueCapacity      *prometheus.Desc
	pointsIn, pointsBatched, batches            *prometheus.Desc
	rejected, dropped                           *prometheus.Desc
	pointsSent, bytesSent, batchesSent, retries *prometheus.Desc
	permanentErrors, spilledBatches             *prometheus.Desc
	spillBytes, spillBatches, outputQueue       *prometheus.Desc
	outputState, lastError                      *prometheus.Desc
}

func newMetricsCollector(u *Uploader) *metricsCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("apmkit_io_"+name, help, labels, nil)
	}
	return &metricsCollector{
		u:               u,
		queuePoints:     d("queue_points", "Points held in memory: in the batch being filled or waiting for an output.", "category"),
		queueBytes:      d("queue_bytes", "Line protocol held in memory (batches being filled or waiting for an output, and their gzip forms)."),
		queueCapacity:   d("queue_capacity_bytes", "Memory for line protocol (io.queue_max_mb); inputs wait when it is in use."),
		pointsIn:        d("points_in_total", "Points accepted by Feed.", "category"),
		pointsBatched:   d("points_batched_total", "Points encoded into batches for the outputs.", "category"),
		batches:         d("batches_total", "Batches cut by the batcher.", "category"),
		rejected:        d("points_rejected_total", "Invalid points rejected at encoding, by reason.", "category", "reason"),
		dropped:         d("points_dropped_total", "Points lost, by reason; output is empty for losses before any output.", "category", "output", "reason"),
		pointsSent:      d("points_sent_total", "Points delivered by the output.", "category", "output"),
		bytesSent:       d("bytes_sent_total", "Bytes delivered by the output, after compression.", "output"),
		batchesSent:     d("batches_sent_total", "Batches delivered by the output.", "output"),
		retries:         d("retries_total", "Delivery attempts repeated after a retryable error.", "output"),
		permanentErrors: d("permanent_errors_total", "Requests whose content the output refused for good, dropped: batches (4xx) and single malformed or too large lines.", "output"),
		spilledBatches:  d("spilled_batches_total", "Batches written to the output's disk spill.", "output"),
		spillBytes:      d("spill_bytes", "Bytes in the output's disk spill.", "output"),
		spillBatches:    d("spill_batches", "Batches in the output's disk spill.", "output"),
		outputQueue:     d("output_queue_batches", "Batches waiting in the output's memory queue.", "output"),
		outputState:     d("output_state", "1 for the output's current state: ok, failing (retried) or config_error (batches kept until the config is fixed).", "output", "state"),
		lastError:       d("output_last_error_timestamp_seconds", "When the output's last error happened; its text is the error label.", "output", "error"),
	}
}

func (m *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		m.queuePoints, m.queueBytes, m.queueCapacity, m.pointsIn, m.pointsBatched, m.batches, m.rejected,
		m.dropped, m.pointsSent, m.bytesSent, m.batchesSent, m.retries, m.permanentErrors,
		m.spilledBatches, m.spillBytes, m.spillBatches, m.outputQueue, m.outputState, m.lastError,
	} {
		ch <- d
	}
}

func (m *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	gauge(ch, m.queueBytes, float64(m.u.budget.inUse()))
	gauge(ch, m.queueCapacity, float64(m.u.budget.max))
	for ci, c := range point.Categories {
		m.collectCategory(ch, ci, c)
	}
	for _, w := range m.u.outputs {
		m.collectOutput(ch, w)
	}
}

func (m *metricsCollector) collectCategory(ch chan<- prometheus.Metric, ci int, c point.Category) {
	k := m.u.counters[ci]
	cat := c.String()
	gauge(ch, m.queuePoints, float64(k.queued.Load()), cat)
	counter(ch, m.pointsIn, k.in.Load(), cat)
	counter(ch, m.pointsBatched, k.batched.Load(), cat)
	counter(ch, m.batches, k.batches.Load(), cat)
	for r := rejectReason(0); r < numRejectReasons; r++ {
		counter(ch, m.rejected, k.rejected[r].Load(), cat, r.String())
	}
	for r := dropReason(0); r < numDropReasons; r++ {
		if !r.outputLevel() {
			counter(ch, m.dropped, k.dropped[r].Load(), cat, "", r.String())
		}
	}
}

func (m *metricsCollector) collectOutput(ch chan<- prometheus.Metric, w *outputWorker) {
	k := w.counters
	for ci, c := range point.Categories {
		pc := &k.perCategory[ci]
		counter(ch, m.pointsSent, pc.sent.Load(), c.String(), w.name)
		for r := dropReason(0); r < numDropReasons; r++ {
			if r.outputLevel() {
				counter(ch, m.dropped, pc.dropped[r].Load(), c.String(), w.name, r.String())
			}
		}
	}
	counter(ch, m.bytesSent, k.bytesSent.Load(), w.name)
	counter(ch, m.batchesSent, k.batchesSent.Load(), w.name)
	counter(ch, m.retries, k.retries.Load(), w.name)
	counter(ch, m.permanentErrors, k.permanentErrors.Load(), w.name)
	counter(ch, m.spilledBatches, k.spilledBatches.Load(), w.name)
	n, size := w.spill.size()
	gauge(ch, m.spillBytes, float64(size), w.name)
	gauge(ch, m.spillBatches, float64(n), w.name)
	gauge(ch, m.outputQueue, float64(w.memoryLen()), w.name)
	health := outputHealth(k.health.Load())
	for h := outputHealth(0); h < numHealths; h++ {
		gauge(ch, m.outputState, boolValue(h == health), w.name, h.String())
	}
	if text, at := k.lastErr.get(); text != "" {
		gauge(ch, m.lastError, float64(at.UnixNano())/1e9, w.name, text)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v int64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}
