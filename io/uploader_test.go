package io

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestInvalidPointsCountedNeverSent(t *testing.T) {
	s := newSink(t, nil)
	u := startUploader(t, testConfig(datawayOutput(s, "tkn_1")), t.TempDir())

	valid := seqPoints("m", 0, 2)
	nan := point.New("m", 1)
	nan.AddField(point.Float("v", math.NaN()))
	noFields := point.New("m", 1)
	noName := point.New("", 1)
	noName.AddField(point.Int("v", 1))
	unsorted := &point.Point{Name: "m", Tags: []point.Tag{{Key: "b", Value: "1"}, {Key: "a", Value: "2"}}, Fields: []point.Field{point.Int("v", 1)}}
	dup := &point.Point{Name: "m", Fields: []point.Field{point.Int("v", 1), point.Int("v", 2)}}
	badString := point.New("m", 1)
	badString.AddField(point.String("s", "\xff\xfe"))

	feed(t, u, point.Metric, []*point.Point{valid[0], nan, noFields, noName, nil, unsorted, dup, badString, valid[1]})
	waitFor(t, "the valid points", func() bool { return s.deliveredCount() >= 2 })
	stopUploader(t, u)

	wantSeq(t, seqOf(t, s.delivered("")), 0, 2)
	cs := categoryStats(u, point.Metric)
	want := map[string]int64{"bad_float": 1, "no_fields": 1, "no_name": 1, "nil_point": 1, "tags_unsorted": 1, "dup_field": 1, "bad_string": 1}
	for k, v := range want {
		if cs.Rejected[k] != v {
			t.Errorf("rejected[%s] = %d, want %d (all: %v)", k, cs.Rejected[k], v, cs.Rejected)
		}
	}
	if cs.Dropped["invalid"] != 7 || cs.PointsIn != 9 || cs.PointsBatched != 2 {
		t.Fatalf("category stats %+v", cs)
	}
}

// budgetWaiters is the length of the budget's line of waiting feeders.
func budgetWaiters(b *byteBudget) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiters.Len()
}

func TestByteBudgetServesFeedersInOrder(t *testing.T) {
	ctx := context.Background()
	never := func() <-chan time.Time { return nil }
	fired := func() <-chan time.Time {
		c := make(chan time.Time, 1)
		c <- time.Now()
		return c
	}
	b := newByteBudget(100)
	for _, n := range []int64{60, 30} {
		if err := b.acquire(ctx, n, never); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 2)
	go func() { done <- b.acquire(ctx, 30, never) }() // does not fit: waits
	waitFor(t, "the first feeder in line", func() bool { return budgetWaiters(b) == 1 })
	go func() { done <- b.acquire(ctx, 5, never) }() // would fit, but must not pass the first
	waitFor(t, "the second feeder in line", func() bool { return budgetWaiters(b) == 2 })
	if used := b.inUse(); used != 90 {
		t.Fatalf("in use %d: a later, smaller request passed an earlier one", used)
	}
	b.release(40) // makes room for both, in order
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("waiting feeder: %v", err)
		}
	}
	if used := b.inUse(); used != 85 {
		t.Fatalf("in use %d, want 85", used)
	}
	if err := b.acquire(ctx, 50, fired); !errors.Is(err, ErrQueueFull) || budgetWaiters(b) != 0 {
		t.Fatalf("acquire past the deadline: %v (waiters %d)", err, budgetWaiters(b))
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.acquire(cancelled, 50, never); !errors.Is(err, ErrQueueFull) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire: %v", err)
	}
	// A feeder that gives up at the head of the line lets the next one through.
	head, cancelHead := context.WithCancel(ctx)
	go func() { done <- b.acquire(head, 50, never) }()
	waitFor(t, "the head feeder", func() bool { return budgetWaiters(b) == 1 })
	go func() { done <- b.acquire(ctx, 10, never) }()
	waitFor(t, "the feeder behind it", func() bool { return budgetWaiters(b) == 2 })
	cancelHead()
	errs := []error{<-done, <-done}
	if (errs[0] == nil) == (errs[1] == nil) || b.inUse() != 95 {
		t.Fatalf("after the head gave up: %v, in use %d (want one granted, 95)", errs, b.inUse())
	}
	b.release(95)
	if err := b.acquire(ctx, 500, never); err != nil {
		t.Fatalf("a request larger than the budget must pass when nothing is held: %v", err)
	}
	go func() { done <- b.acquire(ctx, 1, never) }()
	waitFor(t, "a feeder waiting on close", func() bool { return budgetWaiters(b) == 1 })
	b.close()
	if err := <-done; !errors.Is(err, errBudgetClosed) {
		t.Fatalf("waiter on close: %v", err)
	}
	if err := b.acquire(ctx, 1, never); !errors.Is(err, errBudgetClosed) {
		t.Fatalf("acquire after close: %v", err)
	}
}

func TestFeedReportsQueueFull(t *testing.T) {
	s := newSink(t, nil)
	cfg := testConfig(datawayOutput(s, "tkn_1"))
	cfg.QueueMaxMB = 1
	cfg.FeedTimeout = time.Millisecond
	u, err := New(cfg, t.TempDir(), testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Marked running without starting the outputs: the test plays a stalled output whose
	// spill writer does not run either, so the budget stays spent and Feed must give up
	// after feed_timeout.
	u.accepting.Store(true)
	const total = 800
	pts := seqPoints("m", 0, total)
	for _, p := range pts {
		p.AddField(point.String("pad", strings.Repeat("x", 2000)))
	}
	err = u.Feed(context.Background(), point.Metric, pts)
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Feed: %v, want ErrQueueFull", err)
	}
	cs, st := categoryStats(u, point.Metric), u.Stats()
	dropped := cs.Dropped["queue_full"]
	if dropped == 0 || dropped+cs.PointsIn != total || cs.QueuePoints != cs.PointsIn {
		t.Fatalf("stats %+v: want queue_full drops, the rest held", cs)
	}
	if st.QueueBytes > st.QueueCapacityBytes || st.QueueCapacityBytes != 1<<20 || st.QueueBytes < 1<<19 {
		t.Fatalf("queue bytes %d of %d: the budget must be (nearly) full and never exceeded", st.QueueBytes, st.QueueCapacityBytes)
	}
	if !strings.Contains(u.Stats().LastError, fmt.Sprintf("%d of %d points dropped", dropped, total)) {
		t.Fatalf("last error %q", u.Stats().LastError)
	}
	// Back to "never started" so Stop does not wait for outputs that never ran.
	u.accepting.Store(false)
	if err := u.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestLifecycle(t *testing.T) {
	reg := prometheus.NewRegistry()
	u, err := New(testConfig(), t.TempDir(), nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Feed(context.Background(), point.Metric, seqPoints("m", 0, 1)); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Feed before Start: %v", err)
	}
	if err := u.Stop(context.Background()); err != nil {
		t.Fatalf("Stop before Start: %v", err)
	}
	if err := u.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := u.Start(context.Background()); err == nil {
		t.Fatal("Start after Stop succeeded")
	}
	if err := u.Feed(context.Background(), point.Metric, seqPoints("m", 0, 2)); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Feed after Stop: %v", err)
	}
	if cs := categoryStats(u, point.Metric); cs.Dropped["not_running"] != 3 {
		t.Fatalf("not_running drops %v", cs.Dropped)
	}
	if err := u.Feed(context.Background(), point.Category(99), seqPoints("m", 0, 1)); err == nil {
		t.Fatal("unknown category accepted")
	}
	// Stop unregistered the metrics: a new uploader can use the same registry.
	again, err := New(testConfig(), t.TempDir(), nil, reg)
	if err != nil {
		t.Fatalf("New on the same registry after Stop: %v", err)
	}
	if _, err := New(testConfig(), t.TempDir(), nil, reg); err == nil {
		t.Fatal("two live uploaders registered the same metrics")
	}
	_ = again.Stop(context.Background())
}

func TestCategoriesRouteToOutputs(t *testing.T) {
	traces, metrics := newSink(t, nil), newSink(t, nil)
	a := datawayOutput(traces, "tkn_a")
	a.Categories = []string{"tracing"}
	b := datawayOutput(metrics, "tkn_b")
	b.Categories = []string{"metric"}
	u := startUploader(t, testConfig(a, b), t.TempDir())
	feed(t, u, point.Tracing, seqPoints("span", 0, 3))
	feed(t, u, point.Metric, seqPoints("m", 0, 4))
	feed(t, u, point.Logging, seqPoints("log", 0, 5)) // nobody takes logging
	stopUploader(t, u)
	if len(traces.delivered("/v1/write/tracing")) != 3 || traces.deliveredCount() != 3 {
		t.Fatal("tracing output got other categories")
	}
	if len(metrics.delivered("/v1/write/metric")) != 4 || metrics.deliveredCount() != 4 {
		t.Fatal("metric output got other categories")
	}
	if cs := categoryStats(u, point.Logging); cs.Dropped["no_output"] != 5 {
		t.Fatalf("logging %+v", cs)
	}
}

func TestBatchesCutByPointsAndBytes(t *testing.T) {
	s := newSink(t, nil)
	cfg := testConfig(datawayOutput(s, "tkn_1"))
	cfg.BatchMaxPoints = 7
	cfg.FlushInterval = time.Hour // only size cuts, and the final flush on Stop
	u := startUploader(t, cfg, t.TempDir())
	feed(t, u, point.Metric, seqPoints("m", 0, 30))
	stopUploader(t, u)
	var sizes []int
	for _, r := range s.requests() {
		sizes = append(sizes, len(r.Points))
	}
	if got := fmt.Sprint(sizes); got != "[7 7 7 7 2]" {
		t.Fatalf("batch sizes %s, want [7 7 7 7 2]", got)
	}
	wantSeq(t, seqOf(t, s.delivered("")), 0, 30)

	s2 := newSink(t, nil)
	cfg = testConfig(datawayOutput(s2, "tkn_1"))
	line, _ := point.AppendLine(nil, seqPoints("m", 0, 1)[0])
	cfg.BatchMaxBytes = 3*len(line) + len(line)/2 // three lines fit, not four
	cfg.FlushInterval = time.Hour
	u = startUploader(t, cfg, t.TempDir())
	feed(t, u, point.Metric, seqPoints("m", 0, 10))
	stopUploader(t, u)
	for _, r := range s2.requests() {
		if len(r.Body) > cfg.BatchMaxBytes || len(r.Points) > 3 {
			t.Fatalf("batch of %d bytes / %d points over batch_max_bytes %d", len(r.Body), len(r.Points), cfg.BatchMaxBytes)
		}
	}
	wantSeq(t, seqOf(t, s2.delivered("")), 0, 10)
}

func TestStatsAndMetricsAgree(t *testing.T) {
	s := newSink(t, nil)
	reg := prometheus.NewRegistry()
	u, err := New(testConfig(datawayOutput(s, "tkn_0123456789abcdef")), t.TempDir(), testLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	bad := point.New("m", 1) // no fields
	feed(t, u, point.Tracing, append(seqPoints("span", 0, 12), bad))
	// Wait on the uploader's count, not the sink's: the sink sees a request before the
	// uploader has read the answer.
	waitFor(t, "delivery", func() bool { return outputStats(u, "dataway").PointsSent >= 12 })

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "apmkit_io_") {
			t.Errorf("metric %s lacks the apmkit_io_ prefix", f.GetName())
		}
		for _, m := range f.GetMetric() {
			values[f.GetName()+labelsOf(m)] += valueOf(m)
		}
	}
	checks := map[string]float64{
		"apmkit_io_points_in_total{category=tracing}":                                      13,
		"apmkit_io_points_sent_total{category=tracing,output=dataway}":                     12,
		"apmkit_io_points_rejected_total{category=tracing,reason=no_fields}":               1,
		"apmkit_io_points_dropped_total{category=tracing,output=,reason=invalid}":          1,
		"apmkit_io_batches_sent_total{output=dataway}":                                     float64(outputStats(u, "dataway").BatchesSent),
		"apmkit_io_queue_capacity_bytes{}":                                                 16 << 20,
		"apmkit_io_spill_batches{output=dataway}":                                          0,
		"apmkit_io_points_dropped_total{category=tracing,output=dataway,reason=permanent}": 0,
	}
	for k, want := range checks {
		got, ok := values[k]
		if !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	if values["apmkit_io_bytes_sent_total{output=dataway}"] <= 0 {
		t.Error("bytes_sent_total not counted")
	}
	stopUploader(t, u)

	js, err := json.Marshal(u.Stats())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), "0123456789abcdef") || !strings.Contains(string(js), "tkn_****cdef") {
		t.Fatalf("Stats JSON must mask the token: %s", js)
	}
	if strings.Contains(strings.Join(u.Outputs(), " "), "0123456789abcdef") {
		t.Fatalf("Outputs() must mask the token: %v", u.Outputs())
	}
}

func labelsOf(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func valueOf(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}
