package faulttest

import (
	"bytes"
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
)

// sinkMode is how the sink answers.
type sinkMode int32

const (
	sinkOK    sinkMode = iota // take the batch, 200
	sinkBusy                  // 503 without taking the batch
	sinkClose                 // close the connection before reading the request body
	sinkSlow                  // wait sink.delay, then take the batch, 200
)

func (m sinkMode) String() string {
	return [...]string{"ok", "503", "close", "slow"}[m]
}

// sink is a local DataWay on 127.0.0.1: apmkit's dataway output posts gzip line protocol
// to /v1/write/{category}. It keeps every entry span's (trace_id, span_id) with how often
// it arrived, and counts lines per category. It only takes a batch it answers 200 for, so
// a batch apmkit sends again after a failure must not be counted twice: a duplicate at
// the sink is apmkit's.
type sink struct {
	t    *testing.T
	url  string
	srv  *http.Server
	mode atomic.Int32
	// delay is sinkSlow's wait per request.
	delay atomic.Int64

	mu       sync.Mutex
	entries  map[EntryID]int
	dups     int
	lines    map[string]int64 // by category
	requests map[sinkMode]int64
	badLines int
	// The smallest span lines seen, newline included: an entry span and a span event.
	minEntry, minEvent int
}

func startSink(t *testing.T) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sink: %v", err)
	}
	s := &sink{t: t, url: "http://" + ln.Addr().String(), entries: map[EntryID]int{}, lines: map[string]int64{}, requests: map[sinkMode]int64{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/write/{category}", s.write)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// set switches the answer of the next requests (requests in progress keep theirs).
func (s *sink) set(m sinkMode) { s.mode.Store(int32(m)) }

func (s *sink) setSlow(d time.Duration) {
	s.delay.Store(int64(d))
	s.set(sinkSlow)
}

func (s *sink) write(w http.ResponseWriter, r *http.Request) {
	mode := sinkMode(s.mode.Load())
	s.mu.Lock()
	s.requests[mode]++
	s.mu.Unlock()
	switch mode {
	case sinkBusy:
		http.Error(w, "sink: down for the test", http.StatusServiceUnavailable)
		return
	case sinkClose:
		// What a crashed or unreachable DataWay looks like to the client: the connection
		// ends with no answer.
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // also closes the connection without an answer
	}
	// The body is read before the slow wait: only then does net/http watch the
	// connection and cancel the request's context when the client goes away.
	body, err := readBody(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if mode == sinkSlow {
		select {
		case <-time.After(time.Duration(s.delay.Load())):
		case <-r.Context().Done():
			return // the client gave up (or died): it sends the batch again
		}
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

// take records one request's lines and entry spans. Only lines tagged span_type=entry are
// parsed: the events outnumber them several to one.
func (s *sink) take(category string, body []byte) {
	var ids []EntryID
	bad, lines := 0, int64(0)
	minEntry, minEvent := 0, 0
	smaller := func(cur, n int) int {
		if cur == 0 || n < cur {
			return n
		}
		return cur
	}
	for line := range bytes.Lines(body) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		lines++
		if !bytes.Contains(line, []byte("span_type=entry")) {
			if category == "tracing" {
				minEvent = smaller(minEvent, len(line))
			}
			continue
		}
		minEntry = smaller(minEntry, len(line))
		pts, err := point.Parse(line)
		if err != nil || len(pts) != 1 {
			bad++
			continue
		}
		p := pts[0]
		if v, _ := p.Tag("span_type"); v != "entry" {
			continue
		}
		trace, ok1 := p.Field("trace_id")
		span, ok2 := p.Field("span_id")
		if !ok1 || !ok2 {
			bad++
			continue
		}
		ids = append(ids, EntryID{Trace: trace.StringValue(), Span: span.StringValue()})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines[category] += lines
	s.badLines += bad
	if minEntry > 0 {
		s.minEntry = smaller(s.minEntry, minEntry)
	}
	if minEvent > 0 {
		s.minEvent = smaller(s.minEvent, minEvent)
	}
	for _, id := range ids {
		if s.entries[id] > 0 {
			s.dups++
		}
		s.entries[id]++
	}
}

// sinkView is a copy of what arrived.
type sinkView struct {
	entries  map[EntryID]int
	dups     int
	lines    map[string]int64
	requests map[sinkMode]int64
	badLines int
}

func (s *sink) view() sinkView {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := sinkView{entries: make(map[EntryID]int, len(s.entries)), dups: s.dups, lines: map[string]int64{}, requests: map[sinkMode]int64{}, badLines: s.badLines}
	for k, n := range s.entries {
		v.entries[k] = n
	}
	for k, n := range s.lines {
		v.lines[k] = n
	}
	for k, n := range s.requests {
		v.requests[k] = n
	}
	return v
}

// has reports how many of ids arrived.
func (s *sink) has(ids map[EntryID]int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id := range ids {
		if s.entries[id] > 0 {
			n++
		}
	}
	return n
}

func (s *sink) entryCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// minSpanBytes is the smallest line protocol a span of events events can take: its entry
// line and its events' lines, each at least as small as the smallest seen.
func (s *sink) minSpanBytes(events int) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(s.minEntry + events*s.minEvent)
}
