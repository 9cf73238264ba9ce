package trace

import (
	"context"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/span"
)

// benchSpan is a typical Java web request: 12 events (controller, service, repository
// methods, SQL with bind values, an HTTP call out), with the annotations agents send.
func benchSpan(spanID int64) *pb.PSpan {
	sql := func(seq, depth int32) *pb.PSpanEvent {
		e := ev(seq, depth, 1, 2, 2101, 3)
		e.NextEvent = nextEvent(-1, "db:3306", "shopdb")
		e.Annotation = []*pb.PAnnotation{{Key: 20, Value: &pb.PAnnotationValue{Field: &pb.PAnnotationValue_IntStringStringValue{
			IntStringStringValue: &pb.PIntStringStringValue{IntValue: 1, StringValue2: wrapperspb.String("42, 'abc'")}}}}}
		return e
	}
	call := ev(11, 2, 1, 5, 9052, 4)
	call.NextEvent = nextEvent(spanID+1, "stock:8080", "stock:8080")
	call.Annotation = []*pb.PAnnotation{strAnn(40, "http://stock:8080/reserve?item=7"), intAnn(46, 200)}
	arg := ev(2, 3, 1, 3, 5000, 3)
	arg.Annotation = []*pb.PAnnotation{strAnn(-1, "item-7"), strAnn(-2, "42")}
	return shopSpan(spanID, spanID, 40,
		ev(0, 1, 0, 40, 1011, 2), ev(1, 2, 1, 30, 5051, 2), arg,
		sql(3, 4), sql(4, 0), sql(5, 0), ev(6, 3, 1, 1, 5000, 3), sql(7, 4),
		ev(8, 2, 2, 3, 5071, 3), ev(9, 3, 0, 2, 5000, 3), ev(10, 4, 0, 1, 5000, 3), call,
	)
}

// cpuMeter reports the process CPU time (user + system, GC included) per op and per
// point: the product's budget is stated in CPU time, and wall time is noisy on a shared
// machine.
type cpuMeter struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU(b *testing.B) *cpuMeter {
	b.ReportAllocs()
	b.ResetTimer()
	return &cpuMeter{start: processCPU()}
}

func (m *cpuMeter) report(b *testing.B, pointsPerOp int) {
	cpu := float64((processCPU() - m.start).Nanoseconds()) / float64(b.N)
	b.ReportMetric(cpu, "cpu-ns/op")
	if pointsPerOp > 0 {
		b.ReportMetric(cpu/float64(pointsPerOp), "cpu-ns/point")
	}
}

func benchAssembler(b *testing.B, delMessage bool, store cache.Store) *Assembler {
	h := goldenHarness(&testing.T{}, func(o *Options) {
		o.DelMessage = delMessage
		o.Emit = func(context.Context, *span.Span) error { return nil }
		if store != nil {
			o.Store = store
		}
	})
	b.Cleanup(func() { _ = h.asm.Stop(context.Background()) })
	return h.asm
}

// BenchmarkAssemble measures one span of 12 events through assembly (skeleton included)
// and conversion to points; per point divides by the 13 points it makes.
func BenchmarkAssemble(b *testing.B) {
	for _, c := range []struct {
		name string
		del  bool
	}{{"message", false}, {"no_message", true}} {
		b.Run(c.name, func(b *testing.B) {
			asm := benchAssembler(b, c.del, nil)
			spans := make([]*pb.PSpan, 1024)
			for i := range spans {
				spans[i] = benchSpan(int64(i + 1))
			}
			ctx := context.Background()
			cpu := startCPU(b)
			for i := range b.N {
				if err := asm.ConsumeSpan(ctx, javaA, spans[i%len(spans)]); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b, 13)
		})
	}
}

// BenchmarkAssembleBadger is BenchmarkAssemble with the pending-chunk store on badger, as
// in production: the skeleton write per span is the difference.
func BenchmarkAssembleBadger(b *testing.B) {
	db, err := cache.OpenBadger(b.TempDir(), cache.DefaultConfig(), quietLogger())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	asm := benchAssembler(b, false, db.Namespace("trace"))
	ctx := context.Background()
	spans := make([]*pb.PSpan, 1024)
	for i := range spans {
		spans[i] = benchSpan(int64(i + 1))
	}
	cpu := startCPU(b)
	for i := range b.N {
		if err := asm.ConsumeSpan(ctx, javaA, spans[i%len(spans)]); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b, 13)
}

// BenchmarkChunkThenSpan is a long span split as agents split it: a sync chunk waits in
// the store, then the span merges it.
func BenchmarkChunkThenSpan(b *testing.B) {
	asm := benchAssembler(b, false, nil)
	ctx := context.Background()
	cpu := startCPU(b)
	defer cpu.report(b, 13)
	for i := range b.N {
		span := benchSpan(int64(i + 1))
		chunk := &pb.PSpanChunk{Version: 1, TransactionId: span.TransactionId, SpanId: span.SpanId,
			KeyTime: t0, SpanEvent: span.SpanEvent[1:11]}
		span.SpanEvent = append(span.SpanEvent[:1], span.SpanEvent[11:]...)
		if err := asm.ConsumeChunk(ctx, javaA, chunk); err != nil {
			b.Fatal(err)
		}
		if err := asm.ConsumeSpan(ctx, javaA, span); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMessageJSON compares the hand-written message JSON with protojson.
func BenchmarkMessageJSON(b *testing.B) {
	evs := benchSpan(1).GetSpanEvent()
	b.Run("hand_written", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for i := range b.N {
			buf = appendEventJSON(buf[:0], evs[i%len(evs)])
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			if _, err := protojson.Marshal(evs[i%len(evs)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
