package io

import (
	"context"
	"fmt"
	stdio "io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/span"
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

// benchSpan is a typed span of 13 events shaped like benchSpans' points.
func benchSpan() *span.Span {
	s := span.New(13, 2048)
	s.TraceID, s.Service, s.Host = "8b1f0c7a6d5e4f3a^1700000000000^42", "checkout", "web-01"
	for i := range 13 {
		kind := span.Local
		if i == 0 {
			kind = span.Entry
		}
		s.Events = append(s.Events, span.Event{
			Time: 1_700_000_000_000_000_000 + int64(i), Start: 1_700_000_000_000_000 + int64(i), Duration: int64(1200 + i),
			SpanID: int64(i * 7919), Kind: kind, Operation: s.Add("GET /api/orders/{id}"), SourceType: s.Add("web"),
			Message: s.Add(`{"sql":"SELECT * FROM orders WHERE id = ?","args":["42"]}`),
		})
	}
	return s
}

// BenchmarkFeedParallel measures the intake alone: Feed from every core, 13 spans a call
// (one Pinpoint transaction), into an output that never runs, with a budget that never
// fills (batches are dropped as soon as they are cut): generic points (Feed) and a typed
// span (FeedSpan).
func BenchmarkFeedParallel(b *testing.B) {
	pts := benchSpans(13)
	sp := benchSpan()
	b.Run("points", func(b *testing.B) {
		benchFeed(b, len(pts), func(u *Uploader) error { return u.Feed(context.Background(), point.Tracing, pts) })
	})
	b.Run("span", func(b *testing.B) {
		benchFeed(b, len(sp.Events), func(u *Uploader) error { return u.FeedSpan(context.Background(), sp) })
	})
}

func benchFeed(b *testing.B, points int, feed func(u *Uploader) error) {
	cfg := DefaultConfig()
	cfg.Explorer = false // the outputs under test only
	cfg.Outputs = []OutputConfig{{Type: TypeDataway, URL: "http://127.0.0.1:1?token=tkn_bench"}}
	u, err := New(cfg, b.TempDir(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	u.accepting.Store(true) // outputs not started: the benchmark empties their queue itself
	w := u.outputs[0]
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() { // plays the output: lets go of every batch at once
		defer close(drained)
		for {
			w.mu.Lock()
			for len(w.memory) == 0 {
				select {
				case <-stop:
					w.mu.Unlock()
					return
				default:
				}
				w.mu.Unlock()
				time.Sleep(100 * time.Microsecond)
				w.mu.Lock()
			}
			q := w.memory[0]
			w.memory = w.memory[1:]
			w.mu.Unlock()
			q.b.release()
		}
	}()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := feed(u); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*points)/b.Elapsed().Seconds(), "points/s")
	close(stop)
	<-drained
	u.accepting.Store(false)
	_ = u.Stop(context.Background())
}

// BenchmarkUploaderToDataway measures Feed -> batch -> gzip -> HTTP POST to a dataway sink
// on 127.0.0.1 that reads and discards the body.
func BenchmarkUploaderToDataway(b *testing.B) {
	for _, inFlight := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("max_in_flight=%d", inFlight), func(b *testing.B) { benchmarkToDataway(b, inFlight) })
	}
}

func benchmarkToDataway(b *testing.B, inFlight int) {
	var received atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = stdio.Copy(stdio.Discard, r.Body)
		n, _ := strconv.Atoi(r.Header.Get("X-Points"))
		received.Add(int64(n))
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.Explorer = false // the outputs under test only
	cfg.Outputs = []OutputConfig{{Type: TypeDataway, URL: srv.URL + "?token=tkn_bench", MaxInFlight: inFlight}}
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
	st := outputStats(u, "dataway")
	b.ReportMetric(float64(st.SpilledBatches), "spilled-batches")
}

// BenchmarkUploaderToFile measures Feed -> batch -> the default file output.
func BenchmarkUploaderToFile(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Explorer = false // the outputs under test only
	dir := b.TempDir()
	u, err := New(cfg, dir, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := u.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	pts := benchSpans(1000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := u.Feed(ctx, point.Tracing, pts); err != nil {
			b.Fatal(err)
		}
	}
	if err := u.Stop(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	st := outputStats(u, "file")
	if st.PointsSent != int64(b.N*len(pts)) {
		b.Fatalf("file output wrote %d points of %d fed", st.PointsSent, b.N*len(pts))
	}
	b.ReportMetric(float64(st.PointsSent)/b.Elapsed().Seconds(), "points/s")
	b.ReportMetric(float64(st.SpilledBatches), "spilled-batches")
}
