package pipeline

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/span"
)

// spanOf builds a Pinpoint span as the input rebuilds it: an entry span (when resource is
// set; a root when parent is 0) and events, the last one failed when eventErr.
func spanOf(traceID, service, resource string, parent int64, entryErr, eventErr bool, durationMs int64, events int) *span.Span {
	s := span.New(events+1, 64)
	s.TraceID, s.Service = traceID, service
	if resource != "" {
		s.Events = append(s.Events, span.Event{Kind: span.Entry, Resource: s.Add(resource), Error: entryErr, ParentID: parent,
			SpanID: 1, Start: 1_000_000 + parent, Duration: durationMs * 1000, Message: s.Add(`{"spanId":"1"}`)})
	}
	for i := range events {
		s.Events = append(s.Events, span.Event{Kind: span.Local, Resource: s.Add("handler"), SpanID: int64(i + 2),
			Duration: 1000, Error: eventErr && i == events-1, Message: s.Add(`{"spanId":"2"}`)})
	}
	return s
}

// root is a trace's root span: an entry and two events.
func root(traceID, service, resource, status string, durationMs int64) *span.Span {
	return spanOf(traceID, service, resource, 0, status == "error", false, durationMs, 2)
}

// callee is a span of the trace's callee (its entry has a parent): an entry and two events.
func callee(traceID, service, resource, status string, durationMs int64) *span.Span {
	return spanOf(traceID, service, resource, 77, status == "error", false, durationMs, 2)
}

// chunk is a chunk of a Pinpoint span that is emitted on its own: one event, failed when
// status is "error".
func chunk(traceID, service, status string) *span.Span {
	return spanOf(traceID, service, "", 0, false, status == "error", 0, 1)
}

func rate(r float64) *float64 { return &r }

func traceID(i int) string { return fmt.Sprintf("frontend-01^1795417119878^%d", i) }

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fakeCPU struct {
	mu      sync.Mutex
	percent float64
}

func (c *fakeCPU) Percent() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.percent
}

func (c *fakeCPU) set(p float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.percent = p
}

// recorder is an Emit that keeps what it is handed.
type recorder struct {
	mu     sync.Mutex
	spans  []*span.Span
	points map[string]int // by trace id
	err    error          // returned when set
}

func newRecorder() *recorder { return &recorder{points: map[string]int{}} }

func (r *recorder) emit(_ context.Context, s *span.Span) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.spans = append(r.spans, s)
	r.points[s.TraceID] += len(s.Events)
	return nil
}

// of returns the points emitted for a trace.
func (r *recorder) of(traceID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.points[traceID]
}

func (r *recorder) traces() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.points))
	for k, v := range r.points {
		out[k] = v
	}
	return out
}

func (r *recorder) allPoints() []*point.Point {
	r.mu.Lock()
	defer r.mu.Unlock()
	var pts []*point.Point
	for _, s := range r.spans {
		pts = append(pts, s.Points()...)
	}
	return pts
}

// harness is a pipeline on a fake clock whose kept spans go to a recorder.
type harness struct {
	t     *testing.T
	p     *Pipeline
	rec   *recorder
	clock *fakeClock
	cpu   *fakeCPU
	reg   *prometheus.Registry
	wait  time.Duration
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, rec: newRecorder(), clock: newClock(), cpu: &fakeCPU{}, reg: prometheus.NewRegistry()}
	p, err := New(cfg, Options{Now: h.clock.Now, CPU: h.cpu, Metrics: h.reg, Emit: h.rec.emit})
	if err != nil {
		t.Fatal(err)
	}
	h.p = p
	h.wait = cfg.DecisionWait
	if h.wait == 0 {
		h.wait = DefaultDecisionWait
	}
	t.Cleanup(func() {
		if err := p.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return h
}

// feed processes spans; an error fails the test.
func (h *harness) feed(spans ...*span.Span) {
	h.t.Helper()
	for _, s := range spans {
		if err := h.p.ProcessSpan(context.Background(), s); err != nil {
			h.t.Fatalf("ProcessSpan: %v", err)
		}
	}
}

// decide lets the decision wait run out and decides every waiting trace.
func (h *harness) decide() {
	h.clock.Add(h.wait)
	if h.p.buf != nil {
		h.p.decideDue(context.Background())
	}
}

// trace is one test trace: its spans in the order they arrive and its points.
type trace struct {
	id    string
	spans []*span.Span
}

func (tr trace) points() int {
	n := 0
	for _, s := range tr.spans {
		n += len(s.Events)
	}
	return n
}

// checkWhole fails unless every trace was emitted whole or not at all, and returns how many
// were kept.
func checkWhole(t *testing.T, rec *recorder, traces []trace) int {
	t.Helper()
	kept := 0
	for _, tr := range traces {
		switch got := rec.of(tr.id); got {
		case 0:
		case tr.points():
			kept++
		default:
			t.Errorf("trace %s kept partially: %d of %d points", tr.id, got, tr.points())
		}
	}
	return kept
}
