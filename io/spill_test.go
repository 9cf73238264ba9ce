package io

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
	"github.com/prometheus/client_golang/prometheus"
)

// switchableSink answers 503 until up is set.
func switchableSink(t *testing.T) (*sink, *atomic.Bool) {
	up := &atomic.Bool{}
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	return s, up
}

// TestSpillSurvivesRestartInOrder: output down -> points on disk -> stop -> a new Uploader
// on the same data dir (an apmkit restart) -> output up -> every point exactly once, the
// spilled ones in order (new points may go first: memory batches do not wait for the spill).
func TestSpillSurvivesRestartInOrder(t *testing.T) {
	s, up := switchableSink(t)
	dataDir := t.TempDir()
	out := datawayOutput(s, "tkn_1")
	out.RetryMaxElapsed = 20 * time.Millisecond
	cfg := testConfig(out)
	cfg.BatchMaxPoints = 10

	first := startUploader(t, cfg, dataDir)
	for i := 0; i < 100; i += 25 {
		feed(t, first, point.Tracing, seqPoints("span", i, 25))
	}
	waitFor(t, "batches spilled while running", func() bool { return outputStats(first, "dataway").SpillBatches > 0 })
	stopUploader(t, first)
	wantSeq(t, seqOf(t, spilledPoints(t, dataDir, "dataway")), 0, 100)
	if s.deliveredCount() != 0 {
		t.Fatal("a down output delivered points")
	}

	up.Store(true)
	second := startUploader(t, cfg, dataDir)
	feed(t, second, point.Tracing, seqPoints("span", 100, 50))
	waitFor(t, "all points", func() bool { return s.deliveredCount() >= 150 })
	stopUploader(t, second)

	got := seqOf(t, s.delivered("/v1/write/tracing"))
	wantOnce(t, got, 0, 150)
	wantOrdered(t, got, func(s int64) bool { return s < 100 })
	if st := outputStats(second, "dataway"); st.SpillBatches != 0 || st.SpillBytes != 0 || st.PointsSent != 150 {
		t.Fatalf("after drain: %+v", st)
	}
	if left := spilledPoints(t, dataDir, "dataway"); len(left) != 0 {
		t.Fatalf("%d points left in the spill", len(left))
	}
}

// pushBatch spills one batch under output sequence seq, as the spill writer does.
func pushBatch(t *testing.T, q *spillQueue, b *batch, seq uint64) {
	t.Helper()
	gz, err := b.gzipBytes(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.pushGroup([]spillItem{{seq: seq, cat: b.cat, points: b.points, gz: gz}}); err != nil {
		t.Fatal(err)
	}
}

// drainSpill delivers a spill queue's batches in order and returns their seq fields.
func drainSpill(t *testing.T, q *spillQueue, check func(spillEntry)) []int64 {
	t.Helper()
	var got []int64
	for {
		e, ok := q.peek()
		if !ok {
			return got
		}
		if check != nil {
			check(e)
		}
		b, err := q.load(e)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := b.rawBytes()
		if err != nil {
			t.Fatal(err)
		}
		pts, _ := point.Parse(raw)
		got = append(got, seqOf(t, pts)...)
		q.complete(e)
	}
}

func TestSpillQueueEvictsOldestKeepsNewest(t *testing.T) {
	codec := &gzipCodec{}
	dropped := map[dropReason]int{}
	mk := func(i int) *batch {
		p := seqPoints("m", i, 1)[0]
		p.AddField(point.String("pad", strings.Repeat("x", 100)))
		raw, _ := point.AppendLine(nil, p)
		return newBatch(point.Metric, 1, raw, codec)
	}
	size := func(b *batch) int64 { gz, _ := b.gzipBytes(1); return int64(len(gz)) }
	capacity := 2*size(mk(0)) + size(mk(0))/2 // room for two batches
	dir := t.TempDir()
	q, err := openSpillQueue(dir, capacity, codec, func(c point.Category, n int, r dropReason, _ error) { dropped[r] += n })
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		pushBatch(t, q, mk(i), uint64(i))
	}
	if dropped[dropSpillFull] != 3 {
		t.Fatalf("dropped %v, want 3 spill_full", dropped)
	}
	if n, bytes := q.size(); n != 2 || bytes > capacity {
		t.Fatalf("spill holds %d batches, %d bytes; want 2 within %d", n, bytes, capacity)
	}
	if kept := drainSpill(t, q, nil); len(kept) != 2 || kept[0] != 3 || kept[1] != 4 {
		t.Fatalf("kept %v, want the newest [3 4]", kept)
	}
}

// TestSpillQueueOrdersBySequenceAndRescans: batches land in sequence order however they
// arrive (a sender's failed batch after newer ones the spill writer stored), a restart
// keeps that order and puts the new run's batches after the old ones.
func TestSpillQueueOrdersBySequenceAndRescans(t *testing.T) {
	codec := &gzipCodec{}
	dir := t.TempDir()
	noDrop := func(point.Category, int, dropReason, error) { t.Error("unexpected drop") }
	q, err := openSpillQueue(dir, 1<<20, codec, noDrop)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(i int) *batch {
		raw, _ := point.AppendLine(nil, seqPoints("m", i, 1)[0])
		return newBatch(point.Logging, 1, raw, codec)
	}
	for _, i := range []int{2, 3} {
		pushBatch(t, q, mk(i), uint64(i))
	}
	pushBatch(t, q, mk(1), 1) // older than everything spilled
	// A crash mid-write leaves a temp file; the rescan removes it and ignores strangers.
	if err := os.WriteFile(filepath.Join(dir, spillTmpPrefix+"123"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	reopened, err := openSpillQueue(dir, 1<<20, codec, noDrop)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, spillTmpPrefix+"123")); !os.IsNotExist(err) {
		t.Fatal("temp file not removed on rescan")
	}
	pushBatch(t, reopened, mk(4), 0) // the new run's first batch: after the old run's
	got := drainSpill(t, reopened, func(e spillEntry) {
		if e.cat != point.Logging || e.seg.name.points != 1 || e.seg.name.legacy {
			t.Fatalf("entry %+v", e.seg.name)
		}
	})
	wantSeq(t, got, 1, 5)
}

// TestSpillQueueReadsOldNames: files named without the checksum (apmkit before it) are
// still delivered, in order with the new ones.
func TestSpillQueueReadsOldNames(t *testing.T) {
	codec := &gzipCodec{}
	dir := t.TempDir()
	raw, _ := point.AppendLine(nil, seqPoints("m", 0, 1)[0])
	gz, _ := newBatch(point.Metric, 1, raw, codec).gzipBytes(5)
	old := spillName{seq: firstSpillSeq, cat: point.Metric, points: 1, legacy: true}
	if err := os.WriteFile(filepath.Join(dir, old.String()), gz, 0o644); err != nil {
		t.Fatal(err)
	}
	q, err := openSpillQueue(dir, 1<<20, codec, func(point.Category, int, dropReason, error) { t.Error("unexpected drop") })
	if err != nil {
		t.Fatal(err)
	}
	raw1, _ := point.AppendLine(nil, seqPoints("m", 1, 1)[0])
	pushBatch(t, q, newBatch(point.Metric, 1, raw1, codec), 0)
	wantSeq(t, drainSpill(t, q, nil), 0, 2)
}

// TestSpillCorruptBatchDroppedAndCounted: a spill file that is not what its name says (an
// old-style file that is not gzip, a new one whose CRC does not match) is dropped and its
// points counted; delivery goes on.
func TestSpillCorruptBatchDroppedAndCounted(t *testing.T) {
	s := newSink(t, nil)
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "spill", "dataway")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	legacy := spillName{seq: firstSpillSeq, cat: point.Metric, points: 7, legacy: true}
	damaged := spillName{seq: firstSpillSeq + 1, cat: point.Metric, points: 5, crc: 1, batches: 2}
	for _, n := range []spillName{legacy, damaged} {
		if err := os.WriteFile(filepath.Join(dir, n.String()), []byte("not gzip"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u := startUploader(t, testConfig(datawayOutput(s, "tkn_1")), dataDir)
	feed(t, u, point.Metric, seqPoints("m", 0, 3))
	waitFor(t, "delivery", func() bool { return s.deliveredCount() >= 3 })
	stopUploader(t, u)
	if st := outputStats(u, "dataway"); st.Dropped["spill_corrupt"] != 12 {
		t.Fatalf("stats %+v, want 12 spill_corrupt", st)
	}
	wantSeq(t, seqOf(t, s.delivered("")), 0, 3)
}

// TestSpillSegmentResumesAfterStop: batches spilled together share a file; a stop after
// some of them were delivered records that in the file name, and the next run delivers the
// rest, each batch once, in order.
func TestSpillSegmentResumesAfterStop(t *testing.T) {
	codec := &gzipCodec{}
	dir := t.TempDir()
	noDrop := func(point.Category, int, dropReason, error) { t.Error("unexpected drop") }
	q, err := openSpillQueue(dir, 1<<20, codec, noDrop)
	if err != nil {
		t.Fatal(err)
	}
	var items []spillItem
	for i := 0; i < 5; i++ {
		raw, _ := point.AppendLine(nil, seqPoints("m", i, 1)[0])
		gz, _ := newBatch(point.Tracing, 1, raw, codec).gzipBytes(1)
		items = append(items, spillItem{seq: uint64(i), cat: point.Tracing, points: 1, gz: gz})
	}
	if n, err := q.pushGroup(items); n != 5 || err != nil {
		t.Fatalf("pushGroup: %d, %v", n, err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"+spillSuffix))
	if len(files) != 1 {
		t.Fatalf("files %v, want one segment", files)
	}
	var got []int64
	for i := 0; i < 2; i++ { // deliver two, then "stop"
		e, _ := q.peek()
		b, err := q.load(e)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := b.rawBytes()
		pts, _ := point.Parse(raw)
		got = append(got, seqOf(t, pts)...)
		q.complete(e)
	}
	if err := q.close(); err != nil {
		t.Fatal(err)
	}
	reopened, err := openSpillQueue(dir, 1<<20, codec, noDrop)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := reopened.size(); n != 3 {
		t.Fatalf("reopened spill holds %d batches, want 3", n)
	}
	got = append(got, drainSpill(t, reopened, nil)...)
	wantSeq(t, got, 0, 5)
	if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) != 0 {
		t.Fatalf("files left: %v", files)
	}
}

// TestSpillCapacityEndToEnd: a down output with a 1 MiB spill and ~3 MiB of incompressible
// batches keeps the newest, drops the oldest, counts and logs them, and delivers the rest in
// order.
func TestSpillCapacityEndToEnd(t *testing.T) {
	s, up := switchableSink(t)
	dataDir := t.TempDir()
	out := datawayOutput(s, "tkn_1")
	out.CapacityMB = 1
	// Long probe delays: after its first failure the output waits instead of holding the
	// spill's oldest batch in flight, so eviction is strictly oldest-first here.
	out.RetryInitial, out.RetryMax, out.RetryMaxElapsed = time.Minute, time.Minute, time.Millisecond
	cfg := testConfig(out)
	cfg.BatchMaxPoints = 50
	const total = 1500
	pts := seqPoints("span", 0, total)
	for _, p := range pts {
		p.AddField(point.String("payload", randomHex(t, 3000))) // ~1.5 KiB gzip'd per point
	}
	logs, log := newLogBuffer(t)
	first := startUploaderWith(t, cfg, dataDir, log, prometheus.NewRegistry())
	for i := 0; i < total; i += 100 {
		feed(t, first, point.Tracing, pts[i:i+100])
	}
	stopUploader(t, first)
	st := outputStats(first, "dataway")
	droppedFull := st.Dropped["spill_full"]
	if droppedFull == 0 || st.SpillBytes > 1<<20 {
		t.Fatalf("stats %+v: want spill_full drops and at most 1 MiB on disk", st)
	}
	// Logged at once, then summed (here at Stop): the lines add up to the counter.
	if lines := logs.find("ERROR", "disk spill full", "reason=spill_full", "output=dataway", "capacity_mb"); pointsLogged(t, lines) != droppedFull {
		t.Fatalf("spill_full lines %q: want %d points in all", lines, droppedFull)
	}

	up.Store(true)
	out.RetryInitial, out.RetryMax, out.RetryMaxElapsed = time.Millisecond, 5*time.Millisecond, time.Second
	second := startUploader(t, testConfig(out), dataDir)
	waitFor(t, "spill drained", func() bool { return outputStats(second, "dataway").SpillBatches == 0 })
	stopUploader(t, second)

	got := seqOf(t, s.delivered(""))
	if int64(len(got))+droppedFull != total {
		t.Fatalf("delivered %d + dropped %d != %d fed", len(got), droppedFull, total)
	}
	wantSeq(t, got, total-len(got), total) // the newest, contiguous, in order
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestGracefulStopLosesNothing: an output that takes three batches then hangs, a stop
// with a short deadline: every point is delivered or spilled, the spill in order, and after
// a restart all of them arrive exactly once, in order (only the spill is left to send).
func TestGracefulStopLosesNothing(t *testing.T) {
	healthy := &atomic.Bool{}
	var s *sink
	s = newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		if n < 3 || healthy.Load() {
			return http.StatusNoContent
		}
		select { // hang like a stuck server until the client gives up
		case <-r.Context().Done():
		case <-s.stop:
		}
		return 0
	})
	dataDir := t.TempDir()
	out := datawayOutput(s, "tkn_1")
	out.QueueMaxBatches = 2
	cfg := testConfig(out)
	cfg.BatchMaxPoints = 100
	cfg.StopTimeout = 300 * time.Millisecond
	const total = 5000
	first := startUploader(t, cfg, dataDir)
	for i := 0; i < total; i += 500 {
		feed(t, first, point.Tracing, seqPoints("span", i, 500))
	}
	stopUploader(t, first)

	delivered := seqOf(t, s.delivered(""))
	spilled := seqOf(t, spilledPoints(t, dataDir, "dataway"))
	wantOnce(t, append(slices.Clone(delivered), spilled...), 0, total)
	wantOrdered(t, spilled, func(int64) bool { return true })

	healthy.Store(true)
	second := startUploader(t, cfg, dataDir)
	waitFor(t, "spill drained", func() bool { return s.deliveredCount() >= total })
	stopUploader(t, second)
	got := seqOf(t, s.delivered(""))
	wantOnce(t, got, 0, total)
	if !slices.Equal(got[len(delivered):], spilled) {
		t.Fatalf("the second run delivered %v..., want the spill in order, %v...", head(got[len(delivered):]), head(spilled))
	}
}

// TestFailingOutputDoesNotBlockAnother: one output hangs on every request; the other still
// receives every point while it does.
func TestFailingOutputDoesNotBlockAnother(t *testing.T) {
	var stuck *sink
	stuck = newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		select {
		case <-r.Context().Done():
		case <-stuck.stop:
		}
		return 0
	})
	good := newSink(t, nil)
	down := datawayOutput(stuck, "tkn_down")
	down.Name = "down"
	down.QueueMaxBatches = 1
	healthy := datawayOutput(good, "tkn_up")
	healthy.Name = "up"
	cfg := testConfig(down, healthy)
	cfg.BatchMaxPoints = 20
	cfg.StopTimeout = 200 * time.Millisecond
	dataDir := t.TempDir()
	u := startUploader(t, cfg, dataDir)
	const total = 1000
	for i := 0; i < total; i += 100 {
		feed(t, u, point.Metric, seqPoints("m", i, 100))
	}
	waitFor(t, "the healthy output to get everything", func() bool { return good.deliveredCount() >= total })
	if st := outputStats(u, "down"); st.PointsSent != 0 || st.SpillBatches == 0 {
		t.Fatalf("down output: %+v, want nothing sent and batches spilled", st)
	}
	stopUploader(t, u)
	// The healthy output may spill a burst too: its newer batches go first.
	wantOnce(t, seqOf(t, good.delivered("")), 0, total)
	wantSeq(t, seqOf(t, spilledPoints(t, dataDir, "down")), 0, total)
}

func TestStopRespectsCallerContext(t *testing.T) {
	var s *sink
	s = newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		select {
		case <-r.Context().Done():
		case <-s.stop:
		}
		return 0
	})
	dataDir := t.TempDir()
	cfg := testConfig(datawayOutput(s, "tkn_1"))
	cfg.StopTimeout = time.Hour // the caller's context must win
	u, err := New(cfg, dataDir, testLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	feed(t, u, point.Logging, seqPoints("log", 0, 10))
	waitFor(t, "the request to hang", func() bool { return len(s.requests()) > 0 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := u.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	wantSeq(t, seqOf(t, spilledPoints(t, dataDir, "dataway")), 0, 10)
}

// TestFailedBatchGoesBeforeNewerSpilledOnes: the worker holds the oldest batch while newer
// ones overflow to the spill; when that batch then fails (retry budget spent, or the stop
// deadline cuts the request) it must go to the spill head, or the spill's order breaks.
func TestFailedBatchGoesBeforeNewerSpilledOnes(t *testing.T) {
	for _, viaStop := range []bool{false, true} {
		name := map[bool]string{false: "retry budget spent", true: "stop deadline"}[viaStop]
		t.Run(name, func(t *testing.T) {
			release := make(chan struct{})
			var s *sink
			s = newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
				if n > 0 {
					return http.StatusNoContent
				}
				select { // the first request waits until newer batches have spilled
				case <-release:
				case <-r.Context().Done():
				case <-s.stop:
				}
				return http.StatusServiceUnavailable
			})
			dataDir := t.TempDir()
			out := datawayOutput(s, "tkn_1")
			out.QueueMaxBatches = 1
			out.RetryMaxElapsed = time.Millisecond // the first failure gives up at once
			cfg := testConfig(out)
			cfg.BatchMaxPoints = 10
			cfg.StopTimeout = 100 * time.Millisecond
			u := startUploader(t, cfg, dataDir)
			feed(t, u, point.Metric, seqPoints("m", 0, 10))
			waitFor(t, "the first request", func() bool { return len(s.requests()) == 1 })
			for i := 10; i < 100; i += 10 {
				feed(t, u, point.Metric, seqPoints("m", i, 10))
			}
			waitFor(t, "newer batches spilled", func() bool { return outputStats(u, "dataway").SpillBatches >= 8 })
			if viaStop {
				stopUploader(t, u) // cancels the hung first request
				wantSeq(t, seqOf(t, spilledPoints(t, dataDir, "dataway")), 0, 100)
				u = startUploader(t, cfg, dataDir)
			} else {
				close(release)
			}
			waitFor(t, "delivery", func() bool { return s.deliveredCount() >= 100 })
			stopUploader(t, u)
			// The spill holds every batch but maybe the newest (queue_max_batches 1 may keep
			// it in memory, and memory goes first): it is delivered in order, from batch 0.
			got := seqOf(t, s.delivered(""))
			wantOnce(t, got, 0, 100)
			wantOrdered(t, got, func(s int64) bool { return s < 90 })
		})
	}
}
