package io

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
)

// feedConcurrently feeds `feeders` disjoint seq ranges of `perFeeder` points from as many
// goroutines, `chunk` points a call, and fails the test on any Feed error.
func feedConcurrently(t *testing.T, u *Uploader, feeders, perFeeder, chunk int, extra func(*point.Point)) {
	t.Helper()
	var wg sync.WaitGroup
	for f := range feeders {
		wg.Go(func() {
			pts := seqPoints("span", f*perFeeder, perFeeder)
			for _, p := range pts {
				if extra != nil {
					extra(p)
				}
			}
			for i := 0; i < perFeeder; i += chunk {
				if err := u.Feed(context.Background(), point.Tracing, pts[i:min(i+chunk, perFeeder)]); err != nil {
					t.Errorf("feeder %d: %v", f, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// checkOncePerFeeder fails unless got holds every seq of the feeders exactly once; with
// ordered, each feeder's points must also come in the order it fed them.
func checkOncePerFeeder(t *testing.T, got []int64, feeders, perFeeder int, ordered bool) {
	t.Helper()
	last := make([]int64, feeders)
	for i := range last {
		last[i] = -1
	}
	for _, s := range got {
		f := int(s) / perFeeder
		if ordered && s <= last[f] {
			t.Fatalf("feeder %d: seq %d after %d (order broken)", f, s, last[f])
		}
		last[f] = s
	}
	sorted := append([]int64(nil), got...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	wantSeq(t, sorted, 0, feeders*perFeeder) // each exactly once
}

// TestMemoryBoundedWhileOutputBlocked: with the only output hanging on every request, four
// feeders push about fifty times the memory budget. The line protocol held in memory stays
// within the budget (plus the gzip forms, accounted without waiting), nothing is dropped,
// and after Stop every point is on disk exactly once, each feeder's in order.
func TestMemoryBoundedWhileOutputBlocked(t *testing.T) {
	var s *sink
	s = newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		select { // a stuck server
		case <-r.Context().Done():
		case <-s.stop:
		}
		return 0
	})
	dataDir := t.TempDir()
	out := datawayOutput(s, "tkn_1")
	out.CapacityMB = 4096
	cfg := testConfig(out)
	cfg.QueueMaxMB = 1
	cfg.BatchMaxPoints = 200
	cfg.FeedTimeout = time.Minute // a drop would fail the test; the disk must keep up
	cfg.StopTimeout = 100 * time.Millisecond
	u := startUploader(t, cfg, dataDir)

	var peak atomic.Int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak.Store(max(peak.Load(), u.Stats().QueueBytes))
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	const feeders, perFeeder = 4, 25_000 // ~50 MiB of line protocol with the pad
	pad := fmt.Sprintf("%0400d", 7)
	feedConcurrently(t, u, feeders, perFeeder, 250, func(p *point.Point) { p.AddField(point.String("pad", pad)) })
	close(done)
	<-sampled
	stopUploader(t, u)

	budget := int64(cfg.QueueMaxMB) << 20
	if p := peak.Load(); p > budget+budget/2 || p == 0 {
		t.Fatalf("peak queue bytes %d with a budget of %d", p, budget)
	}
	cs := categoryStats(u, point.Tracing)
	if len(cs.Dropped) != 0 || cs.PointsIn != feeders*perFeeder || cs.QueuePoints != 0 {
		t.Fatalf("category stats %+v: nothing may be dropped or left in memory", cs)
	}
	if st := u.Stats(); st.QueueBytes != 0 {
		t.Fatalf("%d bytes still accounted after Stop", st.QueueBytes)
	}
	checkOncePerFeeder(t, seqOf(t, spilledPoints(t, dataDir, "dataway")), feeders, perFeeder, true)
	if s.deliveredCount() != 0 {
		t.Fatal("a stuck output delivered points")
	}
}

// TestConcurrentFeedDeliversEachPointOnce: many goroutines feed at once into an output that
// fails one request in five and overflows to its spill; every point arrives exactly once.
// Order is not checked: newer memory batches go before older spilled ones, and with four
// requests in flight a retried batch arrives after later ones.
func TestConcurrentFeedDeliversEachPointOnce(t *testing.T) {
	for _, inFlight := range []int{1, 4} {
		t.Run(fmt.Sprintf("max_in_flight=%d", inFlight), func(t *testing.T) {
			s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
				if n%5 == 4 {
					return http.StatusServiceUnavailable
				}
				return http.StatusNoContent
			})
			out := datawayOutput(s, "tkn_1")
			out.MaxInFlight = inFlight
			out.QueueMaxBatches = 2
			cfg := testConfig(out)
			cfg.BatchMaxPoints = 37
			u := startUploader(t, cfg, t.TempDir())
			const feeders, perFeeder = 16, 1000
			feedConcurrently(t, u, feeders, perFeeder, 7, nil)
			waitFor(t, "every point", func() bool { return outputStats(u, "dataway").PointsSent >= feeders*perFeeder })
			stopUploader(t, u)
			checkOncePerFeeder(t, seqOf(t, s.delivered("")), feeders, perFeeder, false)
			if st := outputStats(u, "dataway"); st.Retries == 0 || len(st.Dropped) != 0 {
				t.Fatalf("stats %+v: want retries and no drop", st)
			}
		})
	}
}
