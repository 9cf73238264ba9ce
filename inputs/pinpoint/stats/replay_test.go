package stats

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/point"
)

// jvmFieldSources names, for every pinpoint_jvm field, where docs/SCHEMA.md says it comes
// from: a path of IDL field names in PAgentStat ("[i]" picks a repeated element). The
// replay test reads the recorded messages through protobuf reflection with these paths,
// independently of the converter's getters.
var jvmFieldSources = map[string]string{
	"CollectInterval":                  "collectInterval",
	"JvmMemoryHeapUsed":                "gc.jvmMemoryHeapUsed",
	"JvmMemoryHeapMax":                 "gc.jvmMemoryHeapMax",
	"JvmMemoryNonHeapUsed":             "gc.jvmMemoryNonHeapUsed",
	"JvmMemoryNonHeapMax":              "gc.jvmMemoryNonHeapMax",
	"JvmGcOldCount":                    "gc.jvmGcOldCount",
	"JvmGcOldTime":                     "gc.jvmGcOldTime",
	"GcNewCount":                       "gc.jvmGcDetailed.jvmGcNewCount",
	"GcNewTime":                        "gc.jvmGcDetailed.jvmGcNewTime",
	"PoolCodeCacheUsed":                "gc.jvmGcDetailed.jvmPoolCodeCacheUsed",
	"PoolNewGenUsed":                   "gc.jvmGcDetailed.jvmPoolNewGenUsed",
	"PoolOldGenUsed":                   "gc.jvmGcDetailed.jvmPoolOldGenUsed",
	"PoolSurvivorSpaceUsed":            "gc.jvmGcDetailed.jvmPoolSurvivorSpaceUsed",
	"PoolPermGenUsed":                  "gc.jvmGcDetailed.jvmPoolPermGenUsed",
	"PoolMetaspaceUsed":                "gc.jvmGcDetailed.jvmPoolMetaspaceUsed",
	"JvmCpuLoad":                       "cpuLoad.jvmCpuLoad",
	"SystemCpuLoad":                    "cpuLoad.systemCpuLoad",
	"TransactionSampledNew":            "transaction.sampledNewCount",
	"TransactionSampledContinuation":   "transaction.sampledContinuationCount",
	"TransactionUnsampledNew":          "transaction.unsampledNewCount",
	"TransactionUnsampledContinuation": "transaction.unsampledContinuationCount",
	"TransactionSkippedNew":            "transaction.skippedNewCount",
	"TransactionSkippedContinuation":   "transaction.skippedContinuationCount",
	"ActiveTraceFast":                  "activeTrace.histogram.activeTraceCount[0]",
	"ActiveTraceNormal":                "activeTrace.histogram.activeTraceCount[1]",
	"ActiveTraceSlow":                  "activeTrace.histogram.activeTraceCount[2]",
	"ActiveTraceVerySlow":              "activeTrace.histogram.activeTraceCount[3]",
	"ResponseTimeAvg":                  "responseTime.avg",
	"ResponseTimeMax":                  "responseTime.max",
	"OpenFileDescriptorCount":          "fileDescriptor.openFileDescriptorCount",
	"DirectCount":                      "directBuffer.directCount",
	"DirectMemoryUsed":                 "directBuffer.directMemoryUsed",
	"MappedCount":                      "directBuffer.mappedCount",
	"MappedMemoryUsed":                 "directBuffer.mappedMemoryUsed",
	"TotalThreadCount":                 "totalThread.totalThreadCount",
	"LoadedClassCount":                 "loadedClass.loadedClassCount",
	"UnloadedClassCount":               "loadedClass.unloadedClassCount",
	"DeadlockCount":                    "deadlock.count",
}

// sourceValue reads a path from m. present is false when a message on the way was not sent,
// or for collectInterval, the only plain scalar, when it is 0.
func sourceValue(t *testing.T, m protoreflect.Message, path string) (v protoreflect.Value, present bool) {
	t.Helper()
	parts := strings.Split(path, ".")
	for i, name := range parts {
		index := -1
		if open := strings.IndexByte(name, '['); open >= 0 {
			index, _ = strconv.Atoi(name[open+1 : len(name)-1])
			name = name[:open]
		}
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			t.Fatalf("%s: no field %q in %s", path, name, m.Descriptor().FullName())
		}
		last := i == len(parts)-1
		if !last {
			if !m.Has(fd) {
				return v, false
			}
			m = m.Get(fd).Message()
			continue
		}
		if index >= 0 {
			list := m.Get(fd).List()
			if index >= list.Len() {
				return v, false
			}
			return list.Get(index), true
		}
		return m.Get(fd), len(parts) > 1 || m.Has(fd)
	}
	return v, false
}

// checkJVMPoint compares every field of p with the sample it came from.
func checkJVMPoint(t *testing.T, p *point.Point, sample *pb.PAgentStat) {
	t.Helper()
	if want := sample.GetTimestamp() * int64(time.Millisecond); p.Time != want {
		t.Errorf("jvm point time %d, want %d", p.Time, want)
	}
	m := sample.ProtoReflect()
	for field, path := range jvmFieldSources {
		v, present := sourceValue(t, m, path)
		got, written := p.Field(field)
		if !present || isUnavailable(v) {
			if written {
				t.Errorf("%s written as %v, but %s was not sent or unavailable", field, got.Value(), path)
			}
			continue
		}
		if !written {
			t.Errorf("%s missing, %s = %v", field, path, v)
			continue
		}
		if !sameValue(got, v) {
			t.Errorf("%s = %v (%T), recorded %s = %v", field, got.Value(), got.Value(), path, v)
		}
	}
	for _, f := range p.Fields {
		if _, known := jvmFieldSources[f.Key]; !known {
			t.Errorf("unexpected field %s", f.Key)
		}
	}
}

func isUnavailable(v protoreflect.Value) bool {
	switch x := v.Interface().(type) {
	case int64:
		return x < 0
	case int32:
		return x < 0
	case float64:
		return x < 0
	}
	return false
}

// sameValue compares a field with a recorded value: integers as int fields, doubles as
// float fields (the schema's types).
func sameValue(f point.Field, v protoreflect.Value) bool {
	switch x := v.Interface().(type) {
	case int64:
		return f.Kind() == point.KindInt && f.IntValue() == x
	case int32:
		return f.Kind() == point.KindInt && f.IntValue() == int64(x)
	case float64:
		return f.Kind() == point.KindFloat && f.FloatValue() == x
	}
	return false
}

// checkURIPoint compares a pinpoint_uri point with the entry it came from.
func checkURIPoint(t *testing.T, p *point.Point, e *pb.PEachUriStat) (total, failed int64) {
	t.Helper()
	if uri, _ := p.Tag("uri"); uri != e.GetUri() {
		t.Errorf("uri tag %q, recorded %q", uri, e.GetUri())
	}
	if want := e.GetTimestamp() * int64(time.Millisecond); p.Time != want {
		t.Errorf("%s: time %d, want %d", e.GetUri(), p.Time, want)
	}
	for _, h := range []struct {
		countField, bucketPrefix string
		hist                     *pb.PUriHistogram
		sum                      *int64
	}{
		{"total_count", "bucket_", e.GetTotalHistogram(), &total},
		{"failed_count", "failed_bucket_", e.GetFailedHistogram(), &failed},
	} {
		bucketNames := []string{"lt_100ms", "100_300ms", "300_500ms", "500_1000ms", "1000_3000ms", "3000_5000ms", "5000_8000ms", "ge_8000ms"}
		recorded := h.hist.GetHistogram()
		for i, name := range bucketNames {
			var n int64 // an empty histogram (nothing failed) has no buckets: all 0
			if len(recorded) > 0 {
				n = int64(recorded[i])
			}
			*h.sum += n
			expectInt(t, p, h.bucketPrefix+name, n)
		}
		expectInt(t, p, h.countField, *h.sum)
	}
	expectInt(t, p, "total_elapsed_ms", e.GetTotalHistogram().GetTotal())
	expectInt(t, p, "max_ms", e.GetTotalHistogram().GetMax())
	expectInt(t, p, "failed_elapsed_ms", e.GetFailedHistogram().GetTotal())
	expectInt(t, p, "failed_max_ms", e.GetFailedHistogram().GetMax())
	return total, failed
}

func expectInt(t *testing.T, p *point.Point, key string, want int64) {
	t.Helper()
	f, ok := p.Field(key)
	if !ok || f.Kind() != point.KindInt || f.IntValue() != want {
		t.Errorf("%s: field %s = %v (present %v), want %di", p.Name, key, f.Value(), ok, want)
	}
}

// senderOf builds the sender of a call from its open event's headers, as the server does.
func senderOf(t *testing.T, headers map[string]string) meta.Sender {
	t.Helper()
	start, err := strconv.ParseInt(headers["starttime"], 10, 64)
	if err != nil {
		t.Fatalf("starttime header %q: %v", headers["starttime"], err)
	}
	serviceType := int64(-1)
	if s, ok := headers["servicetype"]; ok {
		if serviceType, err = strconv.ParseInt(s, 10, 32); err != nil {
			t.Fatalf("servicetype header %q: %v", s, err)
		}
	}
	return meta.Sender{
		AgentKey:        meta.AgentKey{AgentID: headers["agentid"], StartTime: start},
		AgentName:       headers["agentname"],
		ApplicationName: headers["applicationname"],
		ServiceType:     int32(serviceType),
	}
}

// replayTotals are what one recording produced.
type replayTotals struct {
	jvmPoints, uriPoints, samples, uriEntries int64
	totalCount, failedCount                   int64
}

// TestReplayRecordings converts every stat message of the recordings, attributed to the
// sender of its stream, after storing the agent infos the recording holds (they arrive
// first), and checks the points against the messages and the manifests.
func TestReplayRecordings(t *testing.T) {
	recs, err := replay.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		t.Run(rec.Name, func(t *testing.T) {
			got := replayRecording(t, rec)
			m := rec.Manifest
			if got.samples != m.Int("messages.PAgentStat_entries_in_batches") || got.jvmPoints != got.samples {
				t.Errorf("%d pinpoint_jvm points from %d samples, manifest says %d samples",
					got.jvmPoints, got.samples, m.Int("messages.PAgentStat_entries_in_batches"))
			}
			if got.uriPoints != m.Int("messages.PEachUriStat_entries") || got.uriEntries != got.uriPoints {
				t.Errorf("%d pinpoint_uri points from %d entries, manifest says %d entries",
					got.uriPoints, got.uriEntries, m.Int("messages.PEachUriStat_entries"))
			}
			if got.totalCount != m.Int("messages.PEachUriStat_total_count") {
				t.Errorf("sum of total_count %d, manifest %d", got.totalCount, m.Int("messages.PEachUriStat_total_count"))
			}
			if got.failedCount != m.Int("messages.PEachUriStat_failed_count") {
				t.Errorf("sum of failed_count %d, manifest %d", got.failedCount, m.Int("messages.PEachUriStat_failed_count"))
			}
			if got.jvmPoints == 0 || got.uriPoints == 0 {
				t.Error("the recording produced no points: the test would prove nothing")
			}
		})
	}
}

func replayRecording(t *testing.T, rec *replay.Recording) replayTotals {
	store := newMemoryStore(t)
	c := NewConverter(store, nil)
	senders := map[string]meta.Sender{} // stream -> sender
	var totals replayTotals
	for _, ev := range rec.Events {
		switch {
		case ev.Event == "open":
			senders[ev.Stream] = senderOf(t, ev.Headers)
		case ev.Event == "msg" && ev.Method == "/v1.Agent/RequestAgentInfo":
			info := &pb.PAgentInfo{}
			decode(t, ev, info)
			if err := store.PutAgent(senders[ev.Stream], info); err != nil {
				t.Fatal(err)
			}
		case ev.Event == "msg" && ev.Method == "/v1.Stat/SendAgentStat":
			msg := &pb.PStatMessage{}
			decode(t, ev, msg)
			sender := senders[ev.Stream]
			pts, skipped := c.Stat(&sender, msg)
			assertNothingSkipped(t, skipped)
			checkReplayedPoints(t, store, sender, msg, pts, &totals)
		}
	}
	return totals
}

func decode(t *testing.T, ev replay.Event, m proto.Message) {
	t.Helper()
	raw, err := ev.Bytes()
	if err != nil {
		t.Fatalf("seq %d: %v", ev.Seq, err)
	}
	if err := proto.Unmarshal(raw, m); err != nil {
		t.Fatalf("seq %d: %v", ev.Seq, err)
	}
}

// checkReplayedPoints matches the points of one message with its samples or URI entries,
// in order, and checks the tags that come from the stored agent info.
func checkReplayedPoints(t *testing.T, store *meta.Store, sender meta.Sender, msg *pb.PStatMessage, pts []*point.Point, totals *replayTotals) {
	t.Helper()
	rec, ok := store.Agent(sender.AgentKey)
	if !ok {
		t.Fatalf("%s: stats before agent info", sender.AgentKey)
	}
	for _, p := range pts {
		if err := p.Validate(); err != nil {
			t.Errorf("invalid point: %v", err)
		}
		expectTag(t, p, "agent_id", sender.AgentID)
		expectTag(t, p, "service", sender.ApplicationName)
		expectTag(t, p, "host", rec.Info.GetHostname())
		if p.Name == MeasurementJVM {
			expectTag(t, p, "hostname", rec.Info.GetHostname())
			expectTag(t, p, "ip", rec.Info.GetIp())
			expectTag(t, p, "pid", strconv.Itoa(int(rec.Info.GetPid())))
			expectTag(t, p, "agentVersion", rec.Info.GetAgentVersion())
			expectTag(t, p, "jvm_gc_type", "CMS")
		}
	}
	samples := msg.GetAgentStatBatch().GetAgentStat()
	entries := msg.GetAgentUriStat().GetEachUriStat()
	totals.samples += int64(len(samples))
	totals.uriEntries += int64(len(entries))
	if len(pts) != len(samples)+len(entries) {
		t.Fatalf("%d points from %d samples and %d URI entries", len(pts), len(samples), len(entries))
	}
	for i, s := range samples {
		if pts[i].Name != MeasurementJVM {
			t.Fatalf("point %d is %s", i, pts[i].Name)
		}
		checkJVMPoint(t, pts[i], s)
		totals.jvmPoints++
	}
	for i, e := range entries {
		if pts[i].Name != MeasurementURI {
			t.Fatalf("point %d is %s", i, pts[i].Name)
		}
		total, failed := checkURIPoint(t, pts[i], e)
		totals.totalCount += total
		totals.failedCount += failed
		totals.uriPoints++
	}
}

func expectTag(t *testing.T, p *point.Point, key, want string) {
	t.Helper()
	if got, _ := p.Tag(key); got != want || want == "" {
		t.Errorf("%s: tag %s = %q, want %q", p.Name, key, got, want)
	}
}
