// Package inputstest is a real inputs.Host for input tests: a badger cache in a temp dir,
// a Prometheus registry, and a Feed that records every point.
package inputstest

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/span"
)

// Host records what an input feeds.
type Host struct {
	DB      *cache.DB
	Dir     string
	Reg     *prometheus.Registry
	Log     *slog.Logger
	FeedErr error // returned by Feed when set (the points are not recorded)

	mu     sync.Mutex
	points map[point.Category][]*point.Point
}

// New opens a badger cache under dir (t.TempDir() when dir is ""), closed at cleanup.
// Reusing dir simulates an apmkit restart.
func New(t testing.TB, dir string) *Host {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	db, err := cache.OpenBadger(dir+"/cache", cache.DefaultConfig(), log)
	if err != nil {
		t.Fatal(err)
	}
	h := &Host{DB: db, Dir: dir, Reg: prometheus.NewRegistry(), Log: log, points: map[point.Category][]*point.Point{}}
	t.Cleanup(func() { h.Close() })
	return h
}

// Close closes the cache (idempotent).
func (h *Host) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.DB != nil {
		h.DB.Close()
		h.DB = nil
	}
}

// Feed records the points.
func (h *Host) Feed(_ context.Context, cat point.Category, pts []*point.Point) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.FeedErr != nil {
		return h.FeedErr
	}
	h.points[cat] = append(h.points[cat], pts...)
	return nil
}

// FeedSpan records the span's events as points of category tracing.
func (h *Host) FeedSpan(_ context.Context, s *span.Span) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.FeedErr != nil {
		return h.FeedErr
	}
	h.points[point.Tracing] = append(h.points[point.Tracing], s.Points()...)
	return nil
}

// Points returns a copy of what was fed in a category.
func (h *Host) Points(cat point.Category) []*point.Point {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*point.Point(nil), h.points[cat]...)
}

// Store returns a namespace of the cache (one instance per Host: no alias scoping).
func (h *Host) Store(ns string) (cache.Store, error) { return h.DB.Namespace(ns), nil }

// Logger returns the test logger.
func (h *Host) Logger() *slog.Logger { return h.Log }

// Metrics returns the registry.
func (h *Host) Metrics() prometheus.Registerer { return h.Reg }

// DataDir is the temp dir.
func (h *Host) DataDir() string { return h.Dir }

// Hostname is fixed so outputs are stable.
func (h *Host) Hostname() string { return "apmkit-test" }

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
