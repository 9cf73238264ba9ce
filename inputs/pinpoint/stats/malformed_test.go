package stats

import (
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// skipCase is a message that must be (partly) skipped: the points that remain and the
// reason counted.
type skipCase struct {
	name   string
	msg    *pb.PStatMessage
	want   string // expected remaining points, hand-written line protocol
	reason Reason
	count  int
}

func runSkipCases(t *testing.T, cases []skipCase) {
	t.Helper()
	c := NewConverter(nil, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pts, skipped := c.Stat(goSender, tc.msg)
			if skipped.Of(tc.reason) != tc.count || skipped.Total() != tc.count {
				t.Errorf("skipped %q, want %s=%d only", skipped, tc.reason, tc.count)
			}
			assertLines(t, pts, tc.want)
		})
	}
}

// unknownOneof is a PStatMessage holding only field 9, as a newer agent's new oneof member
// would look to this IDL version.
func unknownOneof(t *testing.T) *pb.PStatMessage {
	raw := protowire.AppendTag(nil, 9, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte{0x08, 0x01})
	msg := &pb.PStatMessage{}
	if err := proto.Unmarshal(raw, msg); err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestUnknownContent(t *testing.T) {
	profiler := &pb.PStatMessage{Field: &pb.PStatMessage_ProfilerMetric{ProfilerMetric: &pb.PProfilerMetric{
		Timestamp: 1795417166973, Name: "network",
		Fields: []*pb.PProfilerMetricField{{Name: "rx", Value: &pb.PProfilerMetricField_LongValue{LongValue: 1}}},
	}}}
	runSkipCases(t, []skipCase{
		{name: "no oneof", msg: &pb.PStatMessage{}, reason: UnknownMessage, count: 1},
		{name: "nil message", msg: nil, reason: UnknownMessage, count: 1},
		{name: "newer oneof field", msg: unknownOneof(t), reason: UnknownMessage, count: 1},
		{name: "profiler metric", msg: profiler, reason: ProfilerMetric, count: 1},
		{name: "nil batch", msg: &pb.PStatMessage{Field: &pb.PStatMessage_AgentStatBatch{}}, reason: 0, count: 0},
		{name: "nil single stat", msg: &pb.PStatMessage{Field: &pb.PStatMessage_AgentStat{}}, reason: NilEntry, count: 1},
		{name: "nil uri stat", msg: &pb.PStatMessage{Field: &pb.PStatMessage_AgentUriStat{}}, reason: 0, count: 0},
	})
}

func TestMalformedSamples(t *testing.T) {
	histogram := func(counts ...int32) *pb.PActiveTrace {
		return &pb.PActiveTrace{Histogram: &pb.PActiveTraceHistogram{HistogramSchemaType: 2, ActiveTraceCount: counts}}
	}
	sample := func(ts int64, at *pb.PActiveTrace) *pb.PAgentStat {
		return &pb.PAgentStat{Timestamp: ts, ActiveTrace: at, TotalThread: &pb.PTotalThread{TotalThreadCount: 8}}
	}
	const kept = `pinpoint_jvm,agent_id=backend-01,agent_name=backend-01,service=backend TotalThreadCount=8i 1795417166973000000`
	runSkipCases(t, []skipCase{
		// The histogram is dropped, the rest of the sample is kept.
		{name: "3 active counts", msg: batchMessage(sample(1795417166973, histogram(1, 2, 3))), want: kept, reason: ActiveTraceHistogram, count: 1},
		{name: "5 active counts", msg: batchMessage(sample(1795417166973, histogram(1, 2, 3, 4, 5))), want: kept, reason: ActiveTraceHistogram, count: 1},
		{name: "no active counts", msg: batchMessage(sample(1795417166973, histogram())), want: kept, reason: ActiveTraceHistogram, count: 1},
		{name: "negative active count", msg: batchMessage(sample(1795417166973, histogram(1, -2, 3, 4))), want: kept, reason: ActiveTraceHistogram, count: 1},
		// An activeTrace without histogram is "not sent", not malformed.
		{name: "active trace without histogram", msg: batchMessage(sample(1795417166973, &pb.PActiveTrace{})), want: kept},
		{name: "zero timestamp", msg: batchMessage(sample(0, nil), sample(1795417166973, nil)), want: kept, reason: BadTimestamp, count: 1},
		{name: "negative timestamp", msg: batchMessage(sample(-5, nil), sample(1795417166973, nil)), want: kept, reason: BadTimestamp, count: 1},
		{name: "timestamp beyond 2262", msg: batchMessage(sample(math.MaxInt64/1000, nil), sample(1795417166973, nil)), want: kept, reason: BadTimestamp, count: 1},
		{name: "nil sample", msg: batchMessage(nil, sample(1795417166973, nil)), want: kept, reason: NilEntry, count: 1},
		{name: "sample without values", msg: batchMessage(&pb.PAgentStat{Timestamp: 1795417166973}, sample(1795417166973, nil)), want: kept, reason: NoValues, count: 1},
		{name: "sample with only unavailable values", msg: batchMessage(&pb.PAgentStat{Timestamp: 1795417166973,
			CpuLoad: &pb.PCpuLoad{JvmCpuLoad: -1, SystemCpuLoad: math.NaN()}, FileDescriptor: &pb.PFileDescriptor{OpenFileDescriptorCount: -1}}),
			reason: NoValues, count: 1},
		{name: "nil data source", msg: batchMessage(&pb.PAgentStat{Timestamp: 1795417166973,
			TotalThread: &pb.PTotalThread{TotalThreadCount: 8}, DataSourceList: &pb.PDataSourceList{DataSource: []*pb.PDataSource{nil}}}),
			want: kept, reason: NilEntry, count: 1},
		{name: "data source without sizes", msg: batchMessage(&pb.PAgentStat{Timestamp: 1795417166973,
			TotalThread:    &pb.PTotalThread{TotalThreadCount: 8},
			DataSourceList: &pb.PDataSourceList{DataSource: []*pb.PDataSource{{ActiveConnectionSize: -1, MaxConnectionSize: -1}}}}),
			want: kept, reason: NoValues, count: 1},
	})
}

// Loads that are negative, NaN or infinite are "not available": absent, and not counted as
// skipped (they are what real JVMs report, not broken messages).
func TestUnavailableLoads(t *testing.T) {
	pts, skipped := NewConverter(nil, nil).Stat(goSender, batchMessage(
		&pb.PAgentStat{Timestamp: 1795417166973, CpuLoad: &pb.PCpuLoad{JvmCpuLoad: math.Inf(1), SystemCpuLoad: 0.25}},
		&pb.PAgentStat{Timestamp: 1795417171973, CpuLoad: &pb.PCpuLoad{JvmCpuLoad: 0.5, SystemCpuLoad: -0.0001}},
		&pb.PAgentStat{Timestamp: 1795417176973, CpuLoad: &pb.PCpuLoad{JvmCpuLoad: math.NaN(), SystemCpuLoad: 1}},
	))
	assertNothingSkipped(t, skipped)
	assertLines(t, pts, `
pinpoint_jvm,agent_id=backend-01,agent_name=backend-01,service=backend SystemCpuLoad=0.25 1795417166973000000
pinpoint_jvm,agent_id=backend-01,agent_name=backend-01,service=backend JvmCpuLoad=0.5 1795417171973000000
pinpoint_jvm,agent_id=backend-01,agent_name=backend-01,service=backend SystemCpuLoad=1 1795417176973000000
`)
}

func TestMalformedURIStats(t *testing.T) {
	good := func() *pb.PEachUriStat {
		return &pb.PEachUriStat{Uri: "/ok", Timestamp: 1795417140000,
			TotalHistogram:  &pb.PUriHistogram{Total: 5, Max: 5, Histogram: buckets(1, 0, 0, 0, 0, 0, 0, 0)},
			FailedHistogram: &pb.PUriHistogram{}}
	}
	with := func(change func(e *pb.PEachUriStat)) *pb.PEachUriStat {
		e := good()
		change(e)
		return e
	}
	const kept = `pinpoint_uri,agent_id=backend-01,agent_name=backend-01,service=backend,uri=/ok total_count=1i,failed_count=0i,total_elapsed_ms=5i,max_ms=5i,failed_elapsed_ms=0i,failed_max_ms=0i,bucket_lt_100ms=1i,bucket_100_300ms=0i,bucket_300_500ms=0i,bucket_500_1000ms=0i,bucket_1000_3000ms=0i,bucket_3000_5000ms=0i,bucket_5000_8000ms=0i,bucket_ge_8000ms=0i,failed_bucket_lt_100ms=0i,failed_bucket_100_300ms=0i,failed_bucket_300_500ms=0i,failed_bucket_500_1000ms=0i,failed_bucket_1000_3000ms=0i,failed_bucket_3000_5000ms=0i,failed_bucket_5000_8000ms=0i,failed_bucket_ge_8000ms=0i 1795417140000000000`
	runSkipCases(t, []skipCase{
		{name: "no histograms", msg: uriMessage(with(func(e *pb.PEachUriStat) { e.TotalHistogram, e.FailedHistogram = nil, nil }), good()),
			want: kept, reason: URIHistogram, count: 1},
		{name: "7 buckets", msg: uriMessage(with(func(e *pb.PEachUriStat) { e.TotalHistogram.Histogram = buckets(1, 0, 0, 0, 0, 0, 0) }), good()),
			want: kept, reason: URIHistogram, count: 1},
		{name: "9 failed buckets", msg: uriMessage(with(func(e *pb.PEachUriStat) {
			e.FailedHistogram.Histogram = buckets(1, 0, 0, 0, 0, 0, 0, 0, 0)
		}), good()), want: kept, reason: URIHistogram, count: 1},
		{name: "negative bucket", msg: uriMessage(with(func(e *pb.PEachUriStat) { e.TotalHistogram.Histogram[3] = -1 }), good()),
			want: kept, reason: URIHistogram, count: 1},
		{name: "negative elapsed", msg: uriMessage(with(func(e *pb.PEachUriStat) { e.FailedHistogram.Total = -1 }), good()),
			want: kept, reason: URIHistogram, count: 1},
		{name: "empty uri", msg: uriMessage(with(func(e *pb.PEachUriStat) { e.Uri = "" }), good()),
			want: kept, reason: NoURI, count: 1},
		{name: "uri of control characters", msg: uriMessage(with(func(e *pb.PEachUriStat) { e.Uri = "\n\t" }), good()),
			want: kept, reason: NoURI, count: 1},
		{name: "zero window", msg: uriMessage(with(func(e *pb.PEachUriStat) { e.Timestamp = 0 }), good()),
			want: kept, reason: BadTimestamp, count: 1},
		{name: "nil entry", msg: uriMessage(nil, good()), want: kept, reason: NilEntry, count: 1},
	})
}

func TestSkippedCounts(t *testing.T) {
	var s Skipped
	if s.Total() != 0 || s.String() != "" {
		t.Fatalf("zero Skipped = %d %q", s.Total(), s)
	}
	s.add(URIHistogram)
	s.add(URIHistogram)
	s.add(UnknownMessage)
	if s.Total() != 3 || s.Of(URIHistogram) != 2 || s.Of(NoURI) != 0 || s.Of(Reason(200)) != 0 {
		t.Errorf("counts wrong: %s", s)
	}
	if got := s.String(); got != "unknown_message=1 uri_histogram=2" {
		t.Errorf("String() = %q", got)
	}
	seen := map[string]int{}
	s.Each(func(r Reason, n int) { seen[r.String()] = n })
	if len(seen) != 2 || seen["uri_histogram"] != 2 || seen["unknown_message"] != 1 {
		t.Errorf("Each reported %v", seen)
	}
	for r := Reason(0); r < numReasons; r++ {
		if reasonNames[r] == "" {
			t.Errorf("reason %d has no name", r)
		}
	}
}

// A nil sender (a caller bug) must not panic: the points just lack the agent tags.
func TestNilSender(t *testing.T) {
	pts, _ := NewConverter(newMemoryStore(t), nil).Stat(nil, batchMessage(goSamples()[0]))
	if len(pts) != 1 {
		t.Fatalf("got %d points", len(pts))
	}
	if _, ok := pts[0].Tag("agent_id"); ok {
		t.Error("agent_id tag without a sender")
	}
}
