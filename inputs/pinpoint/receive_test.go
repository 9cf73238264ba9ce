package pinpoint

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/inputs/inputstest"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
)

func sendRawBatch(ctx context.Context, conn *grpc.ClientConn, batch replay.Raw) error {
	var out replay.Raw
	return conn.Invoke(ctx, "/v1.Span/SendSpanBatch", &batch, &out, grpc.ForceCodec(replay.RawCodec{}))
}

func budgetInput(t *testing.T, wait time.Duration) (*Input, *inputstest.Host) {
	t.Helper()
	h := inputstest.New(t, "")
	in := startInput(t, h, func(c *Config) {
		c.ReceiveBudgetMB = 8 // 7 MiB for spans and stats
		c.ReceiveBudgetWait = wait
	})
	return in, h
}

// TestBatchOverBudget: a batch that would take more than the whole budget is refused before
// it is decoded, and the next one is served.
func TestBatchOverBudget(t *testing.T) {
	in, _ := budgetInput(t, time.Second)
	conn := dial(t, in.Addrs()[0])
	ctx := agentCtx("a1", 1)
	err := sendRawBatch(ctx, conn, hollowBatch(1, 100_000)) // 200 KB that decode to 16 MB
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "receive_budget_mb") {
		t.Fatalf("got %v, want RESOURCE_EXHAUSTED naming receive_budget_mb", err)
	}
	if err := sendRawBatch(ctx, conn, hollowBatch(10, 100)); err != nil {
		t.Fatal(err)
	}
	st := in.counters.snapshot()
	if st.Rejected[reasonOverBudget] != 1 || st.Messages["PSpan"] != 10 {
		t.Fatalf("rejected %v, messages %v", st.Rejected, st.Messages)
	}
	if b := in.budget.stats(); b.InUse != 0 {
		t.Fatalf("budget after the calls: %+v", b)
	}
}

// TestBatchWaitsForBudget holds a batch in the consumer so the budget has no room for a
// second one: the second waits receive_budget_wait and is answered RESOURCE_EXHAUSTED; sent
// again, it waits until the first is handed on, and is taken.
func TestBatchWaitsForBudget(t *testing.T) {
	in, _ := budgetInput(t, guard)
	block := newBlockingSpans(t)
	in.spans = block
	conn := dial(t, in.Addrs()[0])
	ctx := agentCtx("a1", 1)
	batch := hollowBatch(100, 250) // about 4.3 MiB charged: two do not fit in 7
	first := make(chan error, 1)
	go func() { first <- sendRawBatch(ctx, conn, batch) }()
	waitFor(t, "first batch in the consumer", block.entered)

	// With a deadline, a call waits at most half of it: the agent hears RESOURCE_EXHAUSTED
	// before it gives up.
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := sendRawBatch(dctx, conn, batch)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "waited") {
		t.Fatalf("second batch: %v, want RESOURCE_EXHAUSTED after a wait", err)
	}
	second := make(chan error, 1) // the same batch again, without a deadline: waits for room
	go func() { second <- sendRawBatch(ctx, conn, batch) }()
	waitUntil(t, "second batch waits for the budget", func() bool { return in.budget.stats().Waiting == 1 })
	block.unblock()
	for _, res := range []chan error{first, second} {
		select {
		case err := <-res:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(guard):
			t.Fatal("batch not answered")
		}
	}
	if n := block.spans.Load(); n != 200 {
		t.Fatalf("%d spans taken, want 200", n)
	}
	if st := in.counters.snapshot(); st.Rejected[reasonBudgetExhausted] != 1 {
		t.Fatalf("rejected %v", st.Rejected)
	}
	if b := in.budget.stats(); b.InUse != 0 || b.PeakBytes == 0 {
		t.Fatalf("budget after the calls: %+v", b)
	}
	if v := testutil.ToFloat64(in.budget.waits); v != 2 {
		t.Fatalf("%v waits counted, want 2", v)
	}
}

// TestStreamWaitsForBudget: a stream message that finds no room waits (the stream reads
// nothing more meanwhile) and is handled once room frees.
func TestStreamWaitsForBudget(t *testing.T) {
	in, _ := budgetInput(t, guard)
	block := newBlockingSpans(t)
	in.spans = block
	conn := dial(t, in.Addrs()[0])
	ctx := agentCtx("a1", 1)
	first := make(chan error, 1)
	go func() { first <- sendRawBatch(ctx, conn, hollowBatch(100, 250)) }()
	waitFor(t, "batch in the consumer", block.entered)

	stream := openSpanStream(t, conn)
	big := replay.Raw(hollowSpan(1000, 4000)) // about 3 MiB charged with its handling
	if err := stream.SendMsg(&big); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "stream message waits for the budget", func() bool { return in.budget.stats().Waiting == 1 })
	block.unblock()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var reply replay.Raw
	if err := stream.RecvMsg(&reply); err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	if n := block.spans.Load(); n != 101 {
		t.Fatalf("%d spans taken, want 101", n)
	}
	if b := in.budget.stats(); b.InUse != 0 {
		t.Fatalf("budget after the calls: %+v", b)
	}
}

// TestStreamWaitIsBounded: a stream message that waits longer than 10 times
// receive_budget_wait ends its stream with RESOURCE_EXHAUSTED (the agent opens a new one).
func TestStreamWaitIsBounded(t *testing.T) {
	in, _ := budgetInput(t, time.Millisecond)
	hold, err := in.budget.acquire(context.Background(), classData, 6<<20, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer in.budget.release(hold)
	stream := openSpanStream(t, dial(t, in.Addrs()[0]))
	big := replay.Raw(hollowSpan(1000, 4000))
	if err := stream.SendMsg(&big); err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	var reply replay.Raw
	if err := stream.RecvMsg(&reply); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("stream ended with %v, want RESOURCE_EXHAUSTED", err)
	}
	if st := in.counters.snapshot(); st.Rejected[reasonBudgetExhausted] != 1 {
		t.Fatalf("rejected %v", st.Rejected)
	}
}

func openSpanStream(t *testing.T, conn *grpc.ClientConn) grpc.ClientStream {
	t.Helper()
	stream, err := conn.NewStream(agentCtx("a1", 1), &grpc.StreamDesc{ClientStreams: true}, "/v1.Span/SendSpan", grpc.ForceCodec(replay.RawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// TestStreamMessageOverBudgetIsSkipped: a stream message that alone costs more than the
// budget is counted and skipped, never decoded; the stream goes on.
func TestStreamMessageOverBudgetIsSkipped(t *testing.T) {
	in, _ := budgetInput(t, time.Second)
	conn := dial(t, in.Addrs()[0])
	stream, err := conn.NewStream(agentCtx("a1", 1), &grpc.StreamDesc{ClientStreams: true}, "/v1.Span/SendSpan", grpc.ForceCodec(replay.RawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	good, _ := proto.Marshal(validSpan(2))
	for _, m := range []replay.Raw{hollowSpan(1, 100_000), good} {
		if err := stream.SendMsg(&m); err != nil {
			t.Fatal(err)
		}
	}
	_ = stream.CloseSend()
	var reply replay.Raw
	if err := stream.RecvMsg(&reply); err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	st := in.counters.snapshot()
	if st.Rejected[reasonOverBudget] != 1 || st.Messages["PSpan"] != 1 {
		t.Fatalf("rejected %v, messages %v", st.Rejected, st.Messages)
	}
	if b := in.budget.stats(); b.InUse != 0 {
		t.Fatalf("budget after the stream: %+v", b)
	}
}

// TestMalformedStreamMessagesCounted sends every kind of malformed message on span and
// stat streams: each is counted under its reason, the streams go on and are answered OK.
func TestMalformedStreamMessagesCounted(t *testing.T) {
	in := startInput(t, inputstest.New(t, ""), nil)
	conn := dial(t, in.Addrs()[0])
	ctx := agentCtx("a1", 1)
	raw := func(m proto.Message) replay.Raw {
		b, _ := proto.Marshal(m)
		return b
	}
	badUTF8 := validSpan(5)
	badUTF8.GetSpan().AcceptEvent = &pb.PAcceptEvent{Rpc: "ok"}
	utf8Bytes := raw(badUTF8)
	i := strings.Index(string(utf8Bytes), "ok")
	utf8Bytes[i] = 0xff
	version := validSpan(3)
	version.GetSpan().Version = 9
	noTx := validSpan(4)
	noTx.GetSpan().TransactionId = nil
	send := func(method string, msgs ...replay.Raw) {
		t.Helper()
		stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, method, grpc.ForceCodec(replay.RawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if err := stream.SendMsg(&m); err != nil {
				t.Fatal(err)
			}
		}
		_ = stream.CloseSend()
		var reply replay.Raw
		if err := stream.RecvMsg(&reply); err != nil {
			t.Fatalf("%s ended with %v", method, err)
		}
	}
	send("/v1.Span/SendSpan",
		replay.Raw{0xff, 0xff, 0xff, 0xff, 0x0f}, raw(validSpan(1)), utf8Bytes, raw(&pb.PSpanMessage{}),
		raw(version), raw(noTx), raw(validSpan(2)))
	send("/v1.Stat/SendAgentStat", raw(&pb.PStatMessage{}), replay.Raw{0x0a, 0x05, 0x01})

	want := map[[2]string]float64{
		{"SendSpan", malformedNotProtobuf}:        1,
		{"SendSpan", malformedUTF8}:               1,
		{"SendSpan", malformedEmpty}:              1,
		{"SendSpan", malformedVersion}:            1,
		{"SendSpan", malformedNoTransaction}:      1,
		{"SendAgentStat", malformedEmpty}:         1,
		{"SendAgentStat", malformedNotProtobuf}:   1,
		{"SendSpanBatch", malformedNotProtobuf}:   0,
		{"SendAgentStat", malformedNoTransaction}: 0,
	}
	for k, n := range want {
		if got := testutil.ToFloat64(in.counters.malformed.WithLabelValues(k[0], k[1])); got != n {
			t.Errorf("malformed{method=%s,reason=%s} = %v, want %v", k[0], k[1], got, n)
		}
	}
	if st := in.counters.snapshot(); st.Messages["PSpan"] != 4 {
		t.Errorf("messages %v", st.Messages)
	}
}

// TestMaxConnections: connections beyond max_connections are closed at once, and counted;
// when one ends, the next is served.
func TestMaxConnections(t *testing.T) {
	in := startInput(t, inputstest.New(t, ""), func(c *Config) { c.MaxConnections = 2 })
	addrs := in.Addrs()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for _, addr := range addrs[:2] { // the limit is over all of the input's addresses
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitUntil(t, "two connections open", func() bool { return in.conns.open.Load() == 2 })
	extra, err := net.Dial("tcp", addrs[2])
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(guard))
	if _, err := extra.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("connection beyond the limit: read %v, want it closed", err)
	}
	if v := testutil.ToFloat64(in.conns.refused); v != 1 {
		t.Fatalf("%v refused, want 1", v)
	}
	// A real agent call is refused while the limit is reached, and served once a
	// connection ended.
	cctx, cancel := context.WithTimeout(agentCtx("a1", 1), guard)
	defer cancel()
	refused := dial(t, addrs[0])
	if _, err := pb.NewAgentClient(refused).RequestAgentInfo(cctx, &pb.PAgentInfo{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("call beyond the limit: %v, want UNAVAILABLE", err)
	}
	refused.Close() // or it reconnects in the background and takes the place freed next
	held[0].Close()
	waitUntil(t, "a connection ended", func() bool { return in.conns.open.Load() == 1 })
	if _, err := pb.NewAgentClient(dial(t, addrs[0])).RequestAgentInfo(cctx, &pb.PAgentInfo{}); err != nil {
		t.Fatalf("call once there was room: %v", err)
	}
	waitUntil(t, "stats count the open connections", func() bool { return in.Stats().(Stats).Connections == 2 })
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestMaxConcurrentStreams reads the server's HTTP/2 SETTINGS: it announces
// max_concurrent_streams to the agents.
func TestMaxConcurrentStreams(t *testing.T) {
	in := startInput(t, inputstest.New(t, ""), func(c *Config) { c.MaxConcurrentStreams = 7 })
	c, err := net.Dial("tcp", in.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(guard))
	// Client preface and an empty SETTINGS frame.
	if _, err := c.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	for {
		var hdr [9]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			t.Fatal(err)
		}
		payload := make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
		if _, err := io.ReadFull(c, payload); err != nil {
			t.Fatal(err)
		}
		if hdr[3] != 4 || hdr[4]&1 != 0 { // not SETTINGS, or its ACK
			continue
		}
		for p := payload; len(p) >= 6; p = p[6:] {
			if binary.BigEndian.Uint16(p) == 3 { // SETTINGS_MAX_CONCURRENT_STREAMS
				if v := binary.BigEndian.Uint32(p[2:]); v != 7 {
					t.Fatalf("MAX_CONCURRENT_STREAMS %d, want 7", v)
				}
				return
			}
		}
		t.Fatal("the server's SETTINGS have no MAX_CONCURRENT_STREAMS")
	}
}

// TestStopLeavesNoGoroutine: after calls of every kind (which start stream readers, the
// budget's waits and the lease refresher), Stop leaves no goroutine of the input behind.
func TestStopLeavesNoGoroutine(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })                                          // runs last: after the input and the cache closed
	in := startInput(t, inputstest.New(t, ""), func(c *Config) { c.MetadataTTL = time.Second }) // the refresher ticks
	conn := dial(t, in.Addrs()[0])
	ctx := agentCtx("a1", 1)
	if _, err := pb.NewAgentClient(conn).RequestAgentInfo(ctx, &pb.PAgentInfo{Hostname: "h"}); err != nil {
		t.Fatal(err)
	}
	if err := sendRawBatch(ctx, conn, hollowBatch(3, 3)); err != nil {
		t.Fatal(err)
	}
	stream := openSpanStream(t, conn)
	good := replay.Raw(hollowSpan(9, 1))
	if err := stream.SendMsg(&good); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the stream's span taken", func() bool { return in.counters.snapshot().Messages["PSpan"] == 4 })
	stopInput(t, in) // with the stream still open
	conn.Close()
}
