package trace

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// The hand-written JSON must mean exactly what protojson writes: compared after parsing
// both, over random messages that use every field and every annotation value type.
func TestMessageJSONMatchesProtojson(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for i := range 2000 {
		span := randomSpan(r)
		noEvents := proto.Clone(span).(*pb.PSpan)
		noEvents.SpanEvent = nil
		sameJSON(t, i, appendSpanJSON(nil, span), noEvents)
		for _, ev := range span.GetSpanEvent() {
			sameJSON(t, i, appendEventJSON(nil, ev), ev)
		}
	}
}

func sameJSON(t *testing.T, i int, got []byte, m proto.Message) {
	t.Helper()
	want, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("case %d: invalid JSON %s: %v", i, got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("case %d:\n got %s\nwant %s", i, got, want)
	}
	// And protojson reads it back to the same message.
	back := m.ProtoReflect().New().Interface()
	if err := protojson.Unmarshal(got, back); err != nil {
		t.Fatalf("case %d: protojson cannot read %s: %v", i, got, err)
	}
	if !proto.Equal(back, m) {
		t.Fatalf("case %d: read back differs", i)
	}
}

func TestMessageJSONEscapesAndRepairs(t *testing.T) {
	ev := &pb.PSpanEvent{Annotation: []*pb.PAnnotation{{Key: 40, Value: &pb.PAnnotationValue{
		Field: &pb.PAnnotationValue_StringValue{StringValue: "a\"b\\c\n\t\x01é\xff"},
	}}}}
	got := string(appendEventJSON(nil, ev))
	want := `{"annotation":[{"key":40,"value":{"stringValue":"a\"b\\c\n\t\u0001é` + "\ufffd" + `"}}]}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func randomString(r *rand.Rand) string {
	const alphabet = "abcXYZ019 _-./:\"\\\n\té漢"
	rs := []rune(alphabet)
	n := r.IntN(8)
	out := make([]rune, n)
	for i := range out {
		out[i] = rs[r.IntN(len(rs))]
	}
	return string(out)
}

func maybeWrapped(r *rand.Rand) *wrapperspb.StringValue {
	if r.IntN(3) == 0 {
		return nil
	}
	return wrapperspb.String(randomString(r))
}

func randomInt64(r *rand.Rand) int64 {
	switch r.IntN(4) {
	case 0:
		return 0
	case 1:
		return -1
	case 2:
		return int64(r.Uint64())
	}
	return int64(r.IntN(100))
}

func randomAnnotationValue(r *rand.Rand) *pb.PAnnotationValue {
	v := &pb.PAnnotationValue{}
	switch r.IntN(15) {
	case 0:
		v.Field = &pb.PAnnotationValue_StringValue{StringValue: randomString(r)}
	case 1:
		v.Field = &pb.PAnnotationValue_BoolValue{BoolValue: r.IntN(2) == 0}
	case 2:
		v.Field = &pb.PAnnotationValue_IntValue{IntValue: int32(randomInt64(r))}
	case 3:
		v.Field = &pb.PAnnotationValue_LongValue{LongValue: randomInt64(r)}
	case 4:
		v.Field = &pb.PAnnotationValue_ShortValue{ShortValue: int32(r.IntN(200) - 100)}
	case 5:
		ds := []float64{0, 1.5, -2.25e-300, 1e21, math.NaN(), math.Inf(1), math.Inf(-1)}
		v.Field = &pb.PAnnotationValue_DoubleValue{DoubleValue: ds[r.IntN(len(ds))]}
	case 6:
		v.Field = &pb.PAnnotationValue_BinaryValue{BinaryValue: []byte(randomString(r))}
	case 7:
		v.Field = &pb.PAnnotationValue_ByteValue{ByteValue: int32(r.IntN(256) - 128)}
	case 8:
		v.Field = &pb.PAnnotationValue_IntStringValue{IntStringValue: &pb.PIntStringValue{IntValue: int32(r.IntN(9)), StringValue: maybeWrapped(r)}}
	case 9:
		v.Field = &pb.PAnnotationValue_StringStringValue{StringStringValue: &pb.PStringStringValue{StringValue1: maybeWrapped(r), StringValue2: maybeWrapped(r)}}
	case 10:
		v.Field = &pb.PAnnotationValue_IntStringStringValue{IntStringStringValue: &pb.PIntStringStringValue{IntValue: int32(r.IntN(9)), StringValue1: maybeWrapped(r), StringValue2: maybeWrapped(r)}}
	case 11:
		v.Field = &pb.PAnnotationValue_LongIntIntByteByteStringValue{LongIntIntByteByteStringValue: &pb.PLongIntIntByteByteStringValue{
			LongValue: randomInt64(r), IntValue1: int32(r.IntN(5)), IntValue2: -3, ByteValue1: int32(r.IntN(3)), ByteValue2: -1, StringValue: maybeWrapped(r)}}
	case 12:
		v.Field = &pb.PAnnotationValue_IntBooleanIntBooleanValue{IntBooleanIntBooleanValue: &pb.PIntBooleanIntBooleanValue{
			IntValue1: int32(r.IntN(5)), BoolValue1: r.IntN(2) == 0, IntValue2: int32(r.IntN(5)), BoolValue2: r.IntN(2) == 0}}
	case 13:
		v.Field = &pb.PAnnotationValue_BytesStringStringValue{BytesStringStringValue: &pb.PBytesStringStringValue{
			BytesValue: []byte(randomString(r)), StringValue1: maybeWrapped(r), StringValue2: maybeWrapped(r)}}
	}
	return v // case 14: no member set
}

func randomAnnotations(r *rand.Rand) []*pb.PAnnotation {
	var as []*pb.PAnnotation
	for range r.IntN(4) {
		a := &pb.PAnnotation{Key: int32(r.IntN(120) - 60)}
		if r.IntN(6) != 0 {
			a.Value = randomAnnotationValue(r)
		}
		as = append(as, a)
	}
	return as
}

func randomAttributeValue(r *rand.Rand, depth int) *pb.PAttributeValue {
	v := &pb.PAttributeValue{}
	switch r.IntN(8) {
	case 0:
		v.Field = &pb.PAttributeValue_StringValue{StringValue: randomString(r)}
	case 1:
		v.Field = &pb.PAttributeValue_BoolValue{BoolValue: r.IntN(2) == 0}
	case 2:
		v.Field = &pb.PAttributeValue_LongValue{LongValue: randomInt64(r)}
	case 3:
		v.Field = &pb.PAttributeValue_DoubleValue{DoubleValue: r.Float64() * 1e6}
	case 4:
		v.Field = &pb.PAttributeValue_BinaryValue{BinaryValue: []byte(randomString(r))}
	case 5:
		if depth < 2 {
			v.Field = &pb.PAttributeValue_ArrayValue{ArrayValue: &pb.PAttributeArrayValue{Values: []*pb.PAttributeValue{randomAttributeValue(r, depth+1)}}}
		}
	case 6:
		if depth < 2 {
			v.Field = &pb.PAttributeValue_KvlistValue{KvlistValue: &pb.PAttributeKeyValueList{Values: randomAttributes(r, depth+1)}}
		}
	}
	return v
}

func randomAttributes(r *rand.Rand, depth int) []*pb.PAttribute {
	var as []*pb.PAttribute
	for range r.IntN(3) {
		as = append(as, &pb.PAttribute{Key: randomString(r), Value: randomAttributeValue(r, depth)})
	}
	return as
}

func randomEvent(r *rand.Rand) *pb.PSpanEvent {
	ev := &pb.PSpanEvent{
		Sequence: int32(r.IntN(50)), Depth: int32(r.IntN(4)), StartElapsed: int32(r.IntN(10)),
		EndElapsed: int32(r.IntN(100)), ServiceType: int32(r.IntN(3) * 1000), ApiId: int32(r.IntN(20) - 5),
		AsyncEvent: int32(r.IntN(3)), Annotation: randomAnnotations(r), Attribute: randomAttributes(r, 0),
	}
	if r.IntN(3) == 0 {
		ev.ExceptionInfo = &pb.PIntStringValue{IntValue: int32(r.IntN(4)), StringValue: maybeWrapped(r)}
	}
	if r.IntN(3) == 0 {
		ev.NextEvent = &pb.PNextEvent{}
		if r.IntN(4) != 0 {
			ev.NextEvent.Field = &pb.PNextEvent_MessageEvent{MessageEvent: &pb.PMessageEvent{
				NextSpanId: randomInt64(r), EndPoint: randomString(r), DestinationId: randomString(r)}}
		}
	}
	return ev
}

func randomSpan(r *rand.Rand) *pb.PSpan {
	s := &pb.PSpan{
		Version: int32(r.IntN(2)), SpanId: randomInt64(r), ParentSpanId: randomInt64(r), StartTime: randomInt64(r),
		Elapsed: int32(r.IntN(100)), ApiId: int32(r.IntN(5)), ServiceType: int32(r.IntN(3) * 1000),
		Annotation: randomAnnotations(r), Flag: int32(r.IntN(2)), Err: int32(r.IntN(3) - 1),
		ApplicationServiceType: int32(r.IntN(2) * 1800), LoggingTransactionInfo: int32(r.IntN(2)),
		Attribute: randomAttributes(r, 0),
	}
	if r.IntN(4) != 0 {
		s.TransactionId = &pb.PTransactionId{AgentId: randomString(r), AgentStartTime: randomInt64(r), Sequence: randomInt64(r)}
	}
	if r.IntN(3) != 0 {
		s.AcceptEvent = &pb.PAcceptEvent{Rpc: randomString(r), EndPoint: randomString(r), RemoteAddr: randomString(r)}
		if r.IntN(2) == 0 {
			s.AcceptEvent.ParentInfo = &pb.PParentInfo{ParentApplicationName: randomString(r), ParentApplicationType: int32(r.IntN(2000)),
				AcceptorHost: randomString(r), ParentServiceName: randomString(r)}
		}
	}
	if r.IntN(3) == 0 {
		s.ExceptionInfo = &pb.PIntStringValue{IntValue: int32(r.IntN(4)), StringValue: maybeWrapped(r)}
	}
	for range r.IntN(4) {
		s.SpanEvent = append(s.SpanEvent, randomEvent(r))
	}
	return s
}
