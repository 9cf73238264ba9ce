package tracestore

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apmkit/apmkit/cache"
)

// counters are the store's counts, read by Stats and the metrics collector.
type counters struct {
	spans, transactions, samples, agents atomic.Int64
	skipped                              atomic.Int64 // span rows without a usable trace or span id
	refused                              atomic.Int64 // writes refused: disk full
	corrupt                              atomic.Int64 // records that did not decode
	droppedAge, droppedSize              atomic.Int64
}

func (c *counters) dropped(reason string) *atomic.Int64 {
	if reason == "age" {
		return &c.droppedAge
	}
	return &c.droppedSize
}

// Stats is a snapshot of the store.
type Stats struct {
	Dir        string `json:"dir"`
	Bytes      int64  `json:"bytes"`
	MaxBytes   int64  `json:"max_bytes"`
	Partitions int    `json:"partitions"`
}

// Stats measures the store.
func (s *Store) Stats() Stats {
	total, _ := cache.DirUsage(s.dir)
	return Stats{Dir: s.dir, Bytes: total, MaxBytes: s.opts.MaxBytes, Partitions: len(s.partitionIDs())}
}

// Collector exposes the store on /metrics as apmkit_explorer_*.
func (s *Store) Collector() prometheus.Collector { return collector{s: s} }

type collector struct{ s *Store }

var (
	bytesDesc      = prometheus.NewDesc("apmkit_explorer_store_bytes", "Disk usage of the explorer's local trace store.", nil, nil)
	maxBytesDesc   = prometheus.NewDesc("apmkit_explorer_store_max_bytes", "The local trace store's size bound (max_mb): beyond it the oldest partitions are dropped.", nil, nil)
	partitionsDesc = prometheus.NewDesc("apmkit_explorer_store_partitions", "Partitions of the local trace store (each holds what was stored during a slice of the retention).", nil, nil)
	storedDesc     = prometheus.NewDesc("apmkit_explorer_records_stored_total", "Records written to the local trace store, by kind: span, transaction, sample, agent.", []string{"kind"}, nil)
	skippedDesc    = prometheus.NewDesc("apmkit_explorer_spans_skipped_total", "Span rows the local trace store could not index (no trace id, or a span id that is not a number).", nil, nil)
	refusedDesc    = prometheus.NewDesc("apmkit_explorer_writes_refused_total", "Batches the local trace store refused because the disk is full (the output retries them, then spills).", nil, nil)
	corruptDesc    = prometheus.NewDesc("apmkit_explorer_corrupt_records_total", "Records of the local trace store that did not decode when read; they are skipped.", nil, nil)
	droppedDesc    = prometheus.NewDesc("apmkit_explorer_partitions_dropped_total", "Partitions the retention dropped, by reason: age (retention) or size (max_mb).", []string{"reason"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{bytesDesc, maxBytesDesc, partitionsDesc, storedDesc, skippedDesc, refusedDesc, corruptDesc, droppedDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	k := &c.s.counters
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(bytesDesc, st.Bytes)
	gauge(maxBytesDesc, st.MaxBytes)
	gauge(partitionsDesc, int64(st.Partitions))
	counter(storedDesc, k.spans.Load(), "span")
	counter(storedDesc, k.transactions.Load(), "transaction")
	counter(storedDesc, k.samples.Load(), "sample")
	counter(storedDesc, k.agents.Load(), "agent")
	counter(skippedDesc, k.skipped.Load())
	counter(refusedDesc, k.refused.Load())
	counter(corruptDesc, k.corrupt.Load())
	counter(droppedDesc, k.droppedAge.Load(), "age")
	counter(droppedDesc, k.droppedSize.Load(), "size")
}
