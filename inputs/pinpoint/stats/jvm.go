package stats

import (
	"math"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/point"
)

// jvmTagCap is the number of pinpoint_jvm tags (see jvmTags).
const jvmTagCap = 11

// jvmFieldBound is the most fields jvmFields can write for s, counted from the
// sub-messages present, so the slab reserves what the sample needs (a Field is 48 bytes;
// the Go agent fills 28 of the 38 possible) and a point never outgrows its window.
func jvmFieldBound(s *pb.PAgentStat) int {
	n := 1 // CollectInterval
	if gc := s.GetGc(); gc != nil {
		n += 6
		if gc.GetJvmGcDetailed() != nil {
			n += 8
		}
	}
	for _, sent := range [...]struct {
		present bool
		fields  int
	}{
		{s.GetCpuLoad() != nil, 2}, {s.GetTransaction() != nil, 6}, {s.GetActiveTrace() != nil, 4},
		{s.GetResponseTime() != nil, 2}, {s.GetFileDescriptor() != nil, 1}, {s.GetDirectBuffer() != nil, 4},
		{s.GetTotalThread() != nil, 1}, {s.GetLoadedClass() != nil, 2}, {s.GetDeadlock() != nil, 1},
	} {
		if sent.present {
			n += sent.fields
		}
	}
	return n
}

// samples converts PAgentStat samples (a batch or a single one) into one pinpoint_jvm point
// per sample and one pinpoint_datasource point per data source of each sample.
func (c *Converter) samples(agent *agentTags, samples []*pb.PAgentStat, skipped *Skipped) []*point.Point {
	dataSources, fields := 0, 0
	for _, s := range samples {
		n := len(s.GetDataSourceList().GetDataSource())
		dataSources += n
		fields += jvmFieldBound(s) + n*dataSourceFieldCap
	}
	slab := newPointSlab(len(samples)+dataSources, len(samples)*jvmTagCap+dataSources*dataSourceTagCap, fields)
	var urls urlMemo // the same pools come in every sample of a batch
	for _, s := range samples {
		if s == nil {
			skipped.add(NilEntry)
			continue
		}
		ts, ok := unixNanos(s.GetTimestamp())
		if !ok {
			skipped.add(BadTimestamp)
			continue
		}
		c.jvmPoint(&slab, agent, s, ts, skipped)
		c.dataSourcePoints(&slab, &urls, agent, s, ts, skipped)
	}
	return slab.out
}

// jvmPoint adds the sample's pinpoint_jvm point unless the sample holds no value at all.
func (c *Converter) jvmPoint(slab *pointSlab, agent *agentTags, s *pb.PAgentStat, ts int64, skipped *Skipped) {
	p := slab.newPoint(MeasurementJVM, ts, jvmTagCap, jvmFieldBound(s))
	p.Tags = jvmTags(p.Tags, agent, s.GetGc())
	p.Fields = jvmFields(p.Fields, s, skipped)
	if len(p.Fields) == 0 {
		skipped.add(NoValues)
		return
	}
	slab.keep(p)
}

// jvmTags appends the tags in sorted key order. jvm_gc_type comes from the sample's own gc
// message, else from the agent info (the same value for Java; the Go agent always says CMS).
func jvmTags(tags []point.Tag, agent *agentTags, gc *pb.PJvmGc) []point.Tag {
	gcType := agent.gcType
	if gc != nil {
		gcType = gcTypeName(gc.GetType())
	}
	tags = appendTag(tags, "agentVersion", agent.agentVersion)
	tags = appendTag(tags, "agent_id", agent.agentID)
	tags = appendTag(tags, "agent_name", agent.agentName)
	tags = appendTag(tags, "container", agent.container)
	tags = appendTag(tags, "host", agent.hostname)
	tags = appendTag(tags, "hostname", agent.hostname)
	tags = appendTag(tags, "ip", agent.ip)
	tags = appendTag(tags, "jvm_gc_type", gcType)
	tags = appendTag(tags, "pid", agent.pid)
	tags = appendTag(tags, "ports", agent.ports)
	return appendTag(tags, "service", agent.service)
}

// jvmFields appends every value the sample carries. A sub-message the agent did not send
// adds nothing; inside a sent one, proto3 cannot tell 0 from "not set", and 0 is what the
// agents mean (no deadlock, no transaction), so zeros are written.
func jvmFields(f []point.Field, s *pb.PAgentStat, skipped *Skipped) []point.Field {
	if s.GetCollectInterval() > 0 { // a plain scalar of PAgentStat: 0 means not sent
		f = append(f, point.Int("CollectInterval", s.GetCollectInterval()))
	}
	f = gcFields(f, s.GetGc())
	if cpu := s.GetCpuLoad(); cpu != nil {
		f = appendRatio(f, "JvmCpuLoad", cpu.GetJvmCpuLoad())
		f = appendRatio(f, "SystemCpuLoad", cpu.GetSystemCpuLoad())
	}
	f = transactionFields(f, s.GetTransaction())
	f = activeTraceFields(f, s.GetActiveTrace(), skipped)
	if rt := s.GetResponseTime(); rt != nil {
		f = appendCount(f, "ResponseTimeAvg", rt.GetAvg())
		f = appendCount(f, "ResponseTimeMax", rt.GetMax())
	}
	if fd := s.GetFileDescriptor(); fd != nil {
		f = appendCount(f, "OpenFileDescriptorCount", fd.GetOpenFileDescriptorCount())
	}
	f = directBufferFields(f, s.GetDirectBuffer())
	if th := s.GetTotalThread(); th != nil {
		f = appendCount(f, "TotalThreadCount", th.GetTotalThreadCount())
	}
	if lc := s.GetLoadedClass(); lc != nil {
		f = appendCount(f, "LoadedClassCount", lc.GetLoadedClassCount())
		f = appendCount(f, "UnloadedClassCount", lc.GetUnloadedClassCount())
	}
	if dl := s.GetDeadlock(); dl != nil {
		f = appendCount(f, "DeadlockCount", int64(dl.GetCount()))
	}
	return f
}

func gcFields(f []point.Field, gc *pb.PJvmGc) []point.Field {
	if gc == nil {
		return f
	}
	f = appendCount(f, "JvmMemoryHeapUsed", gc.GetJvmMemoryHeapUsed())
	f = appendCount(f, "JvmMemoryHeapMax", gc.GetJvmMemoryHeapMax())
	f = appendCount(f, "JvmMemoryNonHeapUsed", gc.GetJvmMemoryNonHeapUsed())
	f = appendCount(f, "JvmMemoryNonHeapMax", gc.GetJvmMemoryNonHeapMax())
	f = appendCount(f, "JvmGcOldCount", gc.GetJvmGcOldCount())
	f = appendCount(f, "JvmGcOldTime", gc.GetJvmGcOldTime())
	d := gc.GetJvmGcDetailed()
	if d == nil {
		return f
	}
	f = appendCount(f, "GcNewCount", d.GetJvmGcNewCount())
	f = appendCount(f, "GcNewTime", d.GetJvmGcNewTime())
	f = appendRatio(f, "PoolCodeCacheUsed", d.GetJvmPoolCodeCacheUsed())
	f = appendRatio(f, "PoolNewGenUsed", d.GetJvmPoolNewGenUsed())
	f = appendRatio(f, "PoolOldGenUsed", d.GetJvmPoolOldGenUsed())
	f = appendRatio(f, "PoolSurvivorSpaceUsed", d.GetJvmPoolSurvivorSpaceUsed())
	f = appendRatio(f, "PoolPermGenUsed", d.GetJvmPoolPermGenUsed())
	return appendRatio(f, "PoolMetaspaceUsed", d.GetJvmPoolMetaspaceUsed())
}

func transactionFields(f []point.Field, t *pb.PTransaction) []point.Field {
	if t == nil {
		return f
	}
	f = appendCount(f, "TransactionSampledNew", t.GetSampledNewCount())
	f = appendCount(f, "TransactionSampledContinuation", t.GetSampledContinuationCount())
	f = appendCount(f, "TransactionUnsampledNew", t.GetUnsampledNewCount())
	f = appendCount(f, "TransactionUnsampledContinuation", t.GetUnsampledContinuationCount())
	f = appendCount(f, "TransactionSkippedNew", t.GetSkippedNewCount())
	return appendCount(f, "TransactionSkippedContinuation", t.GetSkippedContinuationCount())
}

// activeTraceFieldNames are the four buckets in the order agents send them.
var activeTraceFieldNames = [4]string{"ActiveTraceFast", "ActiveTraceNormal", "ActiveTraceSlow", "ActiveTraceVerySlow"}

// activeTraceFields writes the 4 bucket counts. A histogram of any other length or with a
// negative count is malformed: its slots could not be named, so all four are left out.
func activeTraceFields(f []point.Field, at *pb.PActiveTrace, skipped *Skipped) []point.Field {
	h := at.GetHistogram()
	if h == nil {
		return f
	}
	counts := h.GetActiveTraceCount()
	if len(counts) != len(activeTraceFieldNames) {
		skipped.add(ActiveTraceHistogram)
		return f
	}
	for _, n := range counts {
		if n < 0 {
			skipped.add(ActiveTraceHistogram)
			return f
		}
	}
	for i, n := range counts {
		f = append(f, point.Int(activeTraceFieldNames[i], int64(n)))
	}
	return f
}

func directBufferFields(f []point.Field, b *pb.PDirectBuffer) []point.Field {
	if b == nil {
		return f
	}
	f = appendCount(f, "DirectCount", b.GetDirectCount())
	f = appendCount(f, "DirectMemoryUsed", b.GetDirectMemoryUsed())
	f = appendCount(f, "MappedCount", b.GetMappedCount())
	return appendCount(f, "MappedMemoryUsed", b.GetMappedMemoryUsed())
}

// appendCount appends an integer field (count, bytes or ms) unless v is negative: the Java
// agent sends -1 for "not collected" (file descriptors on Windows, direct buffers, GC
// counts of an unknown collector) and JMX reports an undefined memory max as -1
// (non-heap max on Java 8+). None of these is ever legitimately negative.
func appendCount(f []point.Field, key string, v int64) []point.Field {
	if v < 0 {
		return f
	}
	return append(f, point.Int(key, v))
}

// appendRatio appends a float field (usage ratio or CPU load) unless it is unavailable: the
// Java agent sends -1 for a pool the JVM does not have (PermGen on Java 8+, Metaspace
// before) and for CPU loads the OS does not report; JMX may also return NaN.
func appendRatio(f []point.Field, key string, v float64) []point.Field {
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return f
	}
	return append(f, point.Float(key, v))
}
