package io

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	stdio "io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor polls cond until it holds; the deadline only bounds a broken test, it is not a
// timing assertion.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testWriter sends log lines to t.Log so they show only for failing tests.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// logBuffer keeps an uploader's log lines for the test to check (and shows them with t.Log).
type logBuffer struct {
	t testing.TB

	mu    sync.Mutex
	lines []string
}

func newLogBuffer(t testing.TB) (*logBuffer, *slog.Logger) {
	l := &logBuffer{t: t}
	return l, slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *logBuffer) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	l.t.Log(line)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	return len(p), nil
}

// find returns the lines of a level ("ERROR", "WARN"...; "" for any) holding every text.
func (l *logBuffer) find(level string, texts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		ok := level == "" || strings.Contains(line, "level="+level+" ")
		for _, text := range texts {
			ok = ok && strings.Contains(line, text)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// pointsLogged sums the points= of log lines (drop lines: they add up to the counters).
func pointsLogged(t testing.TB, lines []string) int64 {
	t.Helper()
	var n int64
	for _, line := range lines {
		m := pointsAttr.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("no points= in %q", line)
		}
		v, _ := strconv.ParseInt(m[1], 10, 64)
		n += v
	}
	return n
}

var pointsAttr = regexp.MustCompile(` points=(\d+)`)

// testConfig has small intervals so tests run fast; outputs get fastRetries unless set.
// It has only the outputs given: no implicit local output.
func testConfig(outs ...OutputConfig) Config {
	c := DefaultConfig()
	c.Explorer = false
	c.FlushInterval = 5 * time.Millisecond
	c.StopTimeout = 10 * time.Second
	c.Outputs = outs
	return c
}

// fastRetries also sends one request at a time: delivery in feed order, which most tests
// check, is documented for max_in_flight = 1 (TestConcurrentFeedDeliversEachPointOnce
// covers more).
func fastRetries(o OutputConfig) OutputConfig {
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 1
	}
	o.RetryInitial = time.Millisecond
	o.RetryMax = 5 * time.Millisecond
	o.RetryMaxElapsed = 100 * time.Millisecond
	o.Timeout = 10 * time.Second
	return o
}

// startUploader creates and starts an uploader; t.Cleanup stops it if the test did not.
func startUploader(t testing.TB, cfg Config, dataDir string) *Uploader {
	t.Helper()
	return startUploaderWith(t, cfg, dataDir, testLogger(t), prometheus.NewRegistry())
}

// startUploaderWith is startUploader with the test's logger and registry.
func startUploaderWith(t testing.TB, cfg Config, dataDir string, log *slog.Logger, reg prometheus.Registerer) *Uploader {
	t.Helper()
	u, err := New(cfg, dataDir, log, reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := u.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = u.Stop(context.Background()) })
	return u
}

func stopUploader(t testing.TB, u *Uploader) {
	t.Helper()
	if err := u.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func feed(t testing.TB, u *Uploader, cat point.Category, pts []*point.Point) {
	t.Helper()
	if err := u.Feed(context.Background(), cat, pts); err != nil {
		t.Fatalf("Feed: %v", err)
	}
}

// seqPoints makes n valid points with an int field seq = from..from+n-1, so tests can
// check order and exactly-once delivery.
func seqPoints(name string, from, n int) []*point.Point {
	pts := make([]*point.Point, 0, n)
	for i := from; i < from+n; i++ {
		p := point.New(name, 1_700_000_000_000_000_000+int64(i))
		p.SetTag("service", "checkout")
		p.AddField(point.Int("seq", int64(i)))
		p.AddField(point.Float("duration", float64(i)/4))
		pts = append(pts, p)
	}
	return pts
}

// seqOf returns the seq fields of points, in order.
func seqOf(t testing.TB, pts []*point.Point) []int64 {
	t.Helper()
	out := make([]int64, 0, len(pts))
	for _, p := range pts {
		f, ok := p.Field("seq")
		if !ok {
			t.Fatalf("point without seq: %+v", p)
		}
		out = append(out, f.IntValue())
	}
	return out
}

// wantSeq fails unless got is exactly from..to-1 in order.
func wantSeq(t testing.TB, got []int64, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("got %d points, want %d (%v...)", len(got), to-from, head(got))
	}
	for i, s := range got {
		if s != int64(from+i) {
			t.Fatalf("point %d has seq %d, want %d (order or exactly-once broken)", i, s, from+i)
		}
	}
}

func head(s []int64) []int64 { return s[:min(len(s), 20)] }

// wantOnce fails unless got holds from..to-1 exactly once each, in any order: once anything
// was spilled, newer memory batches may go before older spilled ones.
func wantOnce(t testing.TB, got []int64, from, to int) {
	t.Helper()
	sorted := slices.Clone(got)
	slices.Sort(sorted)
	wantSeq(t, sorted, from, to)
}

// wantOrdered fails unless the seqs of got that keep selects come in increasing order.
func wantOrdered(t testing.TB, got []int64, keep func(int64) bool) {
	t.Helper()
	last := int64(-1)
	for _, s := range got {
		if !keep(s) {
			continue
		}
		if s <= last {
			t.Fatalf("seq %d after %d: order broken (%v...)", s, last, head(got))
		}
		last = s
	}
}

// diffPoints compares exact values: name, tags, field kinds and values, time.
func diffPoints(got, want []*point.Point) string {
	if len(got) != len(want) {
		return fmt.Sprintf("got %d points, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Time != w.Time {
			return fmt.Sprintf("point %d: got %s@%d, want %s@%d", i, g.Name, g.Time, w.Name, w.Time)
		}
		if fmt.Sprint(g.Tags) != fmt.Sprint(w.Tags) && !(len(g.Tags) == 0 && len(w.Tags) == 0) {
			return fmt.Sprintf("point %d tags: got %q, want %q", i, g.Tags, w.Tags)
		}
		if len(g.Fields) != len(w.Fields) {
			return fmt.Sprintf("point %d: got %d fields, want %d", i, len(g.Fields), len(w.Fields))
		}
		for _, wf := range w.Fields {
			gf, ok := g.Field(wf.Key)
			if !ok || gf.Kind() != wf.Kind() || gf.Value() != wf.Value() {
				return fmt.Sprintf("point %d field %s: got %v (kind %d), want %v (kind %d)", i, wf.Key, gf.Value(), gf.Kind(), wf.Value(), wf.Kind())
			}
		}
	}
	return ""
}

// capturedRequest is what a sink received, body decompressed and parsed.
type capturedRequest struct {
	Method string
	Path   string
	Query  url.Values
	Raw    string // RawQuery
	Header http.Header
	Body   []byte
	Points []*point.Point
	Status int
}

// sink is an httptest server standing in for DataWay or InfluxDB. respond decides the answer
// to the n-th request (0-based); nil answers 204. Only 2xx requests count as delivered.
type sink struct {
	t       testing.TB
	srv     *httptest.Server
	respond func(n int, w http.ResponseWriter, r *http.Request) int
	stop    chan struct{} // closed on cleanup: unblocks hanging handlers

	mu   sync.Mutex
	reqs []capturedRequest
}

func newSink(t testing.TB, respond func(n int, w http.ResponseWriter, r *http.Request) int) *sink {
	s := &sink{t: t, respond: respond, stop: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(func() {
		close(s.stop)
		s.srv.Close()
	})
	return s
}

func (s *sink) handle(w http.ResponseWriter, r *http.Request) {
	body, err := stdio.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	raw := body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			s.t.Errorf("sink: bad gzip: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if raw, err = stdio.ReadAll(zr); err != nil {
			s.t.Errorf("sink: bad gzip: %v", err)
		}
	}
	var pts []*point.Point
	if !strings.HasSuffix(r.URL.Path, "/query") { // InfluxDB 1.x's CREATE DATABASE is a form
		if pts, err = point.Parse(raw); err != nil {
			s.t.Errorf("sink: body is not line protocol: %v\n%s", err, raw)
		}
	}
	s.mu.Lock()
	n := len(s.reqs)
	s.reqs = append(s.reqs, capturedRequest{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Raw: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: raw, Points: pts,
	})
	s.mu.Unlock()
	status := http.StatusNoContent
	if s.respond != nil {
		status = s.respond(n, w, r)
	}
	s.mu.Lock()
	s.reqs[n].Status = status
	s.mu.Unlock()
	if status != 0 {
		w.WriteHeader(status)
	}
}

// requests returns a copy of everything received.
func (s *sink) requests() []capturedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]capturedRequest(nil), s.reqs...)
}

// delivered returns the points of 2xx requests, in arrival order, optionally for one path.
func (s *sink) delivered(path string) []*point.Point {
	var pts []*point.Point
	for _, r := range s.requests() {
		if r.Status >= 200 && r.Status < 300 && (path == "" || r.Path == path) {
			pts = append(pts, r.Points...)
		}
	}
	return pts
}

func (s *sink) deliveredCount() int { return len(s.delivered("")) }

// datawayOutput points a dataway output at a sink.
func datawayOutput(s *sink, token string) OutputConfig {
	return fastRetries(OutputConfig{Type: TypeDataway, URL: s.srv.URL + "?token=" + token})
}

// spilledPoints reads an output's spill folder back, oldest first.
func spilledPoints(t testing.TB, dataDir, output string) []*point.Point {
	t.Helper()
	dir := filepath.Join(dataDir, "spill", output)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read spill: %v", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), spillSuffix) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var pts []*point.Point
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		data = undelivered(t, name, data)
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("spill file %s: %v", name, err)
		}
		raw, err := stdio.ReadAll(zr)
		if err != nil {
			t.Fatalf("spill file %s: %v", name, err)
		}
		p, err := point.Parse(raw)
		if err != nil {
			t.Fatalf("spill file %s: %v", name, err)
		}
		pts = append(pts, p...)
	}
	return pts
}

// undelivered cuts the batches a spill file's name says were delivered (a segment a stop
// cut); zcat would show them too.
func undelivered(t testing.TB, name string, data []byte) []byte {
	t.Helper()
	n, ok := parseSpillName(name)
	if !ok {
		t.Fatalf("spill file %s: unexpected name", name)
	}
	if n.delivered == 0 {
		return data
	}
	recs, err := parseMembers(data, n.cat)
	if err != nil {
		t.Fatalf("spill file %s: %v", name, err)
	}
	return data[recs[n.delivered].off:]
}

func outputStats(u *Uploader, name string) OutputStats {
	for _, o := range u.Stats().Outputs {
		if o.Name == name {
			return o
		}
	}
	return OutputStats{}
}

func categoryStats(u *Uploader, cat point.Category) CategoryStats {
	for _, c := range u.Stats().Categories {
		if c.Category == cat.String() {
			return c
		}
	}
	return CategoryStats{}
}
