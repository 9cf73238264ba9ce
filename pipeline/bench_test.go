package pipeline

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apmkit/apmkit/span"
)

// BenchmarkProcessSpan feeds traces of two Pinpoint spans from parallel goroutines, with
// nothing that waits and with the decision buffer (rate 0.1), its loop running.
func BenchmarkProcessSpan(b *testing.B) {
	for name, cfg := range map[string]Config{
		"no_sampler": {},
		"rate_0.1":   {SamplingRate: rate(0.1), DecisionWait: 100 * time.Millisecond},
	} {
		b.Run(name, func(b *testing.B) {
			p, err := New(cfg, Options{Emit: func(context.Context, *span.Span) error { return nil }})
			if err != nil {
				b.Fatal(err)
			}
			p.Start()
			defer p.Stop(context.Background())
			caller := root(traceID(0), "frontend", "/orders/42", "ok", 5)
			calleeSpan := callee(traceID(0), "backend", "/stock/42", "ok", 3)
			var seq atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := "frontend-01^1795417119878^" + strconv.FormatInt(seq.Add(1), 10)
					for _, tmpl := range []*span.Span{calleeSpan, caller} {
						s := *tmpl // a shallow copy: the events and arena are only read
						s.TraceID = id
						if err := p.ProcessSpan(context.Background(), &s); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		})
	}
}
