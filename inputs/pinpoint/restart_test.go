package pinpoint

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/apmkit/apmkit/inputs/inputstest"
	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/point"
)

// guard bounds every wait of these tests: a hang fails, nothing is timed.
const guard = 30 * time.Second

// blockingSpans holds the first span it gets until unblock, and counts the spans taken.
type blockingSpans struct {
	discard
	entered chan struct{}
	release chan struct{}
	first   atomic.Bool
	once    sync.Once
	spans   atomic.Int64
}

func newBlockingSpans(t *testing.T) *blockingSpans {
	b := &blockingSpans{entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(b.unblock) // a failed test must not leave the input's Stop waiting
	return b
}

func (b *blockingSpans) unblock() { b.once.Do(func() { close(b.release) }) }

func (b *blockingSpans) ConsumeSpan(context.Context, *meta.Sender, *pb.PSpan) error {
	if b.first.CompareAndSwap(false, true) {
		close(b.entered)
		<-b.release
	}
	b.spans.Add(1)
	return nil
}

func waitFor(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(guard):
		t.Fatalf("%s: still waiting after %s", what, guard)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %s", what, guard)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStopDrainsSpansBeforeMetadata stops the input while a span call is being handled
// and a span stream is open: during the drain, span and stat calls are refused with
// UNAVAILABLE and the open stream is ended, while agent info and metadata are still
// answered and stored; Stop returns once the span call in flight is done.
func TestStopDrainsSpansBeforeMetadata(t *testing.T) {
	h := inputstest.New(t, "")
	in := startInput(t, h, nil)
	in.grace = 10 * time.Minute // the drain must end because the calls end, not the clock
	block := newBlockingSpans(t)
	in.spans = block
	agentAddr, statAddr, spanAddr := in.Addrs()[0], in.Addrs()[1], in.Addrs()[2]
	spans := pb.NewSpanClient(dial(t, spanAddr))
	ctx := agentCtx("a1", 1)

	busy, err := spans.SendSpan(ctx) // its first span blocks in the consumer
	if err != nil {
		t.Fatal(err)
	}
	if err := busy.Send(validSpan(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first span in the consumer", block.entered)
	idleCtx, cancelIdle := context.WithTimeout(ctx, guard) // a stream the drain leaves open fails, not hangs
	defer cancelIdle()
	idle, err := spans.SendSpan(idleCtx) // open, one span taken, then nothing
	if err != nil {
		t.Fatal(err)
	}
	if err := idle.Send(validSpan(2)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "second span taken", func() bool { return block.spans.Load() == 1 })

	stopped := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		stopped <- in.Stop(sctx)
	}()
	waitFor(t, "drain begins", in.data.draining())

	// The idle stream is ended by the drain, with UNAVAILABLE. Waiting for the end without
	// closing the stream first: a close that reached the server before the drain ended the
	// stream would be a clean end, and the test would race with its own close.
	if err := idle.RecvMsg(new(emptypb.Empty)); status.Code(err) != codes.Unavailable {
		t.Errorf("open span stream at stop: %v, want UNAVAILABLE", err)
	}
	// New data calls are refused.
	if _, err := spans.SendSpanBatch(ctx, &pb.PSpanMessageBatch{Span: []*pb.PSpanMessage{validSpan(3)}}); status.Code(err) != codes.Unavailable {
		t.Errorf("span batch during the drain: %v, want UNAVAILABLE", err)
	}
	late, err := spans.SendSpan(ctx)
	if err == nil {
		_, err = late.CloseAndRecv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("new span stream during the drain: %v, want UNAVAILABLE", err)
	}
	stat, err := pb.NewStatClient(dial(t, statAddr)).SendAgentStat(ctx)
	if err == nil {
		_, err = stat.CloseAndRecv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("stat stream during the drain: %v, want UNAVAILABLE", err)
	}
	// Agent info and metadata are still answered and stored.
	conn := dial(t, agentAddr)
	if res, err := pb.NewAgentClient(conn).RequestAgentInfo(ctx, &pb.PAgentInfo{Hostname: "h1"}); err != nil || !res.GetSuccess() {
		t.Errorf("agent info during the drain: %v %v", res, err)
	}
	if res, err := pb.NewMetadataClient(conn).RequestApiMetaData(ctx, &pb.PApiMetaData{ApiId: 7, ApiInfo: "main.handler()"}); err != nil || !res.GetSuccess() {
		t.Errorf("api metadata during the drain: %v %v", res, err)
	}
	if api, ok := in.Meta().API(meta.AgentKey{AgentID: "a1", StartTime: 1}, 7); !ok || api.Info != "main.handler()" {
		t.Errorf("metadata sent during the drain not stored: %v %+v", ok, api)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while a span call was still being handled", err)
	default:
	}

	block.unblock()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(guard):
		t.Fatal("Stop did not return after the last span call ended")
	}
	if _, err := busy.CloseAndRecv(); status.Code(err) != codes.Unavailable {
		t.Errorf("busy span stream: %v, want UNAVAILABLE", err)
	}
	if n := block.spans.Load(); n != 2 {
		t.Errorf("%d spans taken, want 2 (the one in hand at the drain is kept)", n)
	}
	if got := in.counters.snapshot().Rejected[reasonStopping]; got != 3 {
		t.Errorf("%d calls refused as stopping, want 3 (batch, span stream, stat stream)", got)
	}
}

// An open, idle span stream does not hold Stop for the grace period.
func TestStopEndsIdleSpanStream(t *testing.T) {
	in := startInput(t, inputstest.New(t, ""), nil)
	in.grace = 10 * time.Minute
	stream, err := pb.NewSpanClient(dial(t, in.Addrs()[2])).SendSpan(agentCtx("a1", 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(validSpan(1)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "span counted", func() bool { return in.counters.snapshot().Messages["PSpan"] == 1 })
	stopped := make(chan error, 1)
	go func() { stopped <- in.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(guard):
		t.Fatal("Stop waited for an idle span stream")
	}
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.Unavailable {
		t.Errorf("span stream: %v, want UNAVAILABLE", err)
	}
}

var metadataMethods = []string{
	"/v1.Metadata/RequestApiMetaData", "/v1.Metadata/RequestSqlMetaData", "/v1.Metadata/RequestSqlUidMetaData",
	"/v1.Metadata/RequestStringMetaData", "/v1.Metadata/RequestExceptionMetaData",
}

var placeholderRE = regexp.MustCompile(`\b(api|sql|sqluid|string|exception):-?[0-9a-f]+\b`)

// TestMetadataAfterRestartResolvesHeldSpans replays each recording's agent info and spans
// into one apmkit and its metadata only into the next one on the same data dir, as when an
// agent's metadata reaches only the process after a restart: every span is written once,
// with names, and no placeholder.
func TestMetadataAfterRestartResolvesHeldSpans(t *testing.T) {
	for _, rec := range recordings(t) {
		t.Run(rec.Name, func(t *testing.T) {
			wait := func(c *Config) { c.MetadataWait = 10 * time.Minute } // only the metadata releases them
			dir := t.TempDir()
			h1 := inputstest.New(t, dir)
			in1 := startInput(t, h1, wait)
			mustReplay(t, in1, rec.Only("/v1.Agent/RequestAgentInfo", "/v1.Span/SendSpan", "/v1.Span/SendSpanBatch"))
			held := in1.asm.Load().Stats().Held
			if held == 0 {
				t.Fatal("nothing waited for metadata in the first run")
			}
			stopInput(t, in1)
			h1.Close()

			h2 := inputstest.New(t, dir)
			in2 := startInput(t, h2, wait)
			if st := in2.asm.Load().Stats(); st.RestoredHeld != uint64(held) || st.Held != held {
				t.Fatalf("restored %d, holding %d; %d were held at the stop", st.RestoredHeld, st.Held, held)
			}
			mustReplay(t, in2, rec.Only(metadataMethods...))
			waitUntil(t, "held spans released", func() bool { return in2.asm.Load().Stats().Held == 0 })
			asm := in2.asm.Load()
			stopInput(t, in2)
			st := asm.Stats()

			pts := append(h1.Points(point.Tracing), h2.Points(point.Tracing)...)
			want := rec.Manifest.Int("messages.PSpan") + rec.Manifest.Int("traces.span_events.total")
			if int64(len(pts)) != want {
				t.Errorf("%d span points (%d before the restart), want %d", len(pts), len(h1.Points(point.Tracing)), want)
			}
			seen := map[string]bool{}
			for _, p := range pts {
				line, err := point.AppendLine(nil, p)
				if err != nil {
					t.Fatal(err)
				}
				if m := placeholderRE.Find(line); m != nil {
					t.Fatalf("placeholder %q in %s", m, line)
				}
				tr, _ := p.Field("trace_id")
				id, _ := p.Field("span_id")
				key := fmt.Sprint(tr.StringValue(), "/", id.StringValue())
				if seen[key] {
					t.Fatalf("span %s written twice", key)
				}
				seen[key] = true
			}
			for kind, n := range st.Unresolved {
				if n != 0 {
					t.Errorf("%d %s placeholders", n, kind)
				}
			}
			if st.RestoredUnresolved != 0 || st.StoreErrors != 0 {
				t.Errorf("trace stats %+v", st)
			}
		})
	}
}
