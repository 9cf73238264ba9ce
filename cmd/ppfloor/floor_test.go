package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// TestFloorCountsWhatItDecodes sends a batch, a stream and the handshake calls with the
// generated clients and checks the counts ppfloor prints.
func TestFloorCountsWhatItDecodes(t *testing.T) {
	lns, err := listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	result := make(chan Counts, 1)
	go func() { result <- serveOn(ctx, lns) }()

	cc, err := grpc.NewClient(lns[0].Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	send(t, cctx, cc)
	stop()
	got := <-result
	want := Counts{Events: 5, Messages: map[string]int64{
		"PAgentInfo": 1, "PApiMetaData": 1, "PSpanMessageBatch": 1, "PSpanMessage": 3, "PSpan": 2, "PSpanChunk": 1,
	}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", got, want)
	}
}

func send(t *testing.T, ctx context.Context, cc *grpc.ClientConn) {
	t.Helper()
	if _, err := pb.NewAgentClient(cc).RequestAgentInfo(ctx, &pb.PAgentInfo{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pb.NewMetadataClient(cc).RequestApiMetaData(ctx, &pb.PApiMetaData{ApiId: 1}); err != nil {
		t.Fatal(err)
	}
	ev := func(n int) []*pb.PSpanEvent { return make([]*pb.PSpanEvent, n) }
	spans := &pb.PSpanMessageBatch{Span: []*pb.PSpanMessage{
		{Field: &pb.PSpanMessage_Span{Span: &pb.PSpan{Version: 1, SpanEvent: filled(ev(2))}}},
		{Field: &pb.PSpanMessage_Span{Span: &pb.PSpan{Version: 1, SpanEvent: filled(ev(1))}}},
	}}
	if _, err := pb.NewSpanClient(cc).SendSpanBatch(ctx, spans); err != nil {
		t.Fatal(err)
	}
	stream, err := pb.NewSpanClient(cc).SendSpan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chunk := &pb.PSpanMessage{Field: &pb.PSpanMessage_SpanChunk{SpanChunk: &pb.PSpanChunk{Version: 1, SpanEvent: filled(ev(2))}}}
	if err := stream.Send(chunk); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
}

func filled(evs []*pb.PSpanEvent) []*pb.PSpanEvent {
	for i := range evs {
		evs[i] = &pb.PSpanEvent{Sequence: int32(i), Depth: 1}
	}
	return evs
}
