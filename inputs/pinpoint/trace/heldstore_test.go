package trace

import (
	"bytes"
	"context"
	"regexp"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/point"
)

// lateAgent sends spans before its metadata (as the Go agent does, its metadata queue
// running behind), and in these tests the metadata reaches only the next apmkit process.
var lateAgent = &meta.Sender{AgentKey: meta.AgentKey{AgentID: "late-d", StartTime: 1700000000700},
	AgentName: "late-d-pod", ApplicationName: "billing", ServiceType: 1010}

const lateTx = 1700000000700

// heldTestWait is MetadataWait in these tests.
const heldTestWait = 10 * time.Second

// feedLateAgent sends lateAgent's traffic: an orphan chunk emitted as a partial span after
// ChunkWait, two spans (one with SQL, an exception chain and an error string), a sync
// chunk that comes after its span, and async work. Each of the five units refers to names
// the agent has not sent yet. It returns the number of units.
func feedLateAgent(t testing.TB, ctx context.Context, a *Assembler, clock *fakeClock) int {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.ConsumeChunk(ctx, lateAgent, &pb.PSpanChunk{Version: 1, TransactionId: txID("late-d", lateTx, 9), SpanId: 9901, KeyTime: t0 + 7,
		SpanEvent: []*pb.PSpanEvent{ev(4, 2, 0, 2, 5000, 3), ev(5, 0, 1, 1, 5000, 3)}}))
	clock.Advance(DefaultChunkWait)
	must(a.processDue(ctx)) // the orphan chunk goes out as a partial span: held for names

	sqlEv := ev(1, 2, 1, 3, 2101, 3)
	sqlEv.NextEvent = nextEvent(-1, "db:3306", "billingdb")
	sqlEv.Annotation = []*pb.PAnnotation{
		{Key: 20, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_IntStringStringValue{
			IntStringStringValue: &pb.PIntStringStringValue{IntValue: 1, StringValue2: wrapperspb.String("7")}}}},
		{Key: -52, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_LongValue{LongValue: 77}}},
	}
	sqlEv.ExceptionInfo = &pb.PIntStringValue{IntValue: 7, StringValue: wrapperspb.String("deadlock")}
	spawn := ev(2, 0, 1, 1, 5000, 2)
	spawn.AsyncEvent = 1
	s1 := &pb.PSpan{Version: 1, TransactionId: txID("", lateTx, 1), SpanId: 9101, ParentSpanId: -1,
		StartTime: t0, Elapsed: 9, ApiId: 1, ServiceType: 1010, Err: 1,
		AcceptEvent: &pb.PAcceptEvent{Rpc: "/invoice", EndPoint: "billing:8080"},
		SpanEvent:   []*pb.PSpanEvent{ev(0, 1, 0, 9, 5051, 2), sqlEv, spawn}}
	must(a.ConsumeSpan(ctx, lateAgent, s1))
	must(a.ConsumeChunk(ctx, lateAgent, &pb.PSpanChunk{Version: 1, TransactionId: txID("late-d", lateTx, 1), SpanId: 9101, KeyTime: t0 + 3,
		LocalAsyncId: &pb.PLocalAsyncId{AsyncId: 1, Sequence: 1},
		SpanEvent:    []*pb.PSpanEvent{ev(0, 1, 0, 4, 100, 3), ev(1, 2, 1, 2, 5000, 2)}}))

	s2 := &pb.PSpan{Version: 1, TransactionId: txID("", lateTx, 2), SpanId: 9201, ParentSpanId: -1,
		StartTime: t0 + 1, Elapsed: 20, ApiId: 1, ServiceType: 1010,
		SpanEvent: []*pb.PSpanEvent{ev(0, 1, 0, 20, 5051, 2), ev(4, 2, 15, 2, 5000, 3)}}
	must(a.ConsumeSpan(ctx, lateAgent, s2))
	must(a.ConsumeChunk(ctx, lateAgent, &pb.PSpanChunk{Version: 1, TransactionId: txID("late-d", lateTx, 2), SpanId: 9201, KeyTime: t0 + 3,
		SpanEvent: []*pb.PSpanEvent{ev(1, 2, 0, 3, 5000, 3), ev(2, 0, 4, 3, 5000, 3), ev(3, 3, 1, 1, 5000, 3)}}))
	return 5
}

// putLateMetadata stores every name lateAgent's traffic refers to.
func putLateMetadata(t *testing.T, m *meta.Store) {
	t.Helper()
	k := lateAgent.AgentKey
	errs := []error{
		m.PutAPI(k, &pb.PApiMetaData{ApiId: 1, ApiInfo: "Tomcat Servlet Process"}),
		m.PutAPI(k, &pb.PApiMetaData{ApiId: 2, ApiInfo: "com.example.InvoiceController.create(long id)"}),
		m.PutAPI(k, &pb.PApiMetaData{ApiId: 3, ApiInfo: "com.example.InvoiceRepo.save(com.example.Invoice invoice)"}),
		m.PutSQL(k, &pb.PSqlMetaData{SqlId: 1, Sql: "INSERT INTO invoice VALUES (?)"}),
		m.PutString(k, &pb.PStringMetaData{StringId: 7, StringValue: "java.sql.SQLTransactionRollbackException"}),
		m.PutExceptions(k, &pb.PExceptionMetaData{Exceptions: []*pb.PException{{ExceptionClassName: "java.sql.SQLException",
			ExceptionMessage: "deadlock", ExceptionId: 77,
			StackTraceElement: []*pb.PStackTraceElement{{ClassName: "com.example.InvoiceRepo", MethodName: "save", FileName: "InvoiceRepo.java", LineNumber: 12}}}}}),
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// heldAssembler is an assembler on a badger dir, with the metadata store waking it up as
// the input wires it; the background loop runs.
type heldAssembler struct {
	db   *cache.DB
	meta *meta.Store
	asm  *Assembler
	sink *sink
}

func openHeldAssembler(t *testing.T, dir string, clock *fakeClock, tune ...func(*Options)) *heldAssembler {
	t.Helper()
	db, err := cache.OpenBadger(dir, cache.DefaultConfig(), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	b := &heldAssembler{db: db, sink: newSink()}
	b.meta, err = meta.NewStore(db.Namespace("meta"), meta.Options{Now: clock.Now, OnPut: func(k meta.AgentKey) {
		if b.asm != nil {
			b.asm.MetadataArrived(k)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Store: db.Namespace("trace"), Meta: b.meta, Emit: b.sink.emit, Now: clock.Now,
		Hostname: "apmkit-host", MetadataWait: heldTestWait}
	for _, f := range tune {
		f(&opts)
	}
	asm, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := asm.Start(); err != nil {
		t.Fatal(err)
	}
	b.asm = asm
	t.Cleanup(func() { b.close(t) })
	return b
}

func (b *heldAssembler) close(t *testing.T) {
	t.Helper()
	if b.db == nil {
		return
	}
	if err := b.asm.Stop(context.Background()); err != nil {
		t.Error(err)
	}
	if err := b.db.Close(); err != nil {
		t.Error(err)
	}
	b.db = nil
}

func (b *heldAssembler) records(t *testing.T, prefix byte) int {
	t.Helper()
	n := 0
	if err := b.db.Namespace("trace").Scan([]byte{prefix}, func(_, _ []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitPoints waits until the sink holds at least n points: the background loop emits
// them. The bound guards against a hang; it is not a timing assertion.
func waitPoints(t *testing.T, s *sink, n int) {
	t.Helper()
	guard := time.After(30 * time.Second)
	for len(s.points()) < n {
		select {
		case <-s.notify:
		case <-time.After(10 * time.Millisecond):
		case <-guard:
			t.Fatalf("%d points after 30 s, want %d", len(s.points()), n)
		}
	}
}

var placeholder = regexp.MustCompile(`\b(api|sql|sqluid|string|exception):-?[0-9a-f]+\b`)

func sortedLinesOf(t *testing.T, pts []*point.Point) []string {
	t.Helper()
	out := make([]string, 0, len(pts))
	for _, p := range pts {
		line, err := pointLine(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out
}

// referenceLines is what the same traffic gives when the metadata is there from the start.
func referenceLines(t *testing.T) []string {
	t.Helper()
	clock := newFakeClock()
	ref := openHeldAssembler(t, t.TempDir(), clock)
	putLateMetadata(t, ref.meta)
	feedLateAgent(t, context.Background(), ref.asm, clock)
	ref.close(t)
	if st := ref.asm.Stats(); st.HeldForMetadata != 0 {
		t.Fatalf("reference run held %d units", st.HeldForMetadata)
	}
	return sortedLinesOf(t, ref.sink.points())
}

// Spans held for metadata at Stop wait in the store; the next process puts them back on
// hold, and when the agent's metadata reaches it they are written with their names: the
// same lines as if the metadata had come in time, none twice, none missing.
func TestHeldSpansResolveAfterRestart(t *testing.T) {
	want := referenceLines(t)
	dir := t.TempDir()
	clock := newFakeClock()
	ctx := context.Background()

	first := openHeldAssembler(t, dir, clock)
	units := feedLateAgent(t, ctx, first.asm, clock)
	if st := first.asm.Stats(); st.Held != int64(units) || len(first.sink.points()) != 0 {
		t.Fatalf("before stop: %+v, %d points", st, len(first.sink.points()))
	}
	first.close(t)
	if n := len(first.sink.points()); n != 0 {
		t.Fatalf("Stop wrote %d points; the held spans must wait for the next start", n)
	}
	st := first.asm.Stats()
	if st.StoreErrors != 0 || st.Unresolved["api"] != 0 {
		t.Fatalf("first run: %+v", st)
	}

	clock.Advance(time.Minute) // longer than MetadataWait: only a fresh wait keeps them
	second := openHeldAssembler(t, dir, clock)
	if got := second.records(t, prefixHeld); got != units {
		t.Fatalf("%d held records in the store, want %d", got, units)
	}
	st = second.asm.Stats()
	if st.RestoredHeld != uint64(units) || st.Held != int64(units) || st.StoreErrors != 0 {
		t.Fatalf("after restart: %+v", st)
	}
	if err := second.asm.processDue(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(second.sink.points()); n != 0 {
		t.Fatalf("%d points written before the metadata came or the wait ran out", n)
	}

	putLateMetadata(t, second.meta) // the agent re-sends its metadata to the new process
	waitPoints(t, second.sink, len(want))
	second.close(t)

	got := sortedLinesOf(t, second.sink.points())
	if len(got) != len(want) {
		t.Fatalf("%d lines after the restart, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("line %d differs from the run with metadata in time:\n got %s\nwant %s", i, got[i], want[i])
		}
		if m := placeholder.FindString(got[i]); m != "" {
			t.Fatalf("placeholder %q in %s", m, got[i])
		}
	}
	st = second.asm.Stats()
	for kind, n := range st.Unresolved {
		if n != 0 {
			t.Errorf("%d %s placeholders", n, kind)
		}
	}
	if st.RestoredUnresolved != 0 || st.Held != 0 || st.HeldOverflow != 0 || st.EmitErrors != 0 {
		t.Errorf("stats %+v", st)
	}

	third := openHeldAssembler(t, dir, clock)
	if n := third.records(t, prefixHeld); n != 0 {
		t.Errorf("%d held records left after they were written", n)
	}
	if st := third.asm.Stats(); st.RestoredHeld != 0 {
		t.Errorf("restored again: %+v", st)
	}
}

// When the metadata does not come after the restart either, the restored spans go out
// with placeholders MetadataWait after the start (not after the first run's deadline),
// counted apart from the placeholders of spans that never crossed a restart.
func TestRestoredSpansWithoutMetadataGetPlaceholders(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	ctx := context.Background()
	first := openHeldAssembler(t, dir, clock)
	units := feedLateAgent(t, ctx, first.asm, clock)
	first.close(t)

	clock.Advance(time.Hour)
	second := openHeldAssembler(t, dir, clock)
	clock.Advance(heldTestWait - time.Millisecond)
	if err := second.asm.processDue(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(second.sink.points()); n != 0 {
		t.Fatalf("%d points before MetadataWait ran out after the restart", n)
	}
	clock.Advance(time.Millisecond)
	if err := second.asm.processDue(ctx); err != nil {
		t.Fatal(err)
	}
	want := len(referenceLines(t))
	waitPoints(t, second.sink, want)
	second.close(t)

	if n := len(second.sink.points()); n != want {
		t.Fatalf("%d points, want %d", n, want)
	}
	st := second.asm.Stats()
	if st.RestoredHeld != uint64(units) || st.RestoredUnresolved != uint64(units) || st.Held != 0 {
		t.Errorf("stats %+v", st)
	}
	// One api placeholder per entry span and event (partial 2, first span 4, its async
	// work 2, second span 3, its late chunk 3); sql 1, the error string 7 and the
	// exception chain 77 once each.
	for kind, n := range map[string]uint64{"api": 14, "sql": 1, "string": 1, "exception": 1, "sqluid": 0} {
		if st.Unresolved[kind] != n {
			t.Errorf("unresolved %s = %d, want %d", kind, st.Unresolved[kind], n)
		}
	}
	third := openHeldAssembler(t, dir, clock)
	if n := third.records(t, prefixHeld); n != 0 {
		t.Errorf("%d held records left after they were written", n)
	}
}

// A record that does not decode is counted, deleted and skipped; the others are restored.
func TestDamagedHeldRecordIsSkipped(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	first := openHeldAssembler(t, dir, clock)
	units := feedLateAgent(t, context.Background(), first.asm, clock)
	first.close(t)
	db, err := cache.OpenBadger(dir, cache.DefaultConfig(), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Namespace("trace").Set([]byte{prefixHeld, 0xff}, []byte{heldRecordVersion, 0, 0xff, 0xff}, 0); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	second := openHeldAssembler(t, dir, clock)
	if st := second.asm.Stats(); st.StoreErrors != 1 || st.RestoredHeld != uint64(units) || st.Held != int64(units) {
		t.Fatalf("stats %+v", st)
	}
	if n := second.records(t, prefixHeld); n != units {
		t.Errorf("%d held records, want the %d good ones", n, units)
	}
}

// Names that arrive after the background work's last look but before Stop release their
// spans at Stop; nothing is kept for them.
func TestStopEmitsHeldWhoseMetadataArrived(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.DelMessage = true })
	h.span(lateAgent, &pb.PSpan{TransactionId: txID("", lateTx, 1), SpanId: 1, ParentSpanId: -1, StartTime: t0, ApiId: 1})
	if err := h.meta.PutAPI(lateAgent.AgentKey, &pb.PApiMetaData{ApiId: 1, ApiInfo: "Tomcat Servlet Process"}); err != nil {
		t.Fatal(err)
	}
	if err := h.asm.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	pts := h.sink.points()
	if len(pts) != 1 {
		t.Fatalf("%d points, want the entry span", len(pts))
	}
	if op, _ := pts[0].Tag("operation"); op != "Tomcat Servlet Process" {
		t.Errorf("operation %q", op)
	}
	n := 0
	_ = h.db.Namespace("trace").Scan([]byte{prefixHeld}, func(_, _ []byte) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d held records", n)
	}
}

// A store that refuses the record at Stop makes the span go out with placeholders rather
// than be lost.
func TestStopEmitsHeldTheStoreRefuses(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Store = failingStore{o.Store}; o.DelMessage = true })
	h.span(lateAgent, &pb.PSpan{TransactionId: txID("", lateTx, 1), SpanId: 1, ParentSpanId: -1, StartTime: t0, ApiId: 1})
	if err := h.asm.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	pts := h.sink.points()
	if len(pts) != 1 {
		t.Fatalf("%d points, want the entry span", len(pts))
	}
	if op, _ := pts[0].Tag("operation"); op != "api:1" {
		t.Errorf("operation %q, want the placeholder", op)
	}
	// Two refused writes: the held span's record and its skeleton.
	if st := h.asm.Stats(); st.StoreErrors != 2 || st.Unresolved["api"] != 1 || st.RestoredUnresolved != 0 {
		t.Errorf("stats %+v", st)
	}
}

// The hold queue's caps apply to restored spans too: what does not fit goes out at once,
// with placeholders, counted as overflow and as restored-unresolved.
func TestRestoredSpansRespectHeldCap(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	first := openHeldAssembler(t, dir, clock)
	units := feedLateAgent(t, context.Background(), first.asm, clock)
	first.close(t)

	second := openHeldAssembler(t, dir, clock, func(o *Options) { o.MaxHeldSpans = 2 })
	st := second.asm.Stats()
	if st.RestoredHeld != uint64(units) || st.Held != 2 || st.HeldOverflow != uint64(units-2) {
		t.Fatalf("stats %+v", st)
	}
	second.close(t)
	st = second.asm.Stats()
	if st.RestoredUnresolved != uint64(units-2) {
		t.Errorf("restored unresolved %d, want %d", st.RestoredUnresolved, units-2)
	}
	if n := len(second.sink.points()); n == 0 {
		t.Error("overflow wrote nothing")
	}
	third := openHeldAssembler(t, dir, clock)
	if st := third.asm.Stats(); st.RestoredHeld != 2 {
		t.Errorf("the two units still held at the second stop: restored %d", st.RestoredHeld)
	}
}

// heldSeeds returns the records of units held for metadata: spans with events of their
// own and of a merged chunk, a late chunk, async work, a partial span.
func heldSeeds(tb testing.TB) [][]byte {
	h := newHarness(tb)
	feedLateAgent(tb, context.Background(), h.asm, h.clock)
	h.chunk(lateAgent, &pb.PSpanChunk{Version: 1, TransactionId: txID("late-d", lateTx, 3), SpanId: 9301, KeyTime: t0 + 2,
		SpanEvent: []*pb.PSpanEvent{ev(1, 2, 0, 3, 5000, 3), ev(2, 0, 4, 3, 5000, 3)}})
	h.span(lateAgent, &pb.PSpan{Version: 1, TransactionId: txID("", lateTx, 3), SpanId: 9301, ParentSpanId: -1,
		StartTime: t0, Elapsed: 20, ApiId: 1, ServiceType: 1010,
		SpanEvent: []*pb.PSpanEvent{ev(0, 1, 0, 20, 5051, 2), ev(3, 2, 15, 2, 5000, 3)}})
	var seeds [][]byte
	merged := false
	for _, u := range h.asm.held.drain() {
		b, err := encodeHeldRecord(u)
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, b)
		merged = merged || (u.span != nil && len(u.events) == 4)
	}
	if len(seeds) != 6 || !merged {
		tb.Fatalf("%d held units (merged span: %v), want 6 with the merged span", len(seeds), merged)
	}
	return seeds
}

func TestHeldRecordRoundTrip(t *testing.T) {
	for i, rec := range heldSeeds(t) {
		u, err := decodeHeldRecord(rec)
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		again, err := encodeHeldRecord(u)
		if err != nil || !bytes.Equal(again, rec) {
			t.Fatalf("seed %d: re-encoded differently (%v)", i, err)
		}
		for cut := range len(rec) {
			if _, err := decodeHeldRecord(rec[:cut]); err == nil {
				t.Fatalf("seed %d cut at %d decoded", i, cut)
			}
		}
	}
}

// FuzzHeldRecord: whatever the store hands back, decoding never panics; what decodes
// re-encodes to a stable form and converts into valid points.
func FuzzHeldRecord(f *testing.F) {
	for _, rec := range heldSeeds(f) {
		f.Add(rec)
		f.Add(rec[:len(rec)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{heldRecordVersion})
	f.Add([]byte{heldRecordVersion, 0xff})
	// A transaction agent id that is not UTF-8 (found by fuzzing).
	f.Add([]byte("\x01\x00\x060000000\a0000000\n00000000000\x0600000\xf900000\x03000000\x00\x00\v0000000\x90000000000\x00\x00\v0000000\x90000000000\x00\x00\r000000000\x90000"))
	f.Add([]byte{heldRecordVersion, heldHasSpan, 1, 'a', 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := decodeHeldRecord(data)
		if err != nil {
			return
		}
		once, err := encodeHeldRecord(u)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		u2, err := decodeHeldRecord(once)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		twice, err := encodeHeldRecord(u2)
		if err != nil || !bytes.Equal(once, twice) {
			t.Fatalf("encoding not stable (%v)", err)
		}
		h := newHarness(t)
		conv := h.asm.getConverter()
		defer h.asm.putConverter(conv)
		for _, p := range conv.convert(u).Points() {
			if err := p.Validate(); err != nil {
				t.Fatalf("invalid point: %v", err)
			}
			if _, err := point.AppendLine(nil, p); err != nil {
				t.Fatalf("unencodable point: %v", err)
			}
		}
	})
}
