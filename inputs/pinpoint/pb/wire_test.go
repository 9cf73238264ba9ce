package pb

// These tests pin the protocol facts of docs/PINPOINT-PROTOCOL.md that break
// real agents when they are wrong. Protobuf carries only field numbers and
// wire types, so a wrong number or a sint32 written as int32 still compiles,
// still round-trips through our own code, and silently garbles what real
// agents send. Each test therefore compares against bytes or tables written
// out by hand from the fact sheet, never against our own encoder alone.

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %T: %v", m, err)
	}
	return b
}

// wireField is one top-level field as it appears in an encoded message.
type wireField struct {
	num protowire.Number
	typ protowire.Type
}

// topLevelFields splits an encoded message into its top-level fields using
// protowire only, so the check does not trust the generated code's view.
func topLevelFields(t *testing.T, b []byte) []wireField {
	t.Helper()
	var out []wireField
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			t.Fatalf("bad value of field %d: %v", num, protowire.ParseError(m))
		}
		b = b[m:]
		out = append(out, wireField{num, typ})
	}
	return out
}

func repeat(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// TestWireBytes encodes single-field messages and compares the exact bytes
// with hand-computed encodings of the fact sheet's wire types.
func TestWireBytes(t *testing.T) {
	le := []byte{0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01} // 0x0102030405060708, little-endian
	const id = 0x0102030405060708
	cases := []struct {
		name string
		msg  proto.Message
		want []byte
	}{
		// PSpanEvent.apiId is sint32 field 10: tag 10<<3|0 = 0x50, zigzag value.
		{"PSpanEvent.apiId=1 zigzag", &PSpanEvent{ApiId: 1}, []byte{0x50, 0x02}},
		{"PSpanEvent.apiId=-3 zigzag", &PSpanEvent{ApiId: -3}, []byte{0x50, 0x05}},
		// PSpan.apiId is int32 field 7: plain varint; negatives are 10 bytes.
		{"PSpan.apiId=1 varint", &PSpan{ApiId: 1}, []byte{0x38, 0x01}},
		{"PSpan.apiId=-3 varint", &PSpan{ApiId: -3}, cat([]byte{0x38, 0xfd}, repeat(0xff, 8), []byte{0x01})},
		// spanIds are sfixed64: wire type 1, 8 little-endian bytes.
		{"PSpan.spanId fixed64 field 3", &PSpan{SpanId: id}, cat([]byte{0x19}, le)},
		{"PSpan.parentSpanId=-1 fixed64 field 4", &PSpan{ParentSpanId: -1}, cat([]byte{0x21}, repeat(0xff, 8))},
		{"PMessageEvent.nextSpanId fixed64 field 1", &PMessageEvent{NextSpanId: id}, cat([]byte{0x09}, le)},
		{"PSpanChunk.spanId fixed64 field 3", &PSpanChunk{SpanId: id}, cat([]byte{0x19}, le)},
		{"PExceptionMetaData.spanId fixed64 field 3", &PExceptionMetaData{SpanId: id}, cat([]byte{0x19}, le)},
		// Annotation keys are int32: -52 (exception chain id) is a 10-byte varint.
		{"PAnnotation.key=-52 10-byte varint", &PAnnotation{Key: -52}, cat([]byte{0x08, 0xcc}, repeat(0xff, 8), []byte{0x01})},
		{"PAnnotation.key=20", &PAnnotation{Key: 20}, []byte{0x08, 0x14}},
		// PSpan.err is sint32 field 12: tag 0x60.
		{"PSpan.err=1 zigzag", &PSpan{Err: 1}, []byte{0x60, 0x02}},
		{"PSpan.err=-1 zigzag", &PSpan{Err: -1}, []byte{0x60, 0x01}},
		// PSpanEvent.serviceType is sint32 field 5 (zigzag 1800 = 3600), while
		// PSpan.serviceType is int32 field 8.
		{"PSpanEvent.serviceType=1800 zigzag", &PSpanEvent{ServiceType: 1800}, []byte{0x28, 0x90, 0x1c}},
		{"PSpanEvent.serviceType=100 zigzag", &PSpanEvent{ServiceType: 100}, []byte{0x28, 0xc8, 0x01}},
		{"PSpan.serviceType=1800 varint", &PSpan{ServiceType: 1800}, []byte{0x40, 0x88, 0x0e}},
		// shortValue / byteValue are sint32 oneof members 5 and 8.
		{"PAnnotationValue.shortValue=-1 zigzag", &PAnnotationValue{Field: &PAnnotationValue_ShortValue{ShortValue: -1}}, []byte{0x28, 0x01}},
		{"PAnnotationValue.byteValue=-1 zigzag", &PAnnotationValue{Field: &PAnnotationValue_ByteValue{ByteValue: -1}}, []byte{0x40, 0x01}},
		// The string halves of the composite values are StringValue wrappers:
		// a nested message whose field 1 is the string.
		{"PIntStringValue wraps its string", &PIntStringValue{IntValue: 7, StringValue: wrapperspb.String("x")}, []byte{0x08, 0x07, 0x12, 0x03, 0x0a, 0x01, 'x'}},
		{"PIntStringStringValue wraps its strings", &PIntStringStringValue{IntValue: 1, StringValue2: wrapperspb.String("42")}, []byte{0x08, 0x01, 0x1a, 0x04, 0x0a, 0x02, '4', '2'}},
		{"PLocalAsyncId", &PLocalAsyncId{AsyncId: 3, Sequence: 1}, []byte{0x08, 0x03, 0x10, 0x01}},
		{"PTransactionId", &PTransactionId{AgentId: "a", AgentStartTime: 1, Sequence: 2}, []byte{0x0a, 0x01, 'a', 0x10, 0x01, 0x18, 0x02}},
		{"PResult success", &PResult{Success: true}, []byte{0x08, 0x01}},
		{"PPing is empty", &PPing{}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := marshal(t, c.msg)
			if !bytes.Equal(got, c.want) {
				t.Errorf("%T encodes as % x, want % x", c.msg, got, c.want)
			}
		})
	}
}

// TestOneofNumbers checks every oneof member's field number and wire type:
// each message sets exactly one member and must encode as exactly one field.
func TestOneofNumbers(t *testing.T) {
	type want struct {
		num protowire.Number
		typ protowire.Type
	}
	sv := wrapperspb.String("s")
	cases := []struct {
		name string
		msg  proto.Message
		want want
	}{
		{"annotation stringValue", &PAnnotationValue{Field: &PAnnotationValue_StringValue{StringValue: "s"}}, want{1, protowire.BytesType}},
		{"annotation boolValue", &PAnnotationValue{Field: &PAnnotationValue_BoolValue{BoolValue: true}}, want{2, protowire.VarintType}},
		{"annotation intValue", &PAnnotationValue{Field: &PAnnotationValue_IntValue{IntValue: 1}}, want{3, protowire.VarintType}},
		{"annotation longValue", &PAnnotationValue{Field: &PAnnotationValue_LongValue{LongValue: 1}}, want{4, protowire.VarintType}},
		{"annotation shortValue", &PAnnotationValue{Field: &PAnnotationValue_ShortValue{ShortValue: 1}}, want{5, protowire.VarintType}},
		{"annotation doubleValue", &PAnnotationValue{Field: &PAnnotationValue_DoubleValue{DoubleValue: 1}}, want{6, protowire.Fixed64Type}},
		{"annotation binaryValue", &PAnnotationValue{Field: &PAnnotationValue_BinaryValue{BinaryValue: []byte{1}}}, want{7, protowire.BytesType}},
		{"annotation byteValue", &PAnnotationValue{Field: &PAnnotationValue_ByteValue{ByteValue: 1}}, want{8, protowire.VarintType}},
		{"annotation intStringValue", &PAnnotationValue{Field: &PAnnotationValue_IntStringValue{IntStringValue: &PIntStringValue{IntValue: 1}}}, want{9, protowire.BytesType}},
		{"annotation stringStringValue", &PAnnotationValue{Field: &PAnnotationValue_StringStringValue{StringStringValue: &PStringStringValue{StringValue1: sv}}}, want{10, protowire.BytesType}},
		{"annotation intStringStringValue", &PAnnotationValue{Field: &PAnnotationValue_IntStringStringValue{IntStringStringValue: &PIntStringStringValue{IntValue: 1}}}, want{11, protowire.BytesType}},
		{"annotation longIntIntByteByteStringValue", &PAnnotationValue{Field: &PAnnotationValue_LongIntIntByteByteStringValue{LongIntIntByteByteStringValue: &PLongIntIntByteByteStringValue{LongValue: 1}}}, want{12, protowire.BytesType}},
		{"annotation intBooleanIntBooleanValue", &PAnnotationValue{Field: &PAnnotationValue_IntBooleanIntBooleanValue{IntBooleanIntBooleanValue: &PIntBooleanIntBooleanValue{IntValue1: 1}}}, want{13, protowire.BytesType}},
		{"annotation bytesStringStringValue", &PAnnotationValue{Field: &PAnnotationValue_BytesStringStringValue{BytesStringStringValue: &PBytesStringStringValue{BytesValue: []byte{1}}}}, want{14, protowire.BytesType}},

		{"stat agentStat", &PStatMessage{Field: &PStatMessage_AgentStat{AgentStat: &PAgentStat{}}}, want{1, protowire.BytesType}},
		{"stat agentStatBatch", &PStatMessage{Field: &PStatMessage_AgentStatBatch{AgentStatBatch: &PAgentStatBatch{}}}, want{2, protowire.BytesType}},
		{"stat agentUriStat", &PStatMessage{Field: &PStatMessage_AgentUriStat{AgentUriStat: &PAgentUriStat{}}}, want{3, protowire.BytesType}},
		{"stat profilerMetric", &PStatMessage{Field: &PStatMessage_ProfilerMetric{ProfilerMetric: &PProfilerMetric{}}}, want{4, protowire.BytesType}},

		{"span message span", &PSpanMessage{Field: &PSpanMessage_Span{Span: &PSpan{}}}, want{1, protowire.BytesType}},
		{"span message spanChunk", &PSpanMessage{Field: &PSpanMessage_SpanChunk{SpanChunk: &PSpanChunk{}}}, want{2, protowire.BytesType}},
		{"next event messageEvent", &PNextEvent{Field: &PNextEvent_MessageEvent{MessageEvent: &PMessageEvent{}}}, want{1, protowire.BytesType}},

		{"attribute stringValue", &PAttributeValue{Field: &PAttributeValue_StringValue{StringValue: "s"}}, want{1, protowire.BytesType}},
		{"attribute boolValue", &PAttributeValue{Field: &PAttributeValue_BoolValue{BoolValue: true}}, want{2, protowire.VarintType}},
		{"attribute longValue", &PAttributeValue{Field: &PAttributeValue_LongValue{LongValue: 1}}, want{3, protowire.VarintType}},
		{"attribute doubleValue", &PAttributeValue{Field: &PAttributeValue_DoubleValue{DoubleValue: 1}}, want{4, protowire.Fixed64Type}},
		{"attribute binaryValue", &PAttributeValue{Field: &PAttributeValue_BinaryValue{BinaryValue: []byte{1}}}, want{5, protowire.BytesType}},
		{"attribute arrayValue", &PAttributeValue{Field: &PAttributeValue_ArrayValue{ArrayValue: &PAttributeArrayValue{}}}, want{6, protowire.BytesType}},
		{"attribute kvlistValue", &PAttributeValue{Field: &PAttributeValue_KvlistValue{KvlistValue: &PAttributeKeyValueList{}}}, want{7, protowire.BytesType}},

		{"profiler metric stringValue", &PProfilerMetricField{Value: &PProfilerMetricField_StringValue{StringValue: "s"}}, want{2, protowire.BytesType}},
		{"profiler metric longValue", &PProfilerMetricField{Value: &PProfilerMetricField_LongValue{LongValue: 1}}, want{3, protowire.VarintType}},

		{"cmd handshakeMessage", &PCmdMessage{Message: &PCmdMessage_HandshakeMessage{HandshakeMessage: &PCmdServiceHandshake{}}}, want{1, protowire.BytesType}},
		{"cmd failMessage", &PCmdMessage{Message: &PCmdMessage_FailMessage{FailMessage: &PCmdResponse{}}}, want{2, protowire.BytesType}},
		{"cmd request echo", &PCmdRequest{Command: &PCmdRequest_CommandEcho{CommandEcho: &PCmdEcho{}}}, want{710, protowire.BytesType}},
		{"cmd request activeThreadCount", &PCmdRequest{Command: &PCmdRequest_CommandActiveThreadCount{CommandActiveThreadCount: &PCmdActiveThreadCount{}}}, want{730, protowire.BytesType}},
		{"cmd request activeThreadDump", &PCmdRequest{Command: &PCmdRequest_CommandActiveThreadDump{CommandActiveThreadDump: &PCmdActiveThreadDump{}}}, want{740, protowire.BytesType}},
		{"cmd request activeThreadLightDump", &PCmdRequest{Command: &PCmdRequest_CommandActiveThreadLightDump{CommandActiveThreadLightDump: &PCmdActiveThreadLightDump{}}}, want{750, protowire.BytesType}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := topLevelFields(t, marshal(t, c.msg))
			if len(got) != 1 || got[0].num != c.want.num || got[0].typ != c.want.typ {
				t.Errorf("%T encodes as fields %v, want exactly [{%d %d}]", c.msg, got, c.want.num, c.want.typ)
			}
		})
	}
}

// factSheet is section 3 of docs/PINPOINT-PROTOCOL.md transcribed as
// "number name type" entries; "[]" marks repeated fields, "|oneof" puts a
// field in that oneof. TestMessagesMatchFactSheet compares it with the
// compiled descriptors, so a typo in a .proto file (a wrong number, int32
// for sint32, a field too many) fails here even if no recording uses it.
var factSheet = map[string]string{
	// Span.proto
	"PSpanMessage":           "1 span PSpan|field; 2 spanChunk PSpanChunk|field",
	"PSpanMessageBatch":      "1 span []PSpanMessage",
	"PSpanResultBatch":       "1 partial_success PPartialSuccess",
	"PPartialSuccess":        "1 rejected_spans int64; 2 errorId int64; 3 error_message string",
	"PSpan":                  "1 version int32; 2 transactionId PTransactionId; 3 spanId sfixed64; 4 parentSpanId sfixed64; 5 startTime int64; 6 elapsed int32; 7 apiId int32; 8 serviceType int32; 9 acceptEvent PAcceptEvent; 10 annotation []PAnnotation; 11 flag int32; 12 err sint32; 13 spanEvent []PSpanEvent; 14 exceptionInfo PIntStringValue; 15 applicationServiceType int32; 16 loggingTransactionInfo int32; 17 attribute []PAttribute",
	"PTransactionId":         "1 agentId string; 2 agentStartTime int64; 3 sequence int64",
	"PAcceptEvent":           "1 rpc string; 2 endPoint string; 3 remoteAddr string; 4 parentInfo PParentInfo",
	"PParentInfo":            "1 parentApplicationName string; 2 parentApplicationType int32; 3 acceptorHost string; 4 parentServiceName string",
	"PSpanEvent":             "1 sequence int32; 2 depth int32; 3 startElapsed int32; 4 endElapsed int32; 5 serviceType sint32; 6 annotation []PAnnotation; 10 apiId sint32; 11 exceptionInfo PIntStringValue; 12 nextEvent PNextEvent; 13 asyncEvent int32; 14 attribute []PAttribute",
	"PNextEvent":             "1 messageEvent PMessageEvent|field",
	"PMessageEvent":          "1 nextSpanId sfixed64; 2 endPoint string; 3 destinationId string",
	"PSpanChunk":             "1 version int32; 2 transactionId PTransactionId; 3 spanId sfixed64; 4 endPoint string; 5 spanEvent []PSpanEvent; 6 applicationServiceType int32; 7 keyTime int64; 8 localAsyncId PLocalAsyncId",
	"PLocalAsyncId":          "1 asyncId int32; 2 sequence int32",
	"PAttribute":             "1 key string; 2 value PAttributeValue",
	"PAttributeValue":        "1 stringValue string|field; 2 boolValue bool|field; 3 longValue int64|field; 4 doubleValue double|field; 5 binaryValue bytes|field; 6 arrayValue PAttributeArrayValue|field; 7 kvlistValue PAttributeKeyValueList|field",
	"PAttributeArrayValue":   "1 values []PAttributeValue",
	"PAttributeKeyValueList": "1 values []PAttribute",
	"PResult":                "1 success bool; 2 message string",
	"PSqlMetaData":           "1 sqlId int32; 2 sql string",
	"PSqlUidMetaData":        "1 sqlUid bytes; 2 sql string",
	"PApiMetaData":           "1 apiId int32; 2 apiInfo string; 3 line int32; 4 type int32; 5 location string",
	"PStringMetaData":        "1 stringId int32; 2 stringValue string",
	"PExceptionMetaData":     "1 exceptions []PException; 2 transactionId PTransactionId; 3 spanId sfixed64; 4 uriTemplate string",
	"PException":             "1 exceptionClassName string; 2 exceptionMessage string; 3 startTime int64; 4 exceptionId int64; 5 exceptionDepth int32; 6 stackTraceElement []PStackTraceElement",
	"PStackTraceElement":     "1 className string; 2 fileName string; 3 lineNumber int32; 4 methodName string",

	// Annotation.proto
	"PAnnotation":                    "1 key int32; 2 value PAnnotationValue",
	"PAnnotationValue":               "1 stringValue string|field; 2 boolValue bool|field; 3 intValue int32|field; 4 longValue int64|field; 5 shortValue sint32|field; 6 doubleValue double|field; 7 binaryValue bytes|field; 8 byteValue sint32|field; 9 intStringValue PIntStringValue|field; 10 stringStringValue PStringStringValue|field; 11 intStringStringValue PIntStringStringValue|field; 12 longIntIntByteByteStringValue PLongIntIntByteByteStringValue|field; 13 intBooleanIntBooleanValue PIntBooleanIntBooleanValue|field; 14 bytesStringStringValue PBytesStringStringValue|field",
	"PIntStringValue":                "1 intValue int32; 2 stringValue google.protobuf.StringValue",
	"PStringStringValue":             "1 stringValue1 google.protobuf.StringValue; 2 stringValue2 google.protobuf.StringValue",
	"PIntStringStringValue":          "1 intValue int32; 2 stringValue1 google.protobuf.StringValue; 3 stringValue2 google.protobuf.StringValue",
	"PBytesStringStringValue":        "1 bytesValue bytes; 2 stringValue1 google.protobuf.StringValue; 3 stringValue2 google.protobuf.StringValue",
	"PLongIntIntByteByteStringValue": "1 longValue int64; 2 intValue1 int32; 3 intValue2 int32; 4 byteValue1 sint32; 5 byteValue2 sint32; 6 stringValue google.protobuf.StringValue",
	"PIntBooleanIntBooleanValue":     "1 intValue1 int32; 2 boolValue1 bool; 3 intValue2 int32; 4 boolValue2 bool",

	// Stat.proto
	"PPing":                 "",
	"PStatMessage":          "1 agentStat PAgentStat|field; 2 agentStatBatch PAgentStatBatch|field; 3 agentUriStat PAgentUriStat|field; 4 profilerMetric PProfilerMetric|field",
	"PAgentInfo":            "1 hostname string; 2 ip string; 3 ports string; 4 serviceType int32; 5 pid int32; 6 agentVersion string; 7 vmVersion string; 8 endTimestamp int64; 9 endStatus int32; 10 serverMetaData PServerMetaData; 11 jvmInfo PJvmInfo; 12 container bool",
	"PServerMetaData":       "1 serverInfo string; 2 vmArg []string; 3 serviceInfo []PServiceInfo",
	"PServiceInfo":          "1 serviceName string; 2 serviceLib []string",
	"PJvmInfo":              "1 version int32; 2 vmVersion string; 3 gcType PJvmGcType",
	"PAgentStatBatch":       "1 agentStat []PAgentStat",
	"PAgentStat":            "1 timestamp int64; 2 collectInterval int64; 3 gc PJvmGc; 4 cpuLoad PCpuLoad; 5 transaction PTransaction; 6 activeTrace PActiveTrace; 7 dataSourceList PDataSourceList; 8 responseTime PResponseTime; 9 deadlock PDeadlock; 10 fileDescriptor PFileDescriptor; 11 directBuffer PDirectBuffer; 12 metadata string; 13 totalThread PTotalThread; 14 loadedClass PLoadedClass",
	"PJvmGc":                "1 type PJvmGcType; 2 jvmMemoryHeapUsed int64; 3 jvmMemoryHeapMax int64; 4 jvmMemoryNonHeapUsed int64; 5 jvmMemoryNonHeapMax int64; 6 jvmGcOldCount int64; 7 jvmGcOldTime int64; 8 jvmGcDetailed PJvmGcDetailed",
	"PJvmGcDetailed":        "1 jvmGcNewCount int64; 2 jvmGcNewTime int64; 3 jvmPoolCodeCacheUsed double; 4 jvmPoolNewGenUsed double; 5 jvmPoolOldGenUsed double; 6 jvmPoolSurvivorSpaceUsed double; 7 jvmPoolPermGenUsed double; 8 jvmPoolMetaspaceUsed double",
	"PCpuLoad":              "1 jvmCpuLoad double; 2 systemCpuLoad double",
	"PTransaction":          "2 sampledNewCount int64; 3 sampledContinuationCount int64; 4 unsampledNewCount int64; 5 unsampledContinuationCount int64; 6 skippedNewCount int64; 7 skippedContinuationCount int64",
	"PActiveTrace":          "1 histogram PActiveTraceHistogram",
	"PActiveTraceHistogram": "1 version int32; 2 histogramSchemaType int32; 3 activeTraceCount []int32",
	"PDataSourceList":       "1 dataSource []PDataSource",
	"PDataSource":           "1 id int32; 2 serviceTypeCode int32; 3 databaseName string; 4 url string; 5 activeConnectionSize int32; 6 maxConnectionSize int32",
	"PResponseTime":         "1 avg int64; 2 max int64",
	"PDeadlock":             "1 count int32; 2 threadDump []PThreadDump",
	"PFileDescriptor":       "1 openFileDescriptorCount int64",
	"PDirectBuffer":         "1 directCount int64; 2 directMemoryUsed int64; 3 mappedCount int64; 4 mappedMemoryUsed int64",
	"PTotalThread":          "1 totalThreadCount int64",
	"PLoadedClass":          "1 loadedClassCount int64; 2 unloadedClassCount int64",
	"PAgentUriStat":         "1 bucketVersion int32; 2 eachUriStat []PEachUriStat",
	"PEachUriStat":          "1 uri string; 2 totalHistogram PUriHistogram; 3 failedHistogram PUriHistogram; 4 timestamp int64",
	"PUriHistogram":         "1 total int64; 2 max int64; 3 histogram []int32",
	"PProfilerMetric":       "1 timestamp int64; 2 collectInterval int64; 3 name string; 4 fields []PProfilerMetricField; 5 tags []PProfilerMetricField",
	"PProfilerMetricField":  "1 name string; 2 stringValue string|value; 3 longValue int64|value",

	// ThreadDump.proto
	"PThreadDump":  "1 threadName string; 2 threadId int64; 3 blockedTime int64; 4 blockedCount int64; 5 waitedTime int64; 6 waitedCount int64; 7 lockName string; 8 lockOwnerId int64; 9 lockOwnerName string; 10 inNative bool; 11 suspended bool; 12 threadState PThreadState; 13 stackTrace []string; 14 lockedMonitor []PMonitorInfo; 15 lockedSynchronizer []string",
	"PMonitorInfo": "1 stackDepth int32; 2 stackFrame string",

	// Cmd.proto: the sheet gives the envelopes only; the payload types are
	// those of Cmd.proto.
	"PCmdMessage":          "1 handshakeMessage PCmdServiceHandshake|message; 2 failMessage PCmdResponse|message",
	"PCmdServiceHandshake": "1 supportCommandServiceKey []int32",
	"PCmdRequest":          "1 requestId int32; 710 commandEcho PCmdEcho|command; 730 commandActiveThreadCount PCmdActiveThreadCount|command; 740 commandActiveThreadDump PCmdActiveThreadDump|command; 750 commandActiveThreadLightDump PCmdActiveThreadLightDump|command",
}

// describeField renders a field descriptor in factSheet notation.
func describeField(fd protoreflect.FieldDescriptor) string {
	typ := fd.Kind().String()
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		typ = string(fd.Message().FullName())
	case protoreflect.EnumKind:
		typ = string(fd.Enum().FullName())
	}
	typ = strings.TrimPrefix(typ, "v1.")
	if fd.IsList() {
		typ = "[]" + typ
	}
	s := fmt.Sprintf("%d %s %s", fd.Number(), fd.Name(), typ)
	if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
		s += "|" + string(od.Name())
	}
	return s
}

func TestMessagesMatchFactSheet(t *testing.T) {
	files := []protoreflect.FileDescriptor{
		File_v1_Span_proto, File_v1_Annotation_proto, File_v1_Stat_proto,
		File_v1_ThreadDump_proto, File_v1_Cmd_proto, File_v1_Service_proto,
	}
	seen := map[string]bool{}
	for _, fd := range files {
		if fd.Package() != "v1" {
			t.Errorf("%s: package %q, want v1 (method paths and type URLs depend on it)", fd.Path(), fd.Package())
		}
		msgs := fd.Messages()
		for i := 0; i < msgs.Len(); i++ {
			md := msgs.Get(i)
			name := string(md.Name())
			spec, ok := factSheet[name]
			if !ok {
				continue // command payloads and dump details the sheet does not describe
			}
			seen[name] = true
			var want []string
			if spec != "" {
				for _, f := range strings.Split(spec, ";") {
					want = append(want, strings.TrimSpace(f))
				}
			}
			var got []string
			fields := md.Fields()
			for j := 0; j < fields.Len(); j++ {
				got = append(got, describeField(fields.Get(j)))
			}
			byNumber := func(s []string) {
				sort.Slice(s, func(a, b int) bool {
					na, _ := strconv.Atoi(strings.Fields(s[a])[0])
					nb, _ := strconv.Atoi(strings.Fields(s[b])[0])
					return na < nb
				})
			}
			byNumber(want)
			byNumber(got)
			if strings.Join(got, "; ") != strings.Join(want, "; ") {
				t.Errorf("%s fields differ from the fact sheet:\n got: %s\nwant: %s", name, strings.Join(got, "; "), strings.Join(want, "; "))
			}
		}
	}
	for name := range factSheet {
		if !seen[name] {
			t.Errorf("fact-sheet message %s is not defined in the .proto files", name)
		}
	}
}

func TestEnumsMatchFactSheet(t *testing.T) {
	enumValues := func(ed protoreflect.EnumDescriptor) string {
		var parts []string
		vals := ed.Values()
		for i := 0; i < vals.Len(); i++ {
			parts = append(parts, fmt.Sprintf("%s=%d", vals.Get(i).Name(), vals.Get(i).Number()))
		}
		return strings.Join(parts, " ")
	}
	cases := []struct {
		ed   protoreflect.EnumDescriptor
		want string
	}{
		{PJvmGcType(0).Descriptor(), "JVM_GC_TYPE_UNKNOWN=0 JVM_GC_TYPE_SERIAL=1 JVM_GC_TYPE_PARALLEL=2 JVM_GC_TYPE_CMS=3 JVM_GC_TYPE_G1=4 JVM_GC_TYPE_ZGC=5"},
		{PThreadState(0).Descriptor(), "THREAD_STATE_NEW=0 THREAD_STATE_RUNNABLE=1 THREAD_STATE_BLOCKED=2 THREAD_STATE_WAITING=3 THREAD_STATE_TIMED_WAITING=4 THREAD_STATE_TERMINATED=5 THREAD_STATE_UNKNOWN=6"},
	}
	for _, c := range cases {
		if got := enumValues(c.ed); got != c.want {
			t.Errorf("%s = %s, want %s", c.ed.FullName(), got, c.want)
		}
	}
}

// TestGapsStayEmpty pins the numbers the IDL leaves unused: a field added
// there would collide with nothing real agents send, but it would mean our
// description drifted from theirs.
func TestGapsStayEmpty(t *testing.T) {
	tx := (&PTransaction{}).ProtoReflect().Descriptor()
	if fd := tx.Fields().ByNumber(1); fd != nil {
		t.Errorf("PTransaction has field 1 (%s); the IDL has none", fd.Name())
	}
	if !tx.ReservedRanges().Has(1) {
		t.Error("PTransaction does not reserve field 1")
	}
	ev := (&PSpanEvent{}).ProtoReflect().Descriptor()
	for n := protoreflect.FieldNumber(7); n <= 9; n++ {
		if fd := ev.Fields().ByNumber(n); fd != nil {
			t.Errorf("PSpanEvent has field %d (%s); the IDL leaves 7-9 unused", n, fd.Name())
		}
	}
}

// sheetMethods is the table of section 1 of the fact sheet.
var sheetMethods = []struct {
	path, in, out, kind string
}{
	{"/v1.Agent/RequestAgentInfo", "PAgentInfo", "PResult", "unary"},
	{"/v1.Agent/PingSession", "PPing", "PPing", "bidi"},
	{"/v1.Metadata/RequestSqlMetaData", "PSqlMetaData", "PResult", "unary"},
	{"/v1.Metadata/RequestSqlUidMetaData", "PSqlUidMetaData", "PResult", "unary"},
	{"/v1.Metadata/RequestApiMetaData", "PApiMetaData", "PResult", "unary"},
	{"/v1.Metadata/RequestStringMetaData", "PStringMetaData", "PResult", "unary"},
	{"/v1.Metadata/RequestExceptionMetaData", "PExceptionMetaData", "PResult", "unary"},
	{"/v1.Span/SendSpan", "PSpanMessage", "google.protobuf.Empty", "client_stream"},
	{"/v1.Span/SendSpanBatch", "PSpanMessageBatch", "PSpanResultBatch", "unary"},
	{"/v1.Stat/SendAgentStat", "PStatMessage", "google.protobuf.Empty", "client_stream"},
	{"/v1.ProfilerCommandService/HandleCommand", "PCmdMessage", "PCmdRequest", "bidi"},
	{"/v1.ProfilerCommandService/HandleCommandV2", "PCmdMessage", "PCmdRequest", "bidi"},
	{"/v1.ProfilerCommandService/CommandEcho", "PCmdEchoResponse", "google.protobuf.Empty", "unary"},
	{"/v1.ProfilerCommandService/CommandStreamActiveThreadCount", "PCmdActiveThreadCountRes", "google.protobuf.Empty", "client_stream"},
	{"/v1.ProfilerCommandService/CommandActiveThreadDump", "PCmdActiveThreadDumpRes", "google.protobuf.Empty", "unary"},
	{"/v1.ProfilerCommandService/CommandActiveThreadLightDump", "PCmdActiveThreadLightDumpRes", "google.protobuf.Empty", "unary"},
}

func streamKind(client, server bool) string {
	switch {
	case client && server:
		return "bidi"
	case client:
		return "client_stream"
	case server:
		return "server_stream"
	}
	return "unary"
}

// TestFullMethodNames compares the generated constants, which the server
// registers under, with the literal paths agents dial.
func TestFullMethodNames(t *testing.T) {
	got := []string{
		Agent_RequestAgentInfo_FullMethodName,
		Agent_PingSession_FullMethodName,
		Metadata_RequestSqlMetaData_FullMethodName,
		Metadata_RequestSqlUidMetaData_FullMethodName,
		Metadata_RequestApiMetaData_FullMethodName,
		Metadata_RequestStringMetaData_FullMethodName,
		Metadata_RequestExceptionMetaData_FullMethodName,
		Span_SendSpan_FullMethodName,
		Span_SendSpanBatch_FullMethodName,
		Stat_SendAgentStat_FullMethodName,
		ProfilerCommandService_HandleCommand_FullMethodName,
		ProfilerCommandService_HandleCommandV2_FullMethodName,
		ProfilerCommandService_CommandEcho_FullMethodName,
		ProfilerCommandService_CommandStreamActiveThreadCount_FullMethodName,
		ProfilerCommandService_CommandActiveThreadDump_FullMethodName,
		ProfilerCommandService_CommandActiveThreadLightDump_FullMethodName,
	}
	if len(got) != len(sheetMethods) {
		t.Fatalf("%d constants for %d methods", len(got), len(sheetMethods))
	}
	for i, m := range sheetMethods {
		if got[i] != m.path {
			t.Errorf("constant %d = %q, want %q", i, got[i], m.path)
		}
	}
}

// TestServicesMatchFactSheet checks every service method's request and
// response type and streaming kind, both in the descriptors and in the grpc
// ServiceDescs the server registers, and that there are no extra methods.
func TestServicesMatchFactSheet(t *testing.T) {
	want := map[string]int{}
	for i, m := range sheetMethods {
		want[m.path] = i
	}
	seen := map[string]bool{}
	svcs := File_v1_Service_proto.Services()
	for i := 0; i < svcs.Len(); i++ {
		sd := svcs.Get(i)
		methods := sd.Methods()
		for j := 0; j < methods.Len(); j++ {
			md := methods.Get(j)
			path := fmt.Sprintf("/%s/%s", sd.FullName(), md.Name())
			k, ok := want[path]
			if !ok {
				t.Errorf("method %s is not in the fact sheet", path)
				continue
			}
			seen[path] = true
			m := sheetMethods[k]
			in := strings.TrimPrefix(string(md.Input().FullName()), "v1.")
			out := strings.TrimPrefix(string(md.Output().FullName()), "v1.")
			kind := streamKind(md.IsStreamingClient(), md.IsStreamingServer())
			if in != m.in || out != m.out || kind != m.kind {
				t.Errorf("%s: %s %s -> %s, want %s %s -> %s", path, kind, in, out, m.kind, m.in, m.out)
			}
		}
	}
	for _, m := range sheetMethods {
		if !seen[m.path] {
			t.Errorf("method %s is missing", m.path)
		}
	}

	// The grpc.ServiceDesc values are what grpc-go dispatches on: unary
	// methods and streams are listed separately there.
	descs := []*grpc.ServiceDesc{&Agent_ServiceDesc, &Metadata_ServiceDesc, &Span_ServiceDesc, &Stat_ServiceDesc, &ProfilerCommandService_ServiceDesc}
	n := 0
	for _, d := range descs {
		for _, md := range d.Methods {
			n++
			path := "/" + d.ServiceName + "/" + md.MethodName
			if k, ok := want[path]; !ok || sheetMethods[k].kind != "unary" {
				t.Errorf("ServiceDesc lists %s as unary", path)
			}
		}
		for _, sd := range d.Streams {
			n++
			path := "/" + d.ServiceName + "/" + sd.StreamName
			k, ok := want[path]
			if !ok || sheetMethods[k].kind != streamKind(sd.ClientStreams, sd.ServerStreams) {
				t.Errorf("ServiceDesc lists %s as %s", path, streamKind(sd.ClientStreams, sd.ServerStreams))
			}
		}
	}
	if n != len(sheetMethods) {
		t.Errorf("ServiceDescs hold %d methods, the fact sheet %d", n, len(sheetMethods))
	}
}
