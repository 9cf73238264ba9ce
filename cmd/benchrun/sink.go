package main

import (
	"bytes"
	"compress/gzip"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/apmkit/apmkit/point"
)

// sink is a local DataWay: it takes apmkit's gzip line-protocol POSTs on
// /v1/write/{category}, counts the points, and checks the entry spans (one per Pinpoint
// span): none may arrive twice, and their trace ids are counted.
type sink struct {
	srv *http.Server
	url string

	mu          sync.Mutex
	requests    int64
	points      map[string]int64 // by category
	entries     int64
	entryErrors int64 // entry spans with status=error
	dups        int64
	badLines    int64 // entry lines point.Parse refused, or without trace_id/span_id
	seen        map[uint64]struct{}
	traces      map[uint64]struct{}
	lastEntry   time.Time
	marker      []byte // entryMarker
}

// entryMarker finds entry span lines without parsing every line: events outnumber entry
// spans 12 to 1, and parsing them all would take CPU from the collector being measured.
const entryMarker = "span_type=entry"

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{points: map[string]int64{}, seen: map[uint64]struct{}{}, traces: map[uint64]struct{}{}, marker: []byte(entryMarker)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/write/{category}", s.write)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.url = "http://" + ln.Addr().String()
	go s.srv.Serve(ln) //nolint:errcheck // ends with Close
	return s, nil
}

func (s *sink) close() { s.srv.Close() }

// reset forgets everything, between runs.
func (s *sink) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests, s.entries, s.entryErrors, s.dups, s.badLines = 0, 0, 0, 0, 0
	s.points, s.seen, s.traces = map[string]int64{}, map[uint64]struct{}{}, map[uint64]struct{}{}
	s.lastEntry = time.Time{}
}

func (s *sink) write(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.take(r.PathValue("category"), body)
	w.WriteHeader(http.StatusOK)
}

func readBody(r *http.Request) ([]byte, error) {
	var rd io.Reader = r.Body
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		rd = zr
	}
	return io.ReadAll(rd)
}

// take counts one request's lines and checks its entry spans.
func (s *sink) take(category string, body []byte) {
	lines := int64(bytes.Count(body, []byte("\n")))
	if len(body) > 0 && body[len(body)-1] != '\n' {
		lines++
	}
	var entries []*point.Point
	bad := int64(0)
	for line := range bytes.Lines(body) {
		if !bytes.Contains(line, s.marker) {
			continue
		}
		pts, err := point.Parse(line)
		if err != nil || len(pts) != 1 {
			bad++
			continue
		}
		if v, _ := pts[0].Tag("span_type"); v == "entry" {
			entries = append(entries, pts[0])
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.points[category] += lines
	s.badLines += bad
	for _, p := range entries {
		s.entry(p)
	}
}

// entry records one entry span; the caller holds mu. Ids are kept as 64-bit hashes so a
// long run's millions of spans fit in little memory (a collision is ~1e-7 likely at 2e6).
func (s *sink) entry(p *point.Point) {
	trace, ok1 := p.Field("trace_id")
	span, ok2 := p.Field("span_id")
	if !ok1 || !ok2 {
		s.badLines++
		return
	}
	s.entries++
	s.lastEntry = time.Now()
	if st, _ := p.Tag("status"); st == "error" {
		s.entryErrors++
	}
	key := hash64(trace.StringValue(), span.StringValue())
	if _, dup := s.seen[key]; dup {
		s.dups++
	}
	s.seen[key] = struct{}{}
	s.traces[hash64(trace.StringValue())] = struct{}{}
}

func hash64(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// sinkCounts is a snapshot of what arrived.
type sinkCounts struct {
	Requests    int64            `json:"requests"`
	Points      map[string]int64 `json:"points"`
	Entries     int64            `json:"entry_spans"`
	EntryErrors int64            `json:"entry_error_spans"`
	Dups        int64            `json:"duplicate_entry_spans"`
	Traces      int64            `json:"traces"`
	BadLines    int64            `json:"bad_entry_lines"`
	LastEntry   time.Time        `json:"-"`
}

func (s *sink) counts() sinkCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	pts := map[string]int64{}
	for k, v := range s.points {
		pts[k] = v
	}
	return sinkCounts{
		Requests: s.requests, Points: pts, Entries: s.entries, EntryErrors: s.entryErrors,
		Dups: s.dups, Traces: int64(len(s.traces)), BadLines: s.badLines, LastEntry: s.lastEntry,
	}
}
