package otlp

import (
	"slices"

	"github.com/apmkit/apmkit/io/lprecord"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
)

// Metrics maps metric records to one export request: a ResourceMetrics per agent resource,
// one Metric per name with a data point per row. empty counts the rows that gave no data
// point (a sample with none of the fields docs/OTLP.md maps), for the caller to count as
// dropped.
func Metrics(rows []lprecord.Metric) (req *colmetricspb.ExportMetricsServiceRequest, empty int) {
	var gs groups[*lprecord.Metric]
	for i := range rows {
		m := &rows[i]
		g := gs.get(metricRes(m))
		if m.Measurement == lprecord.Agent {
			g.noteLanguage(languageOf(m.Tag("service_type"), true))
		}
		g.items = append(g.items, m)
	}
	req = &colmetricspb.ExportMetricsServiceRequest{}
	for _, g := range gs.order {
		var b metricSet
		for _, m := range g.items {
			if !b.add(m) {
				empty++
			}
		}
		if len(b.order) == 0 {
			continue
		}
		req.ResourceMetrics = append(req.ResourceMetrics, &metricspb.ResourceMetrics{
			Resource:     g.res.resource(g.language),
			ScopeMetrics: []*metricspb.ScopeMetrics{{Scope: scope(), Metrics: b.order}},
		})
	}
	return req, empty
}

// ownTags are the tags each measurement has by the schema; any other tag is the input's
// or a global one, and goes to the resource.
var ownTags = map[string][]string{
	lprecord.JVM:        {"agentVersion", "container", "hostname", "ip", "jvm_gc_type", "pid", "ports"},
	lprecord.DataSource: {"database_name", "pool_id", "service_type", "url"},
	lprecord.URI:        {"uri"},
	lprecord.Agent:      {"agentVersion", "container", "hostname", "ip", "service_type", "vm_version"},
}

func metricRes(m *lprecord.Metric) agentRes {
	r := agentRes{}
	for _, t := range m.Tags {
		switch t.Key {
		case "service":
			r.service = t.Value
		case "agent_id":
			r.agentID = t.Value
		case "agent_name":
			r.agentName = t.Value
		case "host":
			r.host = t.Value
		default:
			if !slices.Contains(ownTags[m.Measurement], t.Key) {
				r.extra = append(r.extra, t)
			}
		}
	}
	return r
}

// metricSet collects one resource's metrics by name, in first-seen order.
type metricSet struct {
	byName map[string]*metricspb.Metric
	order  []*metricspb.Metric
}

// add maps one row; false when it gave no data point.
func (b *metricSet) add(m *lprecord.Metric) bool {
	switch m.Measurement {
	case lprecord.JVM:
		return b.jvm(m)
	case lprecord.DataSource:
		return b.dataSource(m)
	case lprecord.URI:
		return b.uri(m)
	case lprecord.Agent:
		return b.agent(m)
	}
	return false
}

// instrument is how a value is exported.
type instrument uint8

const (
	gauge     instrument = iota
	updown               // a cumulative non-monotonic sum (OTel's UpDownCounter): memory, threads
	counter              // a cumulative monotonic sum: GC counts and times since the process started
	delta                // a monotonic sum over the sample's collect interval: transactions
	histogram            // a delta histogram: URI stats
)

// metric returns the named metric, made on first use with its unit and instrument.
func (b *metricSet) metric(name, unit string, ins instrument) *metricspb.Metric {
	if m, ok := b.byName[name]; ok {
		return m
	}
	m := &metricspb.Metric{Name: name, Unit: unit}
	switch ins {
	case gauge:
		m.Data = &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{}}
	case updown, counter:
		m.Data = &metricspb.Metric_Sum{Sum: &metricspb.Sum{
			AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
			IsMonotonic:            ins == counter,
		}}
	case delta:
		m.Data = &metricspb.Metric_Sum{Sum: &metricspb.Sum{
			AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA,
			IsMonotonic:            true,
		}}
	case histogram:
		m.Data = &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{
			AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA,
		}}
	}
	if b.byName == nil {
		b.byName = map[string]*metricspb.Metric{}
	}
	b.byName[name] = m
	b.order = append(b.order, m)
	return m
}

// point adds a number data point to a gauge or sum.
func (b *metricSet) point(name, unit string, ins instrument, dp *metricspb.NumberDataPoint) {
	switch d := b.metric(name, unit, ins).Data.(type) {
	case *metricspb.Metric_Gauge:
		d.Gauge.DataPoints = append(d.Gauge.DataPoints, dp)
	case *metricspb.Metric_Sum:
		d.Sum.DataPoints = append(d.Sum.DataPoints, dp)
	}
}

// numberPoint is a field's value as a data point at t (ns); false when the field is
// absent or not a number.
func numberPoint(m *lprecord.Metric, field string, t int64, a attrs) (*metricspb.NumberDataPoint, bool) {
	f, ok := m.Field(field)
	if !ok {
		return nil, false
	}
	dp := &metricspb.NumberDataPoint{TimeUnixNano: uint64(max(t, 0)), Attributes: a}
	switch f.Kind {
	case lprecord.Int:
		dp.Value = &metricspb.NumberDataPoint_AsInt{AsInt: f.Int}
	case lprecord.Float:
		dp.Value = &metricspb.NumberDataPoint_AsDouble{AsDouble: f.Float}
	default:
		return nil, false
	}
	return dp, true
}
