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

func TestPointQueueBoundsAndWakesFeeders(t *testing.T) {
	q := newPointQueue(10)
	ctx := context.Background()
	n, err := q.push(ctx, seqPoints("m", 0, 15), time.Millisecond)
	if n != 10 || !errors.Is(err, ErrQueueFull) {
		t.Fatalf("push 15 into 10: accepted %d, err %v", n, err)
	}
	done := make(chan int)
	go func() {
		n, _ := q.push(ctx, seqPoints("m", 10, 5), time.Hour)
		done <- n
	}()
	got, _ := q.pop(nil, 5) // makes room: the waiting feeder must complete
	if len(got) != 5 {
		t.Fatalf("popped %d", len(got))
	}
	if n := <-done; n != 5 {
		t.Fatalf("waiting feeder accepted %d", n)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := q.push(cancelled, seqPoints("m", 0, 1), time.Hour); !errors.Is(err, ErrQueueFull) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled push: %v", err)
	}
	var all []int64
	for {
		pts, done := q.pop(nil, 3)
		all = append(all, seqOf(t, pts)...)
		if len(pts) == 0 {
			if done {
				t.Fatal("done before close")
			}
			break
		}
	}
	wantSeq(t, all, 5, 15)
	q.close()
	if _, err := q.push(ctx, seqPoints("m", 0, 1), time.Hour); !errors.Is(err, errQueueClosed) {
		t.Fatalf("push after close: %v", err)
	}
	if _, done := q.pop(nil, 1); !done {
		t.Fatal("closed empty queue not done")
	}
}

func TestFeedReportsQueueFull(t *testing.T) {
	s := newSink(t, nil)
	cfg := testConfig(datawayOutput(s, "tkn_1"))
	cfg.QueueMaxPoints = 5
	cfg.FeedTimeout = time.Millisecond
	u, err := New(cfg, t.TempDir(), testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Marked running without starting the batchers: the test plays a stalled batcher, so
	// the queue stays full for certain and Feed must give up after feed_timeout.
	u.accepting.Store(true)
	err = u.Feed(context.Background(), point.Metric, seqPoints("m", 0, 8))
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Feed: %v, want ErrQueueFull", err)
	}
	if cs := categoryStats(u, point.Metric); cs.Dropped["queue_full"] != 3 || cs.PointsIn != 5 || cs.QueuePoints != 5 {
		t.Fatalf("stats %+v", cs)
	}
	if !strings.Contains(u.Stats().LastError, "3 of 8 points dropped") {
		t.Fatalf("last error %q", u.Stats().LastError)
	}
	// Back to "never started" so Stop does not wait for batchers that do not exist.
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
		"apmkit_io_queue_capacity_points{category=metric}":                                 100_000,
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
