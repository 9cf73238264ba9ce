package io

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
	"github.com/prometheus/client_golang/prometheus"
)

// prefillSpill writes what a previous run left in an output's spill: batches of 10 points
// (seq 10*i .. 10*i+9), in groups that share a spill file, as the spill writer groups them.
func prefillSpill(t *testing.T, dataDir, output string, groups ...int) (batches int) {
	t.Helper()
	codec := &gzipCodec{}
	q, err := openSpillQueue(filepath.Join(dataDir, "spill", output), 1<<30, codec,
		func(point.Category, int, dropReason, error) { t.Error("unexpected drop") })
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range groups {
		var items []spillItem
		for range n {
			var raw []byte
			for _, p := range seqPoints("span", 10*batches, 10) {
				if raw, err = point.AppendLine(raw, p); err != nil {
					t.Fatal(err)
				}
			}
			gz, err := newBatch(point.Tracing, 10, raw, codec).gzipBytes(1)
			if err != nil {
				t.Fatal(err)
			}
			items = append(items, spillItem{seq: uint64(batches), cat: point.Tracing, points: 10, gz: gz})
			batches++
		}
		if stored, err := q.pushGroup(items); stored != n || err != nil {
			t.Fatalf("pushGroup: %d of %d, %v", stored, n, err)
		}
	}
	if err := q.close(); err != nil {
		t.Fatal(err)
	}
	return batches
}

// firstSeq is the seq of a request's first point, -1 for none.
func firstSeq(r capturedRequest) int64 {
	if len(r.Points) == 0 {
		return -1
	}
	f, ok := r.Points[0].Field("seq")
	if !ok {
		return -1
	}
	return f.IntValue()
}

// TestSpillDrainsInParallel: a spill is delivered with max_in_flight requests at once, not
// one batch at a time. The sink answers no request until four are in flight together, so a
// drain one at a time never gets an answer. Batches of one spill file complete out of
// order; each is delivered once.
func TestSpillDrainsInParallel(t *testing.T) {
	dataDir := t.TempDir()
	total := prefillSpill(t, dataDir, "dataway", 8, 8, 8, 1, 1)
	const inFlight = 4
	var cur, peak atomic.Int32
	together := make(chan struct{})
	var once sync.Once
	var s *sink
	s = newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		defer cur.Add(-1)
		c := cur.Add(1)
		for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
		}
		if c == inFlight {
			once.Do(func() { close(together) })
		}
		select {
		case <-together:
		case <-r.Context().Done():
		case <-s.stop:
		}
		return http.StatusNoContent
	})
	out := datawayOutput(s, "tkn_1")
	out.MaxInFlight = inFlight
	u := startUploader(t, testConfig(out), dataDir)
	waitFor(t, fmt.Sprintf("%d spill requests at once", inFlight), func() bool { return peak.Load() == inFlight })
	waitFor(t, "the spill delivered", func() bool { return outputStats(u, "dataway").SpillBatches == 0 })
	stopUploader(t, u)
	wantOnce(t, seqOf(t, s.delivered("")), 0, 10*total)
	if files, _ := filepath.Glob(filepath.Join(dataDir, "spill", "dataway", "*")); len(files) != 0 {
		t.Fatalf("spill files left: %v", files)
	}
}

// TestFreshBatchesGoFirstWhileTheSpillDrains: while the spill is being delivered, new
// batches are sent (not held behind it), and while the output takes them as fast as they
// come nothing new is spilled. The sink holds the spill's first batch until the end, so the
// spill is never empty meanwhile.
func TestFreshBatchesGoFirstWhileTheSpillDrains(t *testing.T) {
	dataDir := t.TempDir()
	spilled := prefillSpill(t, dataDir, "dataway", 4, 2)
	release := make(chan struct{})
	var s *sink
	s = newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		if firstSeq(s.requests()[n]) == 0 {
			select {
			case <-release:
			case <-r.Context().Done():
			case <-s.stop:
			}
		}
		return http.StatusNoContent
	})
	out := datawayOutput(s, "tkn_1")
	out.MaxInFlight = 2
	out.QueueMaxBatches = 2
	out.Timeout = time.Hour // the held request must not time out: that would free its sender
	cfg := testConfig(out)
	cfg.BatchMaxPoints = 10
	u := startUploader(t, cfg, dataDir)
	waitFor(t, "the spill delivered but its held first batch", func() bool {
		return outputStats(u, "dataway").SpillBatches == 1 && s.deliveredCount() == 10*(spilled-1)
	})
	const fresh = 12 // several times queue_max_batches: held in memory, they would be spilled
	from := 10 * spilled
	for i := range fresh {
		feed(t, u, point.Tracing, seqPoints("span", from+10*i, 10))
		waitFor(t, fmt.Sprintf("new batch %d delivered while the spill holds a batch", i), func() bool {
			return s.deliveredCount() == 10*(spilled-1+i+1)
		})
	}
	if st := outputStats(u, "dataway"); st.SpilledBatches != 0 || st.SpillBatches != 1 {
		t.Fatalf("stats %+v: the new batches must go out while the spill drains, none of them spilled", st)
	}
	close(release)
	waitFor(t, "the spill delivered", func() bool { return outputStats(u, "dataway").SpillBatches == 0 })
	stopUploader(t, u)
	got := seqOf(t, s.delivered(""))
	wantOnce(t, got, 0, from+10*fresh)
	wantOrdered(t, got, func(s int64) bool { return s >= int64(from) }) // one sender free: in feed order
}

// TestSpillQueueDeliversOutOfOrder: several batches of one spill file are handed out at
// once, oldest first, and may complete in any order; a failed one is handed out again
// first; a graceful stop rewrites the file without the delivered batches, so the next run
// sends each of the others once; eviction spares a file being delivered.
func TestSpillQueueDeliversOutOfOrder(t *testing.T) {
	codec := &gzipCodec{}
	dir := t.TempDir()
	noDrop := func(point.Category, int, dropReason, error) { t.Error("unexpected drop") }
	q, err := openSpillQueue(dir, 1<<20, codec, noDrop)
	if err != nil {
		t.Fatal(err)
	}
	var items []spillItem
	for i := range 6 {
		raw, _ := point.AppendLine(nil, seqPoints("m", i, 1)[0])
		gz, _ := newBatch(point.Tracing, 1, raw, codec).gzipBytes(1)
		items = append(items, spillItem{seq: uint64(i), cat: point.Tracing, points: 1, gz: gz})
	}
	if n, err := q.pushGroup(items); n != 6 || err != nil {
		t.Fatalf("pushGroup: %d, %v", n, err)
	}
	seqOfEntry := func(e spillEntry) int64 {
		b, err := q.load(e)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := b.rawBytes()
		pts, _ := point.Parse(raw)
		return seqOf(t, pts)[0]
	}
	var es []spillEntry
	for want := range int64(3) {
		e, ok := q.peek()
		if !ok || seqOfEntry(e) != want {
			t.Fatalf("peek %d: %v, %+v", want, ok, e)
		}
		es = append(es, e)
	}
	q.complete(es[2])
	q.complete(es[1])
	q.release(es[0], nil)
	if n, _ := q.size(); n != 4 {
		t.Fatalf("%d batches left, want 4", n)
	}
	if e, ok := q.peek(); !ok || e != es[0] {
		t.Fatalf("after a failure the oldest batch goes again first: got %+v", e)
	} else {
		q.release(e, nil)
	}
	if err := q.close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 || !strings.HasSuffix(files[0], "-4-0"+spillSuffix) {
		t.Fatalf("files %v, want one rewritten file of the 4 batches left", files)
	}
	reopened, err := openSpillQueue(dir, 1<<20, codec, noDrop)
	if err != nil {
		t.Fatal(err)
	}
	if got := drainSpill(t, reopened, nil); fmt.Sprint(got) != "[0 3 4 5]" {
		t.Fatalf("the next run delivers %v, want [0 3 4 5]", got)
	}

	// Eviction spares the file being delivered and takes the next oldest.
	left := map[int64]bool{}
	one := int64(len(items[0].gz)) + memberHeaderLen - gzipHeaderLen
	small, err := openSpillQueue(t.TempDir(), 2*one+one/2, codec, func(_ point.Category, n int, r dropReason, _ error) {
		if r != dropSpillFull || n != 1 {
			t.Errorf("drop %d %v", n, r)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	push := func(i int) {
		if _, err := small.pushGroup(items[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	push(0)
	busy, _ := small.peek()
	push(1)
	push(2) // no room: batch 1 goes, batch 0 is being delivered
	small.complete(busy)
	for _, s := range drainSpill(t, small, nil) {
		left[s] = true
	}
	if !left[2] || len(left) != 1 {
		t.Fatalf("left after eviction %v, want [2]", left)
	}
}

// TestBehindLogSaysWhy: the line that says batches go to the spill gives the reason: an
// output that is merely slow says so, with what waits, and no (empty or stale) last error; a
// failing one gives its state and last error.
func TestBehindLogSaysWhy(t *testing.T) {
	t.Run("slow", func(t *testing.T) {
		release := make(chan struct{})
		var s *sink
		s = newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
			select { // slower than the input: nothing is answered until released
			case <-release:
			case <-r.Context().Done():
			case <-s.stop:
			}
			return http.StatusNoContent
		})
		out := datawayOutput(s, "tkn_1")
		out.QueueMaxBatches = 2
		cfg := testConfig(out)
		cfg.BatchMaxPoints = 10
		logs, log := newLogBuffer(t)
		u := startUploaderWith(t, cfg, t.TempDir(), log, prometheus.NewRegistry())
		for i := 0; i < 100; i += 10 {
			feed(t, u, point.Tracing, seqPoints("span", i, 10))
		}
		waitFor(t, "batches spilled", func() bool { return outputStats(u, "dataway").SpilledBatches > 0 })
		lines := logs.find("WARN", "output behind or failing", "output=dataway", `reason="output slower than the input: `, "batches waiting in memory")
		if len(lines) != 1 || strings.Contains(lines[0], "last_error") {
			t.Fatalf("want one line saying the output is slower than the input, without a last error; got %q", logs.find(""))
		}
		close(release)
		waitFor(t, "delivery", func() bool { return s.deliveredCount() == 100 })
		stopUploader(t, u)
	})
	t.Run("failing", func(t *testing.T) {
		s, _ := switchableSink(t)
		logs, log := newLogBuffer(t)
		u := startUploaderWith(t, testConfig(datawayOutput(s, "tkn_1")), t.TempDir(), log, prometheus.NewRegistry())
		feed(t, u, point.Tracing, seqPoints("span", 0, 10))
		waitFor(t, "the batch spilled", func() bool { return outputStats(u, "dataway").SpilledBatches > 0 })
		stopUploader(t, u)
		if lines := logs.find("WARN", "output behind or failing", "reason=", "state=failing", `last_error="HTTP 503`); len(lines) != 1 {
			t.Fatalf("want one line with the state and the last error; got %q", logs.find(""))
		}
	})
}

// TestSpillErrorLogsTheLostPoints: when the spill cannot be written (here its folder became
// a file: the same path as a full disk), the batches are dropped, counted as spill_error,
// and logged with their points and the cause: the lines add up to the counter.
func TestSpillErrorLogsTheLostPoints(t *testing.T) {
	s, _ := switchableSink(t)
	dataDir := t.TempDir()
	cfg := testConfig(datawayOutput(s, "tkn_1"))
	cfg.BatchMaxPoints = 10
	logs, log := newLogBuffer(t)
	u := startUploaderWith(t, cfg, dataDir, log, prometheus.NewRegistry())
	dir := filepath.Join(dataDir, "spill", "dataway")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i += 10 {
		feed(t, u, point.Tracing, seqPoints("span", i, 10))
	}
	waitFor(t, "a spill write failed", func() bool { return outputStats(u, "dataway").Dropped["spill_error"] > 0 })
	first := logs.find("ERROR", "could not write the disk spill", "reason=spill_error", "category=tracing", "not a directory")
	if len(first) != 1 || pointsLogged(t, first) == 0 {
		t.Fatalf("want the first loss logged at once with its points; got %q", logs.find(""))
	}
	stopUploader(t, u)
	st := outputStats(u, "dataway")
	lines := logs.find("ERROR", "reason=spill_error")
	if st.Dropped["spill_error"] != 50 || pointsLogged(t, lines) != 50 {
		t.Fatalf("dropped %v; logged %q: want 50 points counted and logged", st.Dropped, lines)
	}
	if !strings.Contains(st.LastError, "not a directory") {
		t.Fatalf("last error %q", st.LastError)
	}
}

// TestDropLogSumsLossesBetweenLines: a reason's first loss is logged at once, later ones
// summed on the next line (at the end of the interval, or at Stop), with their categories
// and latest cause; no line is lost and none counts a point twice.
func TestDropLogSumsLossesBetweenLines(t *testing.T) {
	var buf lockedBuffer
	l := newDropLog(slog.New(slog.NewTextHandler(&buf, nil)), "http://sink")
	l.every = time.Hour
	l.note(point.Tracing, 5, dropSpillFull, errors.New("first"))
	l.note(point.Tracing, 7, dropSpillFull, errors.New("second"))
	l.note(point.Metric, 11, dropSpillFull, errors.New("third"))
	l.note(point.Tracing, 2, dropQueueFull, nil)
	if lines := buf.lines(); len(lines) != 2 || !strings.Contains(lines[0], "points=5 ") || !strings.Contains(lines[0], "err=first") ||
		!strings.Contains(lines[1], "reason=queue_full points=2 ") || strings.Contains(lines[0], "url=") {
		t.Fatalf("want the first loss of each reason logged at once; got %q", lines)
	}
	l.flush()
	lines := buf.lines()
	if len(lines) != 3 || !strings.Contains(lines[2], "reason=spill_full points=18 category=metric,tracing over=") || !strings.Contains(lines[2], "err=third") {
		t.Fatalf("want the losses since the first line summed at Stop; got %q", lines)
	}

	// Without a Stop, the interval's end logs them.
	var buf2 lockedBuffer
	l2 := newDropLog(slog.New(slog.NewTextHandler(&buf2, nil)), "http://sink")
	l2.every = 20 * time.Millisecond
	l2.note(point.Tracing, 3, dropMalformed, errors.New("HTTP 400"))
	l2.note(point.Tracing, 4, dropMalformed, errors.New("HTTP 400"))
	waitFor(t, "the second line", func() bool { return len(buf2.lines()) == 2 })
	if lines := buf2.lines(); pointsLogged(t, lines) != 7 || !strings.Contains(lines[1], "url=http://sink") {
		t.Fatalf("lines %q: want 7 points in all, with the output's URL", lines)
	}
	l2.flush()
	if n := len(buf2.lines()); n != 2 {
		t.Fatalf("%d lines after flush, want 2: nothing was left", n)
	}
}

// lockedBuffer is a log destination safe for the timer's goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSpace(b.buf.String()), "\n")
}

// TestEveryDropReasonLogged: losses before any output are logged too, with their count:
// queue_full (Feed waited feed_timeout), not_running, no_output, invalid.
func TestEveryDropReasonLogged(t *testing.T) {
	s := newSink(t, nil)
	out := datawayOutput(s, "tkn_1")
	out.Categories = []string{"tracing"}
	cfg := testConfig(out)
	cfg.QueueMaxMB = 1
	cfg.FeedTimeout = time.Millisecond
	logs, log := newLogBuffer(t)
	u, err := New(cfg, t.TempDir(), log, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Marked running without starting the outputs: nothing frees the budget (see
	// TestFeedReportsQueueFull).
	u.accepting.Store(true)
	pts := seqPoints("span", 0, 800)
	for _, p := range pts {
		p.AddField(point.String("pad", strings.Repeat("x", 2000)))
	}
	if err := u.Feed(context.Background(), point.Tracing, pts); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Feed: %v", err)
	}
	feed(t, u, point.Metric, seqPoints("m", 0, 3)) // no output takes metrics
	if err := u.Feed(context.Background(), point.Tracing, []*point.Point{point.New("span", 1), nil}); err != nil {
		t.Fatalf("Feed: %v", err) // invalid points are skipped, not an error
	}
	u.accepting.Store(false)
	if err := u.Feed(context.Background(), point.Tracing, seqPoints("span", 0, 4)); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Feed: %v", err)
	}
	if err := u.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	tracing, metric := categoryStats(u, point.Tracing), categoryStats(u, point.Metric)
	for _, c := range []struct {
		level, reason string
		want          int64
	}{
		{"WARN", "queue_full", tracing.Dropped["queue_full"]},
		{"INFO", "no_output", 3},
		{"WARN", "invalid", 2},
		{"WARN", "not_running", 4},
	} {
		got := pointsLogged(t, logs.find(c.level, "reason="+c.reason))
		counted := tracing.Dropped[c.reason] + metric.Dropped[c.reason]
		if got != c.want || counted != c.want || got == 0 {
			t.Errorf("%s: %d points logged, %d counted, want %d", c.reason, got, counted, c.want)
		}
	}
}
