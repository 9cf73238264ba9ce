package pipeline

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics count decisions by reason. The agent wraps the registerer with the input's
// labels, so every input instance has its own series.
type metrics struct {
	points      *prometheus.CounterVec
	rareEntries prometheus.Gauge
	kept        atomic.Int64
	dropped     atomic.Int64
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		points: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apmkit_pipeline_points_total",
			Help: "Tracing points kept or dropped by the pipeline, by reason.",
		}, []string{"decision", "reason"}),
		rareEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apmkit_pipeline_rare_resources",
			Help: "(service, resource) pairs remembered by keep_rare_resource.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.points, m.rareEntries} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) count(keep bool, reason string, n int) {
	decision := "dropped"
	if keep {
		decision = "kept"
		m.kept.Add(int64(n))
	} else {
		m.dropped.Add(int64(n))
	}
	m.points.WithLabelValues(decision, reason).Add(float64(n))
}

// Stats is the pipeline's part of /v1/stats.
type Stats struct {
	Kept          int64 `json:"tracing_points_kept"`
	Dropped       int64 `json:"tracing_points_dropped"`
	RareResources int   `json:"rare_resources,omitempty"`
}

// Stats snapshots the pipeline's counters.
func (p *Pipeline) Stats() Stats {
	st := Stats{Kept: p.metrics.kept.Load(), Dropped: p.metrics.dropped.Load()}
	if p.rare != nil {
		st.RareResources = p.rare.seen.Len()
	}
	return st
}
