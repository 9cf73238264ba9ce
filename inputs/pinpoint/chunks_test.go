package pinpoint

import (
	"testing"

	"github.com/apmkit/apmkit/inputs/inputstest"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/point"
)

// longSpan is a span of 25 events at depth 1..2 whose first 20 events were flushed in a
// sync chunk, as agents do.
func longSpan() (*pb.PSpanChunk, *pb.PSpan) {
	txid := &pb.PTransactionId{AgentId: "a1", AgentStartTime: 1, Sequence: 77}
	var events []*pb.PSpanEvent
	for i := int32(0); i < 25; i++ {
		depth := int32(1 + i%2) // 1, 2, 1, 2...: every odd event is a child of the one before
		events = append(events, &pb.PSpanEvent{Sequence: i, Depth: depth, StartElapsed: 1, EndElapsed: 1, ServiceType: 5000})
	}
	chunk := &pb.PSpanChunk{Version: 1, TransactionId: txid, SpanId: 4242, KeyTime: 1795417119000, SpanEvent: events[:20]}
	span := &pb.PSpan{Version: 1, TransactionId: txid, SpanId: 4242, ParentSpanId: -1, StartTime: 1795417119000 + 20,
		Elapsed: 100, ServiceType: 1010, SpanEvent: events[20:], AcceptEvent: &pb.PAcceptEvent{Rpc: "/long"}}
	return chunk, span
}

// TestPendingChunksSurviveRestart stops the input while a chunk waits for its span and
// starts a new one on the same data dir: when the span comes, the chunk merges into it.
func TestPendingChunksSurviveRestart(t *testing.T) {
	chunk, span := longSpan()
	dir := t.TempDir()
	h1 := inputstest.New(t, dir)
	in1 := startInput(t, h1, nil)
	sendBatch(t, in1, &pb.PSpanMessage{Field: &pb.PSpanMessage_SpanChunk{SpanChunk: chunk}})
	stopInput(t, in1)
	h1.Close()
	if n := len(h1.Points(point.Tracing)); n != 0 {
		t.Fatalf("the chunk was emitted before its span: %d points", n)
	}

	h2 := inputstest.New(t, dir)
	in2 := startInput(t, h2, nil)
	sendBatch(t, in2, &pb.PSpanMessage{Field: &pb.PSpanMessage_Span{Span: span}})
	stopInput(t, in2)
	pts := h2.Points(point.Tracing)
	if len(pts) != 26 {
		t.Fatalf("%d points, want the entry span and 25 events", len(pts))
	}
	byID := map[string]*point.Point{}
	for _, p := range pts {
		f, _ := p.Field("span_id")
		byID[f.StringValue()] = p
	}
	for _, p := range pts {
		if v, ok := p.Tag("partial"); ok {
			t.Fatalf("merged span tagged partial=%s", v)
		}
		parent, _ := p.Field("parent_id")
		if parent.StringValue() != "0" && byID[parent.StringValue()] == nil {
			t.Fatalf("span without its parent %s", parent.StringValue())
		}
	}
}

func sendBatch(t *testing.T, in *Input, msgs ...*pb.PSpanMessage) {
	t.Helper()
	res, err := pb.NewSpanClient(dial(t, in.Addrs()[0])).SendSpanBatch(agentCtx("a1", 1), &pb.PSpanMessageBatch{Span: msgs})
	if err != nil || res.GetPartialSuccess() != nil {
		t.Fatalf("batch: %v %v", err, res)
	}
}
