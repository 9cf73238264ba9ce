package io

import (
	"context"
	stdio "io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
)

// benchSpans looks like a converted Pinpoint span: a dozen tags and fields.
func benchSpans(n int) []*point.Point {
	pts := make([]*point.Point, n)
	for i := range pts {
		p := point.New("pinpoint", 1_700_000_000_000_000_000+int64(i))
		p.SetTag("service", "checkout")
		p.SetTag("resource", "GET /api/orders/{id}")
		p.SetTag("span_type", "entry")
		p.SetTag("source_type", "web")
		p.SetTag("status", "ok")
		p.SetTag("host", "web-01")
		p.AddField(point.String("trace_id", "8b1f0c7a6d5e4f3a"+strconv.Itoa(i)))
		p.AddField(point.String("span_id", strconv.Itoa(i*7919)))
		p.AddField(point.String("parent_id", "0"))
		p.AddField(point.Int("start", 1_700_000_000_000_000+int64(i)))
		p.AddField(point.Int("duration", int64(1200+i%500)))
		p.AddField(point.String("message", `{"sql":"SELECT * FROM orders WHERE id = ?","args":["42"]}`))
		pts[i] = p
	}
	return pts
}

// BenchmarkEncodeBatch measures the batcher's encoding of a 1000-point batch.
func BenchmarkEncodeBatch(b *testing.B) {
	pts := benchSpans(1000)
	var emitted atomic.Int64
	bt := &batcher{
		cat: point.Tracing, counters: &categoryCounters{}, codec: &gzipCodec{},
		maxPoints: 1000, maxBytes: 4 << 20, interval: time.Hour,
		emit:     func(bb *batch) { emitted.Add(int64(bb.points)) },
		rejected: func(error) {},
		enc:      point.NewEncoder(),
		timer:    time.NewTimer(time.Hour),
	}
	defer bt.timer.Stop()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		bt.addAll(pts)
		bt.flush()
	}
	b.ReportMetric(float64(emitted.Load())/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkUploaderToDataway measures Feed -> batch -> gzip -> HTTP POST to a dataway sink
// on 127.0.0.1 that reads and discards the body.
func BenchmarkUploaderToDataway(b *testing.B) {
	var received atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = stdio.Copy(stdio.Discard, r.Body)
		n, _ := strconv.Atoi(r.Header.Get("X-Points"))
		received.Add(int64(n))
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.Outputs = []OutputConfig{{Type: TypeDataway, URL: srv.URL + "?token=tkn_bench"}}
	u, err := New(cfg, b.TempDir(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := u.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	pts := benchSpans(1000)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	fed := 0
	for b.Loop() {
		if err := u.Feed(ctx, point.Tracing, pts); err != nil {
			b.Fatal(err)
		}
		fed += len(pts)
	}
	if err := u.Stop(ctx); err != nil { // flushes: every fed point is sent now
		b.Fatal(err)
	}
	b.StopTimer()
	if got := received.Load(); got != int64(fed) {
		b.Fatalf("sink got %d points of %d fed", got, fed)
	}
	b.ReportMetric(float64(received.Load())/b.Elapsed().Seconds(), "points/s")
}
