package pinpoint

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/inputs/pinpoint/stats"
	"github.com/apmkit/apmkit/inputs/pinpoint/trace"
	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/span"
)

// The fuzz targets cover every path where an agent's bytes are decoded: the batch envelope
// walked by hand, span, stat, agent-info and metadata messages, each then handed to the
// code that consumes it. They are seeded with the recorded traffic.

// seed adds every recorded message of the given methods to the corpus.
func seed(f *testing.F, methods ...string) {
	recs, err := replay.All()
	if err != nil {
		f.Fatal(err)
	}
	for _, rec := range recs {
		for _, ev := range rec.Events {
			for _, m := range methods {
				if ev.Event == "msg" && ev.Method == m {
					b, err := ev.Bytes()
					if err != nil {
						f.Fatal(err)
					}
					f.Add(b)
				}
			}
		}
	}
}

// fuzzInput is an input with its consumers and a memory cache, without a server. Its
// spans go to a discarding consumer: the span fuzzers give each run its own assembler
// (withAssembler).
func fuzzInput(f *testing.F) *Input {
	c, err := newCounters(nil)
	if err != nil {
		f.Fatal(err)
	}
	store, err := meta.NewStore(cache.NewMemory(cache.Config{CapacityMB: 64}).Namespace("pinpoint"), meta.Options{TTL: 1 << 40})
	if err != nil {
		f.Fatal(err)
	}
	in := New(DefaultConfig())
	in.counters, in.meta, in.log = c, store, slog.New(slog.NewTextHandler(io.Discard, nil))
	in.stats = &statSink{conv: stats.NewConverter(store, nil), counters: c, feed: validatePoints}
	return in
}

// validatePoints fails the fuzz run on any point that could not be written.
func validatePoints(_ context.Context, _ point.Category, pts []*point.Point) error {
	for _, p := range pts {
		if err := p.Validate(); err != nil {
			panic(err)
		}
	}
	return nil
}

// withAssembler gives in a real assembler (on a fresh memory store, with small caps and no
// wait for metadata, so what it takes comes out at once) whose spans must be valid points,
// runs fn and stops the assembler, so spans still waiting for chunks come out too.
func withAssembler(t *testing.T, in *Input, fn func()) {
	asm, err := trace.New(trace.Options{
		Store:        cache.NewMemory(cache.Config{CapacityMB: 16}).Namespace(traceNamespace),
		Meta:         in.meta,
		Hostname:     "fuzz-host",
		MetadataWait: -1,
		MaxHeldSpans: 16, MaxPendingSpans: 16, MaxSkeletonEvents: 256,
		Emit:   validateSpan,
		Logger: in.log,
	})
	if err != nil {
		t.Fatal(err)
	}
	in.spans = asm
	fn()
	if err := asm.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	in.spans = discard{}
}

// validateSpan fails the fuzz run on a span that could not be written.
func validateSpan(_ context.Context, s *span.Span) error {
	for _, p := range s.Points() {
		if err := p.Validate(); err != nil {
			panic(err)
		}
		if _, err := point.AppendLine(nil, p); err != nil {
			panic(err)
		}
	}
	return nil
}

var fuzzSender = &meta.Sender{AgentKey: meta.AgentKey{AgentID: "fuzz", StartTime: 1}, ApplicationName: "fuzz"}

func FuzzSpanBatch(f *testing.F) {
	seed(f, "/v1.Span/SendSpanBatch")
	in := fuzzInput(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if e := estimateHeap(spanBatchDesc, data); e.total <= 0 || e.largest < 0 || e.largest > e.total {
			t.Fatalf("estimate %+v", e)
		}
		var b spanBatch
		if err := b.decode(data); err != nil {
			t.Fatal(err)
		}
		if b.rejected > 0 && b.firstErr == nil {
			t.Fatal("rejected without a reason")
		}
		withAssembler(t, in, func() {
			for _, m := range b.spans {
				in.handleSpanMessage(context.Background(), fuzzSender, "SendSpanBatch", m)
			}
		})
	})
}

func FuzzSpanMessage(f *testing.F) {
	seed(f, "/v1.Span/SendSpan")
	in := fuzzInput(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &pb.PSpanMessage{}
		_ = estimateHeap(m.ProtoReflect().Descriptor(), data)
		if proto.Unmarshal(data, m) != nil {
			return
		}
		withAssembler(t, in, func() { in.handleSpanMessage(context.Background(), fuzzSender, "SendSpan", m) })
	})
}

func FuzzStatMessage(f *testing.F) {
	seed(f, "/v1.Stat/SendAgentStat")
	in := fuzzInput(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &pb.PStatMessage{}
		if proto.Unmarshal(data, m) != nil {
			return
		}
		_ = in.stats.ConsumeStat(context.Background(), fuzzSender, m)
	})
}

func FuzzAgentInfo(f *testing.F) {
	seed(f, "/v1.Agent/RequestAgentInfo")
	in := fuzzInput(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		info := &pb.PAgentInfo{}
		if proto.Unmarshal(data, info) != nil {
			return
		}
		if err := in.meta.PutAgent(*fuzzSender, info); err != nil {
			t.Fatal(err)
		}
		got, ok := in.meta.Agent(fuzzSender.AgentKey)
		if !ok || !proto.Equal(got.Info, info) {
			t.Fatalf("agent info did not round-trip: %v", got.Info)
		}
		_ = in.stats.ConsumeAgentInfo(context.Background(), fuzzSender, info)
	})
}

// FuzzMetadata decodes the bytes as each metadata kind (the first byte picks it), stores
// it and reads it back.
func FuzzMetadata(f *testing.F) {
	seed(f, "/v1.Metadata/RequestApiMetaData", "/v1.Metadata/RequestSqlMetaData", "/v1.Metadata/RequestStringMetaData",
		"/v1.Metadata/RequestExceptionMetaData", "/v1.Metadata/RequestSqlUidMetaData")
	in := fuzzInput(f)
	k := fuzzSender.AgentKey
	f.Fuzz(func(t *testing.T, data []byte) {
		api := &pb.PApiMetaData{}
		if proto.Unmarshal(data, api) == nil && in.meta.PutAPI(k, api) == nil {
			if got, ok := in.meta.API(k, api.GetApiId()); !ok || got.Info != api.GetApiInfo() {
				t.Fatalf("api %d: %v %v", api.GetApiId(), got, ok)
			}
		}
		sql := &pb.PSqlMetaData{}
		if proto.Unmarshal(data, sql) == nil && in.meta.PutSQL(k, sql) == nil {
			if got, ok := in.meta.SQL(k, sql.GetSqlId()); !ok || got != sql.GetSql() {
				t.Fatalf("sql %d: %q %v", sql.GetSqlId(), got, ok)
			}
		}
		uid := &pb.PSqlUidMetaData{}
		if proto.Unmarshal(data, uid) == nil && in.meta.PutSQLUID(k, uid) == nil {
			if got, ok := in.meta.SQLUID(k, uid.GetSqlUid()); !ok || got != uid.GetSql() {
				t.Fatalf("sqluid: %q %v", got, ok)
			}
		}
		str := &pb.PStringMetaData{}
		if proto.Unmarshal(data, str) == nil && in.meta.PutString(k, str) == nil {
			if got, ok := in.meta.String(k, str.GetStringId()); !ok || got != str.GetStringValue() {
				t.Fatalf("string %d: %q %v", str.GetStringId(), got, ok)
			}
		}
		exc := &pb.PExceptionMetaData{}
		if proto.Unmarshal(data, exc) == nil && in.meta.PutExceptions(k, exc) == nil {
			for _, e := range exc.GetExceptions() {
				if _, ok := in.meta.Exceptions(k, e.GetExceptionId()); !ok {
					t.Fatalf("exception chain %d not found", e.GetExceptionId())
				}
			}
		}
	})
}
