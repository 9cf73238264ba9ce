package trace

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// badgerAssembler opens dir and runs an assembler on it, as the input does.
type badgerAssembler struct {
	db   *cache.DB
	meta *meta.Store
	asm  *Assembler
	sink *sink
}

func openBadgerAssembler(t *testing.T, dir string, clock *fakeClock) *badgerAssembler {
	t.Helper()
	db, err := cache.OpenBadger(dir, cache.DefaultConfig(), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	b := &badgerAssembler{db: db, sink: newSink()}
	if b.meta, err = meta.NewStore(db.Namespace("meta"), meta.Options{Now: clock.Now}); err != nil {
		t.Fatal(err)
	}
	// No metadata in these tests: names are not the point, so nothing waits for them.
	b.asm, err = New(Options{Store: db.Namespace("trace"), Meta: b.meta, Emit: b.sink.emit, Now: clock.Now,
		DelMessage: true, MetadataWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.asm.Start(); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *badgerAssembler) close(t *testing.T) {
	t.Helper()
	if err := b.asm.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPendingChunksSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	chunk, span := chunkThenSpanMessages()

	first := openBadgerAssembler(t, dir, clock)
	if err := first.asm.ConsumeChunk(context.Background(), javaA, chunk); err != nil {
		t.Fatal(err)
	}
	first.close(t)
	if n := first.sink.numBatches(); n != 0 {
		t.Fatalf("Stop emitted the pending chunk (%d batches); it must stay for the next start", n)
	}

	clock.Advance(time.Minute) // restarted within ChunkWait
	second := openBadgerAssembler(t, dir, clock)
	defer second.close(t)
	if st := second.asm.Stats(); st.PendingSpans != 1 {
		t.Fatalf("restart found %d pending spans, want 1", st.PendingSpans)
	}
	if err := second.asm.ConsumeSpan(context.Background(), javaA, span); err != nil {
		t.Fatal(err)
	}
	pts := second.sink.points()
	if len(pts) != 6 {
		t.Fatalf("%d points after the span arrived, want entry + 5 events", len(pts))
	}
	if st := second.asm.Stats(); st.PendingSpans != 0 || st.PartialSpans != 0 {
		t.Errorf("stats %+v", st)
	}
	left := 0
	_ = second.db.Namespace("trace").Scan([]byte{prefixPending}, func(_, _ []byte) error { left++; return nil })
	if left != 0 {
		t.Errorf("%d chunk records left in the store after the merge", left)
	}
}

func TestRestartAfterChunkWaitEmitsPartial(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	chunk, _ := chunkThenSpanMessages()
	first := openBadgerAssembler(t, dir, clock)
	if err := first.asm.ConsumeChunk(context.Background(), javaA, chunk); err != nil {
		t.Fatal(err)
	}
	first.close(t)

	clock.Advance(DefaultChunkWait + time.Second) // down for longer than the wait
	second := openBadgerAssembler(t, dir, clock)
	defer second.close(t)
	if err := second.asm.processDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := second.asm.Stats(); st.PartialSpans != 1 || len(second.sink.points()) != 3 {
		t.Errorf("stats %+v, %d points", st, len(second.sink.points()))
	}
}

// The background loop emits a held span as soon as its metadata is stored: meta.Store
// calls MetadataArrived from OnPut, which wakes the loop.
func TestBackgroundWakeUpOnMetadata(t *testing.T) {
	h := newHarness(t)
	if err := h.asm.Start(); err != nil {
		t.Fatal(err)
	}
	lateC := &meta.Sender{AgentKey: meta.AgentKey{AgentID: "late-c", StartTime: 5}, AgentName: "late-c", ApplicationName: "mail"}
	h.span(lateC, &pb.PSpan{TransactionId: txID("late-c", 5, 1), SpanId: 1, ParentSpanId: -1, StartTime: t0, ApiId: 1})
	if h.asm.Stats().Held != 1 {
		t.Fatal("span not held")
	}
	// The fake clock never moves: only the wake-up can release the span.
	if err := h.meta.PutAPI(lateC.AgentKey, &pb.PApiMetaData{ApiId: 1, ApiInfo: "HTTP Server"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.sink.notify:
	case <-time.After(30 * time.Second): // a guard against a hang, not a timing assertion
		t.Fatal("held span not emitted after its metadata arrived")
	}
	if op, _ := h.sink.points()[0].Tag("operation"); op != "HTTP Server" {
		t.Errorf("operation %q", op)
	}
}

// Stop writes nothing with placeholders: the span waiting for metadata and the chunk
// waiting for its span both stay in the store for the next start.
func TestStopKeepsHeldAndPending(t *testing.T) {
	h := newHarness(t)
	if err := h.asm.Start(); err != nil {
		t.Fatal(err)
	}
	ghost := &meta.Sender{AgentKey: meta.AgentKey{AgentID: "ghost", StartTime: 1}, AgentName: "ghost", ApplicationName: "g"}
	h.span(ghost, &pb.PSpan{TransactionId: txID("ghost", 1, 1), SpanId: 1, ParentSpanId: -1, StartTime: t0, ApiId: 3})
	chunk, _ := chunkThenSpanMessages()
	h.chunk(javaA, chunk)
	if err := h.asm.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(h.sink.points()); n != 0 {
		t.Fatalf("Stop emitted %d points, want none (the held span waits in the store)", n)
	}
	count := func(prefix byte) int {
		n := 0
		_ = h.db.Namespace("trace").Scan([]byte{prefix}, func(_, _ []byte) error { n++; return nil })
		return n
	}
	if pending, held := count(prefixPending), count(prefixHeld); pending != 1 || held != 1 {
		t.Errorf("%d pending chunk and %d held span records after Stop, want 1 and 1", pending, held)
	}
	if st := h.asm.Stats(); st.Unresolved["api"] != 0 || st.StoreErrors != 0 {
		t.Errorf("stats %+v", st)
	}
	if err := h.asm.ConsumeSpan(context.Background(), javaA, &pb.PSpan{TransactionId: txID("", 1, 1)}); !errors.Is(err, ErrStopped) {
		t.Errorf("ConsumeSpan after Stop: %v", err)
	}
	if err := h.asm.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStopBeforeStart(t *testing.T) {
	h := newHarness(t)
	if err := h.asm.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := h.asm.Start(); err == nil {
		t.Error("Start after Stop succeeded")
	}
}

func TestHeldCapEmitsOldestEarly(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxHeldSpans = 2 })
	ghost := &meta.Sender{AgentKey: meta.AgentKey{AgentID: "ghost", StartTime: 1}, AgentName: "ghost", ApplicationName: "g"}
	for i := int64(1); i <= 3; i++ {
		h.span(ghost, &pb.PSpan{TransactionId: txID("ghost", 1, i), SpanId: i, ParentSpanId: -1, StartTime: t0, ApiId: 9})
	}
	st := h.asm.Stats()
	if st.Held != 2 || st.HeldOverflow != 1 || st.Unresolved["api"] != 1 {
		t.Fatalf("stats %+v", st)
	}
	if id := fieldString(h.sink.points()[0], "span_id"); id != "1" {
		t.Errorf("overflow emitted span %s, want the oldest (1)", id)
	}
	// A span bigger than the whole byte cap is never held.
	small := newHarness(t, func(o *Options) { o.MaxHeldBytes = 100 })
	small.span(ghost, &pb.PSpan{TransactionId: txID("ghost", 1, 1), SpanId: 1, ParentSpanId: -1, ApiId: 9})
	if st := small.asm.Stats(); st.Held != 0 || st.HeldOverflow != 1 || small.sink.numBatches() != 1 {
		t.Errorf("oversized span: %+v", st)
	}
}

func TestPendingCapEmitsOldestAsPartial(t *testing.T) {
	h := goldenHarness(t, func(o *Options) { o.MaxPendingSpans = 2 })
	for i := int64(1); i <= 3; i++ {
		h.chunk(javaA, &pb.PSpanChunk{TransactionId: txID("java-a", 1, i), SpanId: i, KeyTime: t0,
			SpanEvent: []*pb.PSpanEvent{ev(1, 2, 0, 1, 5000, 3)}})
		h.clock.Advance(time.Second)
	}
	st := h.asm.Stats()
	if st.PendingSpans != 2 || st.PendingOverflow != 1 || st.PartialSpans != 1 {
		t.Fatalf("stats %+v", st)
	}
	p := h.sink.points()[0]
	if fieldString(p, "parent_id") != "1" {
		t.Errorf("overflow emitted the chunk of span %s, want the oldest (1)", fieldString(p, "parent_id"))
	}
	if v, _ := p.Tag("partial"); v != "true" {
		t.Error("early-emitted chunk not tagged partial")
	}
	bytesCap := goldenHarness(t, func(o *Options) { o.MaxPendingBytes = 1 })
	bytesCap.chunk(javaA, &pb.PSpanChunk{TransactionId: txID("java-a", 1, 1), SpanId: 1, KeyTime: t0,
		SpanEvent: []*pb.PSpanEvent{ev(1, 2, 0, 1, 5000, 3)}})
	if st := bytesCap.asm.Stats(); st.PendingOverflow != 1 || st.PendingBytes != 0 || bytesCap.sink.numBatches() != 1 {
		t.Errorf("byte cap: %+v", st)
	}
}

// A late chunk whose parent may be in a chunk that never comes waits ChunkWait, then goes
// out linked as well as the skeleton allows (not partial: the span is known).
func TestDeferredLateChunkExpires(t *testing.T) {
	h := goldenHarness(t)
	h.span(javaA, shopSpan(10, 20, 30, ev(0, 1, 0, 30, 5051, 2)))
	h.chunk(javaA, &pb.PSpanChunk{TransactionId: txID("java-a", 1700000000000, 20), SpanId: 10, KeyTime: t0 + 3,
		SpanEvent: []*pb.PSpanEvent{ev(7, 3, 0, 1, 5000, 3)}}) // seqs 1..6 never come
	if st := h.asm.Stats(); st.DeferredChunks != 1 || st.PendingSpans != 1 {
		t.Fatalf("stats %+v", st)
	}
	h.clock.Advance(DefaultChunkWait)
	h.due()
	st := h.asm.Stats()
	if st.PartialSpans != 0 || st.LateChunks != 1 || st.PendingSpans != 0 {
		t.Fatalf("stats %+v", st)
	}
	last := h.sink.points()[len(h.sink.points())-1]
	if fieldString(last, "parent_id") != "10" {
		t.Errorf("parent %s, want the span (no depth-2 event is known)", fieldString(last, "parent_id"))
	}
}

func TestResentChunkIsNotEmittedTwice(t *testing.T) {
	h := goldenHarness(t)
	chunk, span := chunkThenSpanMessages()
	h.chunk(javaA, chunk)
	h.span(javaA, span)
	h.chunk(javaA, chunk) // a hedged re-send after the merge
	st := h.asm.Stats()
	if st.DuplicateEvents != 3 || len(h.sink.points()) != 6 {
		t.Errorf("stats %+v, %d points", st, len(h.sink.points()))
	}
}

// failingStore refuses writes, like a full cache.
type failingStore struct{ cache.Store }

func (failingStore) Set([]byte, []byte, time.Duration) error { return cache.ErrFull }

func TestStoreRefusalEmitsInsteadOfLosing(t *testing.T) {
	h := goldenHarness(t, func(o *Options) { o.Store = failingStore{o.Store} })
	chunk, _ := chunkThenSpanMessages()
	h.chunk(javaA, chunk)
	st := h.asm.Stats()
	if st.StoreErrors == 0 || st.PartialSpans != 1 || len(h.sink.points()) != 3 {
		t.Errorf("stats %+v, %d points", st, len(h.sink.points()))
	}
}

func TestRefusesSpansWithoutTransaction(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.asm.ConsumeSpan(ctx, javaA, &pb.PSpan{SpanId: 1}); !errors.Is(err, ErrNoTransactionID) {
		t.Errorf("span: %v", err)
	}
	if err := h.asm.ConsumeChunk(ctx, javaA, &pb.PSpanChunk{SpanId: 1}); !errors.Is(err, ErrNoTransactionID) {
		t.Errorf("chunk: %v", err)
	}
	if st := h.asm.Stats(); st.Invalid != 2 {
		t.Errorf("invalid = %d", st.Invalid)
	}
}

func TestEmitErrorReachesTheCaller(t *testing.T) {
	h := newHarness(t)
	h.sink.fail = errors.New("queue full")
	err := h.asm.ConsumeSpan(context.Background(), javaA, &pb.PSpan{TransactionId: txID("", 1, 1), SpanId: 1, ParentSpanId: -1})
	if err == nil || !strings.Contains(err.Error(), "queue full") {
		t.Errorf("err = %v", err)
	}
}

// More agents than the dirty list holds between two wake-ups still get their spans out.
func TestManyAgentsMetadataArrive(t *testing.T) {
	h := newHarness(t)
	n := maxDirty + 6
	agents := make([]*meta.Sender, n)
	for i := range agents {
		agents[i] = &meta.Sender{AgentKey: meta.AgentKey{AgentID: "a" + strings.Repeat("x", i%5), StartTime: int64(i + 1)}, ApplicationName: "app"}
		h.span(agents[i], &pb.PSpan{TransactionId: txID("", 1, 1), SpanId: int64(i), ParentSpanId: -1, ApiId: 1})
	}
	for _, a := range agents {
		if err := h.meta.PutAPI(a.AgentKey, &pb.PApiMetaData{ApiId: 1, ApiInfo: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	h.due()
	if st := h.asm.Stats(); st.Held != 0 || st.Unresolved["api"] != 0 || h.sink.numBatches() != n {
		t.Errorf("stats %+v, %d batches", st, h.sink.numBatches())
	}
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	h := newHarness(t, func(o *Options) { o.Metrics = reg })
	h.span(goB, &pb.PSpan{TransactionId: txID("", 1, 1), SpanId: 1, ParentSpanId: -1,
		SpanEvent: []*pb.PSpanEvent{ev(0, 1, 0, 1, 1801, 0)}})
	for name, want := range map[string]float64{
		"apmkit_pinpoint_trace_spans_total":  1,
		"apmkit_pinpoint_trace_events_total": 1,
		"apmkit_pinpoint_trace_held_spans":   0,
	} {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, mf := range mfs {
			if mf.GetName() == name {
				found = true
				if got := mf.GetMetric()[0].GetCounter().GetValue() + mf.GetMetric()[0].GetGauge().GetValue(); got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
		}
		if !found {
			t.Errorf("%s not registered", name)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "apmkit_pinpoint_trace_unresolved_total"); err != nil || n != int(numRefKinds) {
		t.Errorf("unresolved_total series: %d, %v", n, err)
	}
	// The same registerer twice is a configuration error, reported by New.
	if _, err := New(Options{Store: h.db.Namespace("x"), Meta: h.meta, Emit: h.sink.emit, Metrics: reg}); err == nil {
		t.Error("second registration on the same registerer succeeded")
	}
}

func TestOptionsValidation(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without Store, Meta and Emit succeeded")
	}
	o, err := Options{Store: cache.NewMemory(cache.Config{}), Meta: &meta.Store{}, Emit: newSink().emit, MetadataWait: -1}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.MetadataWait != -1 || o.ChunkWait != DefaultChunkWait || o.PendingTTL != DefaultPendingTTL || o.Types == nil {
		t.Errorf("defaults %+v", o)
	}
}

// Skeletons live in memory; Stop writes them to the store so a chunk that arrives after
// its span, across a graceful restart, is still linked to it.
func TestSkeletonsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	chunk, span := chunkThenSpanMessages()
	first := openBadgerAssembler(t, dir, clock)
	if err := first.asm.ConsumeSpan(context.Background(), javaA, span); err != nil {
		t.Fatal(err)
	}
	first.close(t)

	clock.Advance(time.Minute)
	second := openBadgerAssembler(t, dir, clock)
	if st := second.asm.Stats(); st.Skeletons != 1 {
		second.close(t)
		t.Fatalf("restart found %d skeletons", st.Skeletons)
	}
	if err := second.asm.ConsumeChunk(context.Background(), javaA, chunk); err != nil {
		t.Fatal(err)
	}
	st := second.asm.Stats()
	if st.LateChunks != 1 || st.PendingSpans != 0 || len(second.sink.points()) != 3 {
		t.Errorf("stats %+v, %d points", st, len(second.sink.points()))
	}
	// Expired skeletons are not brought back.
	second.close(t)
	clock.Advance(2 * DefaultChunkWait)
	third := openBadgerAssembler(t, dir, clock)
	defer third.close(t)
	if st := third.asm.Stats(); st.Skeletons != 0 {
		t.Errorf("expired skeletons restored: %d", st.Skeletons)
	}
}

func TestSkeletonCacheBounds(t *testing.T) {
	c := newSkeletons(3*(skeletonOverhead+11), time.Second)
	for _, k := range []string{"k1", "k2", "k3", "k4"} {
		c.put(k, []byte("123456789"), 1000)
	}
	if _, ok := c.get("k1", 1000); ok {
		t.Error("oldest skeleton kept beyond the byte cap")
	}
	if _, ok := c.get("k4", 1999); !ok {
		t.Error("newest skeleton missing")
	}
	if _, ok := c.get("k4", 2000); ok {
		t.Error("skeleton kept past its lifetime")
	}
	if n, b := c.size(); n != 2 || b != 2*(skeletonOverhead+11) {
		t.Errorf("size %d %d", n, b)
	}
}
