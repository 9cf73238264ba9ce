package otlp

import (
	"time"

	"github.com/apmkit/apmkit/io/lprecord"
)

// mapping is one field exported as one metric, with fixed attributes.
type mapping struct {
	field, name, unit string
	ins               instrument
	attr              [2]string // key, value; "" when none
}

// apply adds a data point for every field of table the row has; extra adds the row's own
// attributes, start is a delta's start. It reports whether any point was added.
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
