package pipeline

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics count decisions by reason, in traces and in points, and what waits for one. The
// agent wraps the registerer with the input's labels, so every input instance has its own
// series.
type metrics struct {
	points          [2][numReasons]lazyCounter // [keep][reason]
	traces          [2][numReasons]lazyCounter
	late            [2]lazyCounter
	decided         [numCauses]lazyCounter
	emitErrors      prometheus.Counter
	pendingTraces   prometheus.Gauge
	pendingBytes    prometheus.Gauge
	pendingCapacity prometheus.Gauge
	rareEntries     prometheus.Gauge
	// Registered with the smart sampler only.
	smartURLs     prometheus.Gauge
	smartOverflow prometheus.Counter
	smartCPU      prometheus.Gauge

	kept, dropped             atomic.Int64 // points
	tracesKept, tracesDropped atomic.Int64
	lateSpans                 atomic.Int64
	early                     atomic.Int64 // traces decided before their wait was over
	pending, pendingB         atomic.Int64
}

var decisionNames = [2]string{"dropped", "kept"}

func newMetrics(reg prometheus.Registerer, smart bool) (*metrics, error) {
	points := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apmkit_pipeline_points_total",
		Help: "Tracing points kept or dropped by the pipeline, by the reason of their trace's decision.",
	}, []string{"decision", "reason"})
	traces := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apmkit_pipeline_traces_total",
		Help: "Traces decided (when a sampler or filter is configured), kept or dropped, by reason.",
	}, []string{"decision", "reason"})
	late := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apmkit_pipeline_late_spans_total",
		Help: "Spans that came after their trace was decided and followed the decision.",
	}, []string{"decision"})
	decided := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apmkit_pipeline_decisions_total",
		Help: "Trace decisions by when they were made: waited (decision_wait was over), buffer_full or stop (early).",
	}, []string{"when"})
	m := &metrics{
		emitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apmkit_pipeline_emit_errors_total",
			Help: "Decided spans the uploader refused (it counts them as dropped too).",
		}),
		pendingTraces: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apmkit_pipeline_pending_traces",
			Help: "Traces waiting for their decision.",
		}),
		pendingBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apmkit_pipeline_pending_bytes",
			Help: "Memory of the spans waiting for their trace's decision.",
		}),
		pendingCapacity: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apmkit_pipeline_pending_capacity_bytes",
			Help: "Bound of apmkit_pipeline_pending_bytes (decision_buffer_mb); 0 when nothing waits.",
		}),
		rareEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apmkit_pipeline_rare_resources",
			Help: "(service, resource) pairs remembered by keep_rare_resource.",
		}),
		smartURLs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apmkit_pipeline_smart_sampler_urls",
			Help: "URL templates the smart sampler counts this minute (bounded; the rest share one bucket).",
		}),
		smartOverflow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apmkit_pipeline_smart_sampler_overflow_traces_total",
			Help: "Traces whose URL template found the smart sampler's table full: counted in the shared bucket.",
		}),
		smartCPU: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apmkit_pipeline_smart_sampler_cpu_percent",
			Help: "Host CPU usage the smart sampler measured for this minute's quotas.",
		}),
	}
	for k := range 2 {
		for r := range numReasons {
			m.points[k][r].init(points, decisionNames[k], r.String())
			m.traces[k][r].init(traces, decisionNames[k], r.String())
		}
		m.late[k].init(late, decisionNames[k])
	}
	for c := range numCauses {
		m.decided[c].init(decided, causeNames[c])
	}
	if reg != nil {
		cs := []prometheus.Collector{points, traces, late, decided, m.emitErrors, m.pendingTraces, m.pendingBytes, m.pendingCapacity, m.rareEntries}
		if smart {
			cs = append(cs, m.smartURLs, m.smartOverflow, m.smartCPU)
		}
		for _, c := range cs {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// lazyCounter is one series of a vector, created on first use: only the label
// combinations that happen show on /metrics, and the hot path skips the vector's lookup.
type lazyCounter struct {
	once   sync.Once
	vec    *prometheus.CounterVec
	labels []string
	c      prometheus.Counter
}

func (l *lazyCounter) init(vec *prometheus.CounterVec, labels ...string) {
	l.vec, l.labels = vec, labels
}

func (l *lazyCounter) get() prometheus.Counter {
	l.once.Do(func() { l.c = l.vec.WithLabelValues(l.labels...) })
	return l.c
}

func keepIndex(keep bool) int {
	if keep {
		return 1
	}
	return 0
}

// countPoints counts the points of a span decided alone (no trace decision).
func (m *metrics) countPoints(d decision, n int) {
	m.points[keepIndex(d.keep)][d.reason].get().Add(float64(n))
	if d.keep {
		m.kept.Add(int64(n))
	} else {
		m.dropped.Add(int64(n))
	}
}

// countTrace counts a trace decision and its points.
func (m *metrics) countTrace(d decision, c cause, points int) {
	m.countPoints(d, points)
	m.traces[keepIndex(d.keep)][d.reason].get().Inc()
	m.decided[c].get().Inc()
	if d.keep {
		m.tracesKept.Add(1)
	} else {
		m.tracesDropped.Add(1)
	}
	if c != causeWaited {
		m.early.Add(1)
	}
}

// countLate counts a span that followed its trace's remembered decision.
func (m *metrics) countLate(d decision, points int) {
	m.countPoints(d, points)
	m.late[keepIndex(d.keep)].get().Inc()
	m.lateSpans.Add(1)
}

func (m *metrics) setPending(traces int, bytes int64) {
	m.pending.Store(int64(traces))
	m.pendingB.Store(bytes)
	m.pendingTraces.Set(float64(traces))
	m.pendingBytes.Set(float64(bytes))
}

// Stats is the pipeline's part of /v1/stats. Points count tracing points (span rows);
// traces count trace decisions, made only when a sampler or filter is configured.
type Stats struct {
	Kept           int64 `json:"tracing_points_kept"`
	Dropped        int64 `json:"tracing_points_dropped"`
	TracesKept     int64 `json:"traces_kept,omitempty"`
	TracesDropped  int64 `json:"traces_dropped,omitempty"`
	PendingTraces  int64 `json:"pending_traces,omitempty"`
	PendingBytes   int64 `json:"pending_bytes,omitempty"`
	LateSpans      int64 `json:"late_spans,omitempty"`
	EarlyDecisions int64 `json:"early_decisions,omitempty"`
	RareResources  int   `json:"rare_resources,omitempty"`
	SmartURLs      int   `json:"smart_sampler_urls,omitempty"`
}

// Stats snapshots the pipeline's counters.
func (p *Pipeline) Stats() Stats {
	m := p.metrics
	st := Stats{
		Kept: m.kept.Load(), Dropped: m.dropped.Load(),
		TracesKept: m.tracesKept.Load(), TracesDropped: m.tracesDropped.Load(),
		PendingTraces: m.pending.Load(), PendingBytes: m.pendingB.Load(),
		LateSpans: m.lateSpans.Load(), EarlyDecisions: m.early.Load(),
	}
	if p.rare != nil {
		st.RareResources = p.rare.seen.Len()
	}
	if p.smart != nil {
		st.SmartURLs = p.smart.urlCount()
	}
	return st
}
