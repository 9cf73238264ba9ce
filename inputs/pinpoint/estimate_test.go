package pinpoint

import (
	"runtime"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
)

// hollowSpan is a span message of events empty on the wire: 2 bytes each, a 144-byte
// PSpanEvent each once decoded, the worst ratio of heap to wire bytes there is.
func hollowSpan(seq int64, events int) []byte {
	span, _ := proto.Marshal(validSpan(seq).GetSpan())
	eventField := (&pb.PSpan{}).ProtoReflect().Descriptor().Fields().ByName("spanEvent").Number()
	for range events {
		span = protowire.AppendTag(span, eventField, protowire.BytesType)
		span = protowire.AppendVarint(span, 0)
	}
	spanField := (&pb.PSpanMessage{}).ProtoReflect().Descriptor().Fields().ByName("span").Number()
	msg := protowire.AppendTag(nil, spanField, protowire.BytesType)
	return protowire.AppendBytes(msg, span)
}

// hollowBatch is a batch of spans hollow spans of events events each.
func hollowBatch(spans, events int) replay.Raw {
	var batch []byte
	for i := range spans {
		batch = protowire.AppendTag(batch, 1, protowire.BytesType)
		batch = protowire.AppendBytes(batch, hollowSpan(int64(i+1), events))
	}
	return batch
}

// TestEstimateCoversDecoding compares the admission estimate with the heap a decoded batch
// really holds (after GC, so what is live), for agent-like spans and for the worst ratio.
func TestEstimateCoversDecoding(t *testing.T) {
	cases := map[string]replay.Raw{
		"realistic spans": realisticBatch(2000),
		"hollow spans":    hollowBatch(20, 5000),
	}
	for name, raw := range cases {
		e := estimateHeap(spanBatchDesc, raw)
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		var batch spanBatch
		if err := batch.decode(raw); err != nil || batch.rejected > 0 {
			t.Fatalf("%s: %v %d", name, err, batch.rejected)
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		live := int64(ms.HeapAlloc) - int64(before)
		runtime.KeepAlive(&batch)
		t.Logf("%s: %d wire bytes, %d live once decoded (x%.1f), estimated %d (x%.1f)", name, len(raw), live,
			float64(live)/float64(len(raw)), e.total, float64(e.total)/float64(len(raw)))
		if e.total < live*9/10 || e.total > 2*live {
			t.Errorf("%s: estimate %d for %d bytes decoded", name, e.total, live)
		}
	}
}

// realisticBatch is n spans shaped like an agent's: events with annotations and strings.
func realisticBatch(n int) replay.Raw {
	var batch []byte
	for i := range n {
		m := validSpan(int64(i + 1))
		s := m.GetSpan()
		s.AcceptEvent = &pb.PAcceptEvent{Rpc: "/orders/42", EndPoint: "web.shop:8080", RemoteAddr: "203.0.113.7"}
		for j := range 12 {
			s.SpanEvent = append(s.SpanEvent, &pb.PSpanEvent{
				Sequence: int32(j), Depth: int32(j%4 + 1), StartElapsed: 1, EndElapsed: 2, ServiceType: 1011, ApiId: int32(j + 1),
				Annotation: []*pb.PAnnotation{{Key: 40, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_StringValue{StringValue: "select * from orders where id = ?"}}}},
			})
		}
		b, _ := proto.Marshal(m)
		batch = protowire.AppendTag(batch, 1, protowire.BytesType)
		batch = protowire.AppendBytes(batch, b)
	}
	return batch
}

// The estimate's cost next to the decoding it precedes, on 2,000 agent-like spans.
func BenchmarkEstimate(b *testing.B) {
	raw := realisticBatch(2000)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		estimateHeap(spanBatchDesc, raw)
	}
}

func BenchmarkDecodeBatch(b *testing.B) {
	raw := realisticBatch(2000)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		var batch spanBatch
		_ = batch.decode(raw)
	}
}
