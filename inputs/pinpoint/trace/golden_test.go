package trace

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/servicetype"
	"github.com/apmkit/apmkit/point"
)

// Golden tests: hand-built messages in, line protocol out, compared with
// testdata/<case>.lp. Each emit call is one block headed "# emit N". The expected files
// were checked line by line against values computed apart from this code (the ids with
// an independent implementation of h); -update rewrites them, and every diff it makes
// must be read before it is kept.
var update = flag.Bool("update", false, "rewrite testdata/*.lp from the current output")

// Epoch ms every golden case starts from.
const t0 = 1700000001000

var (
	javaA = &meta.Sender{AgentKey: meta.AgentKey{AgentID: "java-a", StartTime: 1700000000000},
		AgentName: "java-a-pod", ApplicationName: "shop", ServiceType: 1010}
	goB = &meta.Sender{AgentKey: meta.AgentKey{AgentID: "go-b", StartTime: 1700000000500},
		AgentName: "go-b", ApplicationName: "stock", ServiceType: 1800}
)

// goldenHarness is a harness with the metadata every golden case may use.
func goldenHarness(t *testing.T, tune ...func(*Options)) *harness {
	t.Helper()
	tune = append([]func(*Options){func(o *Options) { o.DelMessage = true }}, tune...)
	h := newHarness(t, tune...)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.meta.PutAgent(*javaA, &pb.PAgentInfo{Hostname: "shop-host-1", ServiceType: 1010}))
	for id, info := range map[int32]string{
		1: "Tomcat Servlet Process",
		2: "com.example.DemoController.demo2(java.lang.String)",
		3: "com.example.Repo.find(long id)",
		4: "org.apache.http.impl.client.CloseableHttpClient.execute(org.apache.http.client.methods.HttpUriRequest request)",
	} {
		must(h.meta.PutAPI(javaA.AgentKey, &pb.PApiMetaData{ApiId: id, ApiInfo: info}))
	}
	must(h.meta.PutSQL(javaA.AgentKey, &pb.PSqlMetaData{SqlId: 1, Sql: "SELECT * FROM item WHERE id = ?"}))
	must(h.meta.PutSQLUID(javaA.AgentKey, &pb.PSqlUidMetaData{SqlUid: []byte{0xab, 0xcd}, Sql: "UPDATE item SET n = ? WHERE id = ?"}))
	must(h.meta.PutString(javaA.AgentKey, &pb.PStringMetaData{StringId: 1, StringValue: "java.lang.IllegalStateException"}))
	must(h.meta.PutString(javaA.AgentKey, &pb.PStringMetaData{StringId: 2, StringValue: "cached-value"}))
	for id, info := range map[int32]string{1: "HTTP Server", 2: "main.handler()", 3: "Goroutine Invocation", 4: "main.worker()"} {
		must(h.meta.PutAPI(goB.AgentKey, &pb.PApiMetaData{ApiId: id, ApiInfo: info}))
	}
	return h
}

// checkGolden renders what the sink received and compares it with testdata/name.lp.
func checkGolden(t *testing.T, h *harness, name string) {
	t.Helper()
	var buf bytes.Buffer
	h.sink.mu.Lock()
	spans := h.sink.spans
	h.sink.mu.Unlock()
	for i, sp := range spans {
		buf.WriteString("# emit " + strconv.Itoa(i+1) + "\n")
		lines := sp.AppendLines(nil)
		// The span's own encoder must write what line-protocol/v2 writes for its points.
		var ref []byte
		for _, p := range sp.Points() {
			line, err := point.AppendLine(nil, p)
			if err != nil {
				t.Fatalf("invalid point: %v", err)
			}
			ref = append(ref, line...)
		}
		if !bytes.Equal(lines, ref) {
			t.Fatalf("span encoder differs from line-protocol/v2:\n%s\n%s", lines, ref)
		}
		buf.Write(lines)
	}
	path := filepath.Join("testdata", name+".lp")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", path, buf.Bytes(), want)
	}
}

func ev(seq, depth, startElapsed, endElapsed, serviceType, apiID int32) *pb.PSpanEvent {
	return &pb.PSpanEvent{Sequence: seq, Depth: depth, StartElapsed: startElapsed, EndElapsed: endElapsed, ServiceType: serviceType, ApiId: apiID}
}

func txID(agent string, start, seq int64) *pb.PTransactionId {
	return &pb.PTransactionId{AgentId: agent, AgentStartTime: start, Sequence: seq}
}

func strAnn(key int32, v string) *pb.PAnnotation {
	return &pb.PAnnotation{Key: key, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_StringValue{StringValue: v}}}
}

func intAnn(key, v int32) *pb.PAnnotation {
	return &pb.PAnnotation{Key: key, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_IntValue{IntValue: v}}}
}

func nextEvent(spanID int64, endPoint, destination string) *pb.PNextEvent {
	return &pb.PNextEvent{Field: &pb.PNextEvent_MessageEvent{MessageEvent: &pb.PMessageEvent{
		NextSpanId: spanID, EndPoint: endPoint, DestinationId: destination}}}
}

// shopSpan is a root span of java-a with the given events.
func shopSpan(spanID int64, seq int64, elapsed int32, events ...*pb.PSpanEvent) *pb.PSpan {
	return &pb.PSpan{
		Version: 1, TransactionId: txID("", 1700000000000, seq), SpanId: spanID, ParentSpanId: -1,
		StartTime: t0, Elapsed: elapsed, ApiId: 1, ServiceType: 1010,
		AcceptEvent: &pb.PAcceptEvent{Rpc: "/items", EndPoint: "shop:8080", RemoteAddr: "10.0.0.9"},
		Annotation:  []*pb.PAnnotation{intAnn(46, 200), strAnn(50, "GET")},
		SpanEvent:   events,
	}
}

func TestGoldenDepthZeroSiblings(t *testing.T) {
	h := goldenHarness(t)
	h.span(javaA, shopSpan(1001, 1, 50,
		ev(0, 1, 0, 50, 5051, 2),
		ev(1, 2, 1, 10, 5000, 3),
		ev(2, 0, 10, 10, 5000, 3), // same depth as seq 1: a sibling
		ev(3, 0, 10, 10, 5000, 3),
		ev(4, 3, 1, 5, 5000, 3), // under seq 3
		ev(5, 1, 20, 2, 5000, 3),
		ev(6, 0, 1, 1, 5000, 3),
	))
	checkGolden(t, h, "depth_zero_siblings")
}

func TestGoldenLongDeltaList(t *testing.T) {
	h := goldenHarness(t)
	span := &pb.PSpan{
		Version: 1, TransactionId: txID("go-b", 1700000000500, 2), SpanId: 1101, ParentSpanId: -1,
		StartTime: t0, Elapsed: 200, ApiId: 1, ServiceType: 1800,
		AcceptEvent: &pb.PAcceptEvent{Rpc: "/batch"},
	}
	for i := range int32(25) {
		depth := int32(0)
		if i == 0 {
			depth = 1
		}
		span.SpanEvent = append(span.SpanEvent, ev(i, depth, i%4, 2, 1801, 2))
	}
	h.span(goB, span)
	checkGolden(t, h, "long_delta_list")
}

// chunkThenSpanMessages is a span whose first events went out as a sync chunk.
func chunkThenSpanMessages() (*pb.PSpanChunk, *pb.PSpan) {
	chunk := &pb.PSpanChunk{
		Version: 1, TransactionId: txID("java-a", 1700000000000, 3), SpanId: 1201, KeyTime: t0 + 2,
		SpanEvent: []*pb.PSpanEvent{
			ev(1, 2, 0, 3, 5000, 3),
			ev(2, 0, 4, 3, 5000, 3),
			ev(3, 3, 1, 1, 5000, 3),
		},
	}
	span := shopSpan(1201, 3, 20, ev(0, 1, 0, 20, 5051, 2), ev(4, 2, 15, 2, 5000, 3))
	return chunk, span
}

func TestGoldenSyncChunkBeforeSpan(t *testing.T) {
	h := goldenHarness(t)
	chunk, span := chunkThenSpanMessages()
	h.chunk(javaA, chunk)
	if n := h.sink.numBatches(); n != 0 {
		t.Fatalf("chunk emitted before its span: %d batches", n)
	}
	h.span(javaA, span)
	checkGolden(t, h, "sync_chunk_before_span")
}

func TestGoldenSyncChunkAfterSpan(t *testing.T) {
	h := goldenHarness(t)
	chunk, span := chunkThenSpanMessages()
	h.span(javaA, span)
	h.chunk(javaA, chunk)
	if st := h.asm.Stats(); st.LateChunks != 1 || st.PartialSpans != 0 {
		t.Errorf("stats %+v", st)
	}
	checkGolden(t, h, "sync_chunk_after_span")
}

func TestGoldenChunkWithoutSpan(t *testing.T) {
	h := goldenHarness(t)
	h.chunk(javaA, &pb.PSpanChunk{
		Version: 1, TransactionId: txID("java-a", 1700000000000, 4), SpanId: 1301, KeyTime: t0 + 5,
		SpanEvent: []*pb.PSpanEvent{
			ev(5, 2, 0, 4, 5000, 3), // its parent is in the span that never comes
			ev(6, 3, 1, 1, 5000, 3),
			ev(7, 0, 1, 1, 5000, 3),
			ev(9, 3, 2, 1, 5000, 3), // seq 8 is missing: its parent cannot be known
		},
	})
	h.clock.Advance(DefaultChunkWait - time.Millisecond)
	h.due()
	if n := h.sink.numBatches(); n != 0 {
		t.Fatalf("partial emitted before ChunkWait: %d batches", n)
	}
	h.clock.Advance(time.Millisecond)
	h.due()
	if st := h.asm.Stats(); st.PartialSpans != 1 || st.PendingSpans != 0 {
		t.Errorf("stats %+v", st)
	}
	checkGolden(t, h, "chunk_without_span")
}

func TestGoldenAsyncBeforeAndAfterSpan(t *testing.T) {
	h := goldenHarness(t)
	tx := txID("go-b", 1700000000500, 5)
	h.chunk(goB, &pb.PSpanChunk{
		Version: 1, TransactionId: tx, SpanId: 2001, KeyTime: t0 + 3,
		LocalAsyncId: &pb.PLocalAsyncId{AsyncId: 1, Sequence: 1},
		SpanEvent:    []*pb.PSpanEvent{ev(0, 1, 0, 10, 100, 3), ev(1, 2, 1, 5, 1801, 4)},
	})
	spawn1, spawn2 := ev(0, 1, 1, 4, 1801, 2), ev(1, 0, 1, 2, 1801, 2)
	spawn1.AsyncEvent, spawn2.AsyncEvent = 1, 2
	h.span(goB, &pb.PSpan{
		Version: 1, TransactionId: tx, SpanId: 2001, ParentSpanId: -1, StartTime: t0, Elapsed: 6,
		ApiId: 1, ServiceType: 1800, AcceptEvent: &pb.PAcceptEvent{Rpc: "/async"},
		SpanEvent: []*pb.PSpanEvent{spawn1, spawn2},
	})
	h.chunk(goB, &pb.PSpanChunk{
		Version: 1, TransactionId: tx, SpanId: 2001, KeyTime: t0 + 2,
		LocalAsyncId: &pb.PLocalAsyncId{AsyncId: 2, Sequence: 1},
		SpanEvent:    []*pb.PSpanEvent{ev(0, 1, 0, 30, 100, 3)},
	})
	checkGolden(t, h, "async_before_and_after_span")
}

func TestGoldenNestedAsync(t *testing.T) {
	h := goldenHarness(t)
	tx := txID("go-b", 1700000000500, 6)
	spawn := ev(0, 1, 0, 3, 1801, 2)
	spawn.AsyncEvent = 5
	h.span(goB, &pb.PSpan{
		Version: 1, TransactionId: tx, SpanId: 2101, ParentSpanId: -1, StartTime: t0, Elapsed: 3,
		ApiId: 1, ServiceType: 1800, SpanEvent: []*pb.PSpanEvent{spawn},
	})
	inner := ev(1, 2, 1, 8, 1801, 4)
	inner.AsyncEvent = 6
	h.chunk(goB, &pb.PSpanChunk{
		Version: 1, TransactionId: tx, SpanId: 2101, KeyTime: t0 + 1,
		LocalAsyncId: &pb.PLocalAsyncId{AsyncId: 5, Sequence: 1},
		SpanEvent:    []*pb.PSpanEvent{ev(0, 1, 0, 10, 100, 3), inner},
	})
	h.chunk(goB, &pb.PSpanChunk{
		Version: 1, TransactionId: tx, SpanId: 2101, KeyTime: t0 + 3,
		LocalAsyncId: &pb.PLocalAsyncId{AsyncId: 6, Sequence: 1},
		SpanEvent:    []*pb.PSpanEvent{ev(0, 1, 0, 20, 100, 3), ev(1, 2, 2, 15, 1801, 4)},
	})
	checkGolden(t, h, "nested_async")
}

func TestGoldenTwoAgents(t *testing.T) {
	h := goldenHarness(t)
	call := ev(1, 2, 2, 12, 9052, 4)
	call.NextEvent = nextEvent(3002, "stock:8080", "stock:8080")
	call.Annotation = []*pb.PAnnotation{strAnn(40, "http://stock:8080/reserve?item=7"), intAnn(46, 200)}
	h.span(javaA, shopSpan(3001, 8, 20, ev(0, 1, 0, 20, 5051, 2), call))
	h.span(goB, &pb.PSpan{
		Version: 1, TransactionId: txID("java-a", 1700000000000, 8), SpanId: 3002, ParentSpanId: 3001,
		StartTime: t0 + 3, Elapsed: 10, ApiId: 1, ServiceType: 1800,
		AcceptEvent: &pb.PAcceptEvent{Rpc: "/reserve", EndPoint: "stock:8080", RemoteAddr: "10.0.0.1",
			ParentInfo: &pb.PParentInfo{ParentApplicationName: "shop", ParentApplicationType: 1010, AcceptorHost: "stock:8080"}},
		Annotation: []*pb.PAnnotation{intAnn(46, 200)},
		SpanEvent:  []*pb.PSpanEvent{ev(0, 1, 1, 8, 1801, 2)},
	})
	checkGolden(t, h, "two_agents")
}

func TestGoldenMetadataArrivesLater(t *testing.T) {
	h := goldenHarness(t)
	lateC := &meta.Sender{AgentKey: meta.AgentKey{AgentID: "late-c", StartTime: 1700000000900},
		AgentName: "late-c", ApplicationName: "mail", ServiceType: 1800}
	h.span(lateC, &pb.PSpan{
		Version: 1, TransactionId: txID("late-c", 1700000000900, 1), SpanId: 4001, ParentSpanId: -1,
		StartTime: t0, Elapsed: 4, ApiId: 1, ServiceType: 1800, AcceptEvent: &pb.PAcceptEvent{Rpc: "/send"},
		SpanEvent: []*pb.PSpanEvent{ev(0, 1, 0, 4, 1801, 2)},
	})
	if st := h.asm.Stats(); st.Held != 1 || h.sink.numBatches() != 0 {
		t.Fatalf("span with unknown names not held: %+v", st)
	}
	h.clock.Advance(time.Second)
	h.due()
	if h.sink.numBatches() != 0 {
		t.Fatal("emitted before its metadata arrived or its wait ran out")
	}
	// The metadata store calls MetadataArrived; the next wake-up emits the span resolved.
	for id, info := range map[int32]string{1: "HTTP Server", 2: "main.send()"} {
		if err := h.meta.PutAPI(lateC.AgentKey, &pb.PApiMetaData{ApiId: id, ApiInfo: info}); err != nil {
			t.Fatal(err)
		}
	}
	h.due()
	if st := h.asm.Stats(); st.Held != 0 || st.HeldForMetadata != 1 || st.Unresolved["api"] != 0 {
		t.Errorf("stats %+v", st)
	}
	checkGolden(t, h, "metadata_arrives_later")
}

func TestGoldenUnresolvedPlaceholders(t *testing.T) {
	h := goldenHarness(t)
	ghost := &meta.Sender{AgentKey: meta.AgentKey{AgentID: "ghost", StartTime: 1700000000001},
		AgentName: "ghost", ApplicationName: "ghost", ServiceType: 1010}
	sqlEv := ev(0, 1, 0, 3, 2101, 9)
	sqlEv.Annotation = []*pb.PAnnotation{{Key: 20, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_IntStringStringValue{
		IntStringStringValue: &pb.PIntStringStringValue{IntValue: 45, StringValue2: wrapperspb.String("1")}}}},
		{Key: -52, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_LongValue{LongValue: 99}}}}
	sqlEv.ExceptionInfo = &pb.PIntStringValue{IntValue: 7, StringValue: wrapperspb.String("bad sql")}
	h.span(ghost, &pb.PSpan{
		Version: 1, TransactionId: txID("ghost", 1700000000001, 1), SpanId: 4101, ParentSpanId: -1,
		StartTime: t0, Elapsed: 5, ApiId: 123, ServiceType: 1010, SpanEvent: []*pb.PSpanEvent{sqlEv},
	})
	h.clock.Advance(DefaultMetadataWait)
	h.due()
	st := h.asm.Stats()
	for kind, want := range map[string]uint64{"api": 2, "sql": 1, "string": 1, "exception": 1} {
		if st.Unresolved[kind] != want {
			t.Errorf("unresolved %s = %d, want %d", kind, st.Unresolved[kind], want)
		}
	}
	checkGolden(t, h, "unresolved_placeholders")
}

func TestGoldenExceptionChain(t *testing.T) {
	h := goldenHarness(t)
	err := h.meta.PutExceptions(javaA.AgentKey, &pb.PExceptionMetaData{Exceptions: []*pb.PException{
		{ExceptionClassName: "java.lang.IllegalStateException", ExceptionMessage: "inner boom", ExceptionId: 77, ExceptionDepth: 0,
			StackTraceElement: []*pb.PStackTraceElement{
				{ClassName: "com.example.Repo", MethodName: "find", FileName: "Repo.java", LineNumber: 42},
				{ClassName: "com.example.DemoController", MethodName: "demo2", FileName: "DemoController.java", LineNumber: 17},
			}},
		{ExceptionClassName: "java.io.IOException", ExceptionMessage: "disk", ExceptionId: 77, ExceptionDepth: 1,
			StackTraceElement: []*pb.PStackTraceElement{{ClassName: "java.io.FileInputStream", MethodName: "read", FileName: "FileInputStream.java", LineNumber: 9}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	failing := ev(1, 2, 1, 3, 5000, 3)
	failing.ExceptionInfo = &pb.PIntStringValue{IntValue: 1, StringValue: wrapperspb.String("inner boom")}
	failing.Annotation = []*pb.PAnnotation{{Key: -52, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_LongValue{LongValue: 77}}}}
	span := shopSpan(5001, 9, 10, ev(0, 1, 0, 10, 5051, 2), failing)
	span.Err = 1
	span.ExceptionInfo = &pb.PIntStringValue{IntValue: 1, StringValue: wrapperspb.String("boom")}
	span.Annotation = []*pb.PAnnotation{intAnn(46, 500)}
	h.span(javaA, span)
	checkGolden(t, h, "exception_chain")
}

func TestGoldenSQLAndArguments(t *testing.T) {
	h := goldenHarness(t)
	query := ev(1, 2, 1, 4, 2101, 3)
	query.NextEvent = nextEvent(-1, "db:3306", "shopdb")
	query.Annotation = []*pb.PAnnotation{
		{Key: 20, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_IntStringStringValue{
			IntStringStringValue: &pb.PIntStringStringValue{IntValue: 1, StringValue1: wrapperspb.String(""), StringValue2: wrapperspb.String("42, 'abc'")}}}},
	}
	update := ev(2, 0, 5, 2, 2101, 3)
	update.NextEvent = nextEvent(0, "db:3306", "shopdb")
	update.Annotation = []*pb.PAnnotation{
		{Key: 25, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_BytesStringStringValue{
			BytesStringStringValue: &pb.PBytesStringStringValue{BytesValue: []byte{0xab, 0xcd}, StringValue2: wrapperspb.String("3, 42")}}}},
	}
	local := ev(3, 1, 2, 1, 5000, 3)
	local.Annotation = []*pb.PAnnotation{
		strAnn(-1, "first arg"),
		intAnn(-30, 2),
		{Key: 49, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_IntBooleanIntBooleanValue{
			IntBooleanIntBooleanValue: &pb.PIntBooleanIntBooleanValue{IntValue1: 3, BoolValue1: true, IntValue2: 5}}}},
		intAnn(777, 1),
	}
	h.span(javaA, shopSpan(6001, 10, 15, ev(0, 1, 0, 10, 5051, 2), query, update, local))
	checkGolden(t, h, "sql_and_arguments")
}

func TestGoldenAPIFromAnnotation12(t *testing.T) {
	h := goldenHarness(t)
	legacy := ev(1, 2, 1, 2, 5000, 0)
	legacy.Annotation = []*pb.PAnnotation{strAnn(12, "com.example.Legacy.call(int count)")}
	bare := ev(2, 0, 1, 1, 5000, 0) // neither an apiId nor annotation 12
	h.span(javaA, shopSpan(7001, 11, 5, ev(0, 1, 0, 5, 5051, 2), legacy, bare))
	checkGolden(t, h, "api_from_annotation_12")
}

func TestGoldenServiceTypes(t *testing.T) {
	provider, err := servicetype.ParseProvider("type-provider.yml", []byte(`
serviceTypes:
  - code: 9950
    name: 'ACME_RPC_CLIENT'
    property:
      recordStatistics: true
annotationKeys:
  - code: 901
    name: 'acme.request.id'
`))
	if err != nil {
		t.Fatal(err)
	}
	table, err := servicetype.New(provider)
	if err != nil {
		t.Fatal(err)
	}
	h := goldenHarness(t, func(o *Options) { o.Types = table })
	custom := ev(1, 2, 1, 2, 9950, 3)
	custom.Annotation = []*pb.PAnnotation{strAnn(901, "req-1"), strAnn(999, "unnamed")}
	unknown := ev(2, 0, 1, 1, 7777, 3)
	h.span(javaA, shopSpan(8001, 12, 5, ev(0, 1, 0, 5, 5051, 2), custom, unknown))
	checkGolden(t, h, "service_types")
}

func TestGoldenNegativeSpanIDs(t *testing.T) {
	h := goldenHarness(t)
	call := ev(1, 2, 1, 2, 9052, 4)
	call.NextEvent = nextEvent(-9, "stock:8080", "stock:8080")
	span := shopSpan(-4242, 13, 5, ev(0, 1, 0, 5, 5051, 2), call)
	span.ParentSpanId = -77
	span.TransactionId = txID("edge", 1699999999999, 13)
	h.span(javaA, span)
	checkGolden(t, h, "negative_span_ids")
}

func TestGoldenMessage(t *testing.T) {
	h := goldenHarness(t, func(o *Options) { o.DelMessage = false })
	e := ev(0, 1, 1, 2, 1801, 2)
	e.Annotation = []*pb.PAnnotation{strAnn(-1, `say "hi"`)}
	h.span(goB, &pb.PSpan{
		Version: 1, TransactionId: txID("go-b", 1700000000500, 14), SpanId: 9001, ParentSpanId: -1,
		StartTime: t0, Elapsed: 3, ApiId: 1, ServiceType: 1800, AcceptEvent: &pb.PAcceptEvent{Rpc: "/m"},
		SpanEvent: []*pb.PSpanEvent{e},
	})
	checkGolden(t, h, "message")
}
