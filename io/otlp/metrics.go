package otlp

import (
	"time"

	"github.com/apmkit/apmkit/io/lprecord"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
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
			if !contains(ownTags[m.Measurement], t.Key) {
				r.extra = append(r.extra, t)
			}
		}
	}
	return r
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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

// mapping is one field exported as one metric, with fixed attributes.
type mapping struct {
	field, name, unit string
	ins               instrument
	attr              [2]string // key, value; "" when none
}

func (b *metricSet) apply(m *lprecord.Metric, table []mapping, start int64, extra func(*attrs)) bool {
	added := false
	for _, mp := range table {
		var a attrs
		if mp.attr[0] != "" {
			a.str(mp.attr[0], mp.attr[1])
		}
		if extra != nil {
			extra(&a)
		}
		dp, ok := numberPoint(m, mp.field, m.Time, a)
		if !ok {
			continue
		}
		if mp.ins == delta {
			dp.StartTimeUnixNano = uint64(max(start, 0))
		}
		b.point(mp.name, mp.unit, mp.ins, dp)
		added = true
	}
	return added
}

// kv is a mapping's one fixed attribute: key, value.
type kv = [2]string

var jvmMetrics = []mapping{
	{"JvmMemoryHeapUsed", "jvm.memory.used", "By", updown, kv{"jvm.memory.type", "heap"}},
	{"JvmMemoryNonHeapUsed", "jvm.memory.used", "By", updown, kv{"jvm.memory.type", "non_heap"}},
	{"JvmMemoryHeapMax", "jvm.memory.limit", "By", updown, kv{"jvm.memory.type", "heap"}},
	{"JvmMemoryNonHeapMax", "jvm.memory.limit", "By", updown, kv{"jvm.memory.type", "non_heap"}},
	{"JvmCpuLoad", "process.cpu.utilization", "1", gauge, kv{}},
	{"SystemCpuLoad", "system.cpu.utilization", "1", gauge, kv{}},
	{"TotalThreadCount", "jvm.thread.count", "{thread}", updown, kv{}},
	{"LoadedClassCount", "jvm.class.count", "{class}", updown, kv{}},
	{"UnloadedClassCount", "jvm.class.unloaded", "{class}", counter, kv{}},
	{"OpenFileDescriptorCount", "process.unix.file_descriptor.count", "{file_descriptor}", updown, kv{}},
	{"DirectCount", "jvm.buffer.count", "{buffer}", updown, kv{"jvm.buffer.pool.name", "direct"}},
	{"MappedCount", "jvm.buffer.count", "{buffer}", updown, kv{"jvm.buffer.pool.name", "mapped"}},
	{"DirectMemoryUsed", "jvm.buffer.memory.used", "By", updown, kv{"jvm.buffer.pool.name", "direct"}},
	{"MappedMemoryUsed", "jvm.buffer.memory.used", "By", updown, kv{"jvm.buffer.pool.name", "mapped"}},
	{"PoolCodeCacheUsed", "pinpoint.jvm.memory.pool.utilization", "1", gauge, kv{"jvm.memory.pool.name", "code_cache"}},
	{"PoolNewGenUsed", "pinpoint.jvm.memory.pool.utilization", "1", gauge, kv{"jvm.memory.pool.name", "new_gen"}},
	{"PoolOldGenUsed", "pinpoint.jvm.memory.pool.utilization", "1", gauge, kv{"jvm.memory.pool.name", "old_gen"}},
	{"PoolSurvivorSpaceUsed", "pinpoint.jvm.memory.pool.utilization", "1", gauge, kv{"jvm.memory.pool.name", "survivor_space"}},
	{"PoolPermGenUsed", "pinpoint.jvm.memory.pool.utilization", "1", gauge, kv{"jvm.memory.pool.name", "perm_gen"}},
	{"PoolMetaspaceUsed", "pinpoint.jvm.memory.pool.utilization", "1", gauge, kv{"jvm.memory.pool.name", "metaspace"}},
	{"TransactionSampledNew", "pinpoint.transaction.count", "{transaction}", delta, kv{"pinpoint.transaction.type", "sampled_new"}},
	{"TransactionSampledContinuation", "pinpoint.transaction.count", "{transaction}", delta, kv{"pinpoint.transaction.type", "sampled_continuation"}},
	{"TransactionUnsampledNew", "pinpoint.transaction.count", "{transaction}", delta, kv{"pinpoint.transaction.type", "unsampled_new"}},
	{"TransactionUnsampledContinuation", "pinpoint.transaction.count", "{transaction}", delta, kv{"pinpoint.transaction.type", "unsampled_continuation"}},
	{"TransactionSkippedNew", "pinpoint.transaction.count", "{transaction}", delta, kv{"pinpoint.transaction.type", "skipped_new"}},
	{"TransactionSkippedContinuation", "pinpoint.transaction.count", "{transaction}", delta, kv{"pinpoint.transaction.type", "skipped_continuation"}},
	{"ActiveTraceFast", "pinpoint.active_trace.count", "{trace}", gauge, kv{"pinpoint.active_trace.speed", "fast"}},
	{"ActiveTraceNormal", "pinpoint.active_trace.count", "{trace}", gauge, kv{"pinpoint.active_trace.speed", "normal"}},
	{"ActiveTraceSlow", "pinpoint.active_trace.count", "{trace}", gauge, kv{"pinpoint.active_trace.speed", "slow"}},
	{"ActiveTraceVerySlow", "pinpoint.active_trace.count", "{trace}", gauge, kv{"pinpoint.active_trace.speed", "very_slow"}},
	{"ResponseTimeAvg", "pinpoint.response_time.average", "ms", gauge, kv{}},
	{"ResponseTimeMax", "pinpoint.response_time.max", "ms", gauge, kv{}},
	{"DeadlockCount", "pinpoint.jvm.thread.deadlock.count", "{thread}", gauge, kv{}},
}

// GC counts and times are cumulative since the process started, per generation, with the
// collector (jvm_gc_type) as an attribute.
var gcMetrics = []mapping{
	{"JvmGcOldCount", "pinpoint.jvm.gc.count", "{collection}", counter, kv{"pinpoint.jvm.gc.generation", "old"}},
	{"JvmGcOldTime", "pinpoint.jvm.gc.time", "ms", counter, kv{"pinpoint.jvm.gc.generation", "old"}},
	{"GcNewCount", "pinpoint.jvm.gc.count", "{collection}", counter, kv{"pinpoint.jvm.gc.generation", "young"}},
	{"GcNewTime", "pinpoint.jvm.gc.time", "ms", counter, kv{"pinpoint.jvm.gc.generation", "young"}},
}

// jvm maps a stat sample. Transaction counts cover the sample's collect interval, which
// ends at its timestamp.
func (b *metricSet) jvm(m *lprecord.Metric) bool {
	start := m.Time
	if f, ok := m.Field("CollectInterval"); ok && f.Kind == lprecord.Int {
		start -= f.Int * int64(time.Millisecond)
	}
	a := b.apply(m, jvmMetrics, start, nil)
	gcType := m.Tag("jvm_gc_type")
	g := b.apply(m, gcMetrics, start, func(a *attrs) { a.str("pinpoint.jvm.gc.type", gcType) })
	return a || g
}

var dataSourceMetrics = []mapping{
	{"ActiveConnectionSize", "db.client.connection.count", "{connection}", updown, kv{"db.client.connection.state", "used"}},
	{"MaxConnectionSize", "db.client.connection.max", "{connection}", updown, kv{}},
}

// dataSource maps a connection pool sample; the pool is named by the agent's pool id, so
// two pools of one URL stay apart.
func (b *metricSet) dataSource(m *lprecord.Metric) bool {
	return b.apply(m, dataSourceMetrics, m.Time, func(a *attrs) {
		a.str("db.client.connection.pool.name", m.Tag("pool_id"))
		a.str("db.namespace", m.Tag("database_name"))
		a.str("pinpoint.datasource.url", m.Tag("url"))
		a.str("pinpoint.service_type", m.Tag("service_type"))
	})
}

// agent maps an agent start or end: its start time and, for an end, its end time, with
// what the agent says about itself as attributes.
func (b *metricSet) agent(m *lprecord.Metric) bool {
	var a attrs
	for _, t := range agentTagAttrs {
		a.str(t.attr, m.Tag(t.tag))
	}
	if f, ok := m.Field("pid"); ok && f.Kind == lprecord.Int {
		a.int("process.pid", f.Int)
	}
	for _, t := range agentFieldAttrs {
		if f, ok := m.Field(t.tag); ok && f.Kind == lprecord.String {
			a.str(t.attr, f.Str)
		}
	}
	added := false
	if dp, ok := numberPoint(m, "start_time", m.Time, a); ok {
		b.point("pinpoint.agent.start_time", "ms", gauge, dp)
		added = true
	}
	end := append(attrs(nil), a...)
	if f, ok := m.Field("end_status"); ok && f.Kind == lprecord.Int {
		end.int("pinpoint.agent.end_status", f.Int)
	}
	if dp, ok := numberPoint(m, "end_timestamp", m.Time, end); ok {
		b.point("pinpoint.agent.end_time", "ms", gauge, dp)
		added = true
	}
	return added
}

// agentTagAttrs and agentFieldAttrs name what a pinpoint_agent row says about the agent
// (its hostname is the resource's host.name).
var (
	agentTagAttrs = []struct{ tag, attr string }{
		{"agentVersion", "pinpoint.agent_version"}, {"container", "pinpoint.container"}, {"ip", "host.ip"},
		{"service_type", "pinpoint.service_type"}, {"vm_version", "process.runtime.version"},
	}
	agentFieldAttrs = []struct{ tag, attr string }{
		{"ports", "pinpoint.ports"}, {"server_info", "pinpoint.server_info"}, {"jvm_gc_type", "pinpoint.jvm.gc.type"},
	}
)

// uriBounds are Pinpoint's URI histogram bucket bounds, in seconds: <100 ms, 100-300 ms,
// ..., 5000-8000 ms, >= 8000 ms.
var uriBounds = []float64{0.1, 0.3, 0.5, 1, 3, 5, 8}

var uriBuckets = []string{"lt_100ms", "100_300ms", "300_500ms", "500_1000ms", "1000_3000ms", "3000_5000ms", "5000_8000ms", "ge_8000ms"}

// uriWindow is the length of Pinpoint's URI stat window: a PEachUriStat counts the
// requests of the 30 s that start at its timestamp.
const uriWindow = 30 * time.Second

// uri maps a URI stat entry to http.server.request.duration: the requests that did not
// fail as one data point, the failed ones (error.type _OTHER) as another, so summing the
// two gives every request. The max of the successful requests is only known when none
// failed.
func (b *metricSet) uri(m *lprecord.Metric) bool {
	all, failed := uriCounts(m, "bucket_"), uriCounts(m, "failed_bucket_")
	ok := make([]uint64, len(all))
	for i := range all {
		ok[i] = all[i] - min(failed[i], all[i])
	}
	route := m.Tag("uri")
	failedMs, failedMax := intField(m, "failed_elapsed_ms"), intField(m, "failed_max_ms")
	okMax := int64(-1)
	if sum(failed) == 0 {
		okMax = intField(m, "max_ms")
	}
	points := []*metricspb.HistogramDataPoint{
		uriPoint(m.Time, route, "", ok, max(intField(m, "total_elapsed_ms")-failedMs, 0), okMax),
		uriPoint(m.Time, route, "_OTHER", failed, failedMs, failedMax),
	}
	added := false
	for _, p := range points {
		if p.Count == 0 {
			continue
		}
		hist := b.metric("http.server.request.duration", "s", histogram).Data.(*metricspb.Metric_Histogram).Histogram
		hist.DataPoints = append(hist.DataPoints, p)
		added = true
	}
	return added
}

func uriCounts(m *lprecord.Metric, prefix string) []uint64 {
	out := make([]uint64, len(uriBuckets))
	for i, b := range uriBuckets {
		out[i] = uint64(max(intField(m, prefix+b), 0))
	}
	return out
}

// intField is an integer field's value, 0 when absent.
func intField(m *lprecord.Metric, key string) int64 {
	if f, ok := m.Field(key); ok && f.Kind == lprecord.Int {
		return f.Int
	}
	return 0
}

func sum(v []uint64) uint64 {
	var n uint64
	for _, x := range v {
		n += x
	}
	return n
}

// uriPoint is one histogram data point of the window starting at t; maxMs < 0: unknown.
func uriPoint(t int64, route, errorType string, counts []uint64, sumMs, maxMs int64) *metricspb.HistogramDataPoint {
	var a attrs
	a.str("http.route", route)
	a.str("error.type", errorType)
	s := float64(sumMs) / 1000
	p := &metricspb.HistogramDataPoint{
		Attributes:        []*commonpb.KeyValue(a),
		StartTimeUnixNano: uint64(max(t, 0)),
		TimeUnixNano:      uint64(max(t, 0) + int64(uriWindow)),
		Count:             sum(counts),
		Sum:               &s,
		BucketCounts:      counts,
		ExplicitBounds:    uriBounds,
	}
	if maxMs >= 0 {
		mx := float64(maxMs) / 1000
		p.Max = &mx
	}
	return p
}
