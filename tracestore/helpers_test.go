package tracestore

import (
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/apmkit/apmkit/point"
)

// TestMain fails the package when a test leaves a goroutine behind (the store's loop,
// badger's).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clock is a settable time for retention tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// openStore opens a store in a temp dir, closed when the test ends. The background loop
// is kept out of the way (an hour): tests call enforce.
func openStore(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.CheckEvery == 0 {
		opts.CheckEvery = time.Hour
	}
	s, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// row is one span row as the Pinpoint input writes it.
type row struct {
	trace            string
	id, parent       int64
	kind             string // entry, exit, local
	app, agent       string
	startMs, durMs   int64
	failed           bool
	resource         string
	endpoint, source string // exit spans: the destination and its source_type
	tags             map[string]string
	fields           map[string]string
}

func (r row) point() *point.Point {
	p := point.New("pinpoint", r.startMs*1e6)
	status := "ok"
	if r.failed {
		status = "error"
	}
	p.SetTag("service", r.app)
	p.SetTag("agent_id", r.agent)
	p.SetTag("span_type", r.kind)
	p.SetTag("status", status)
	p.SetTag("operation", "op-"+r.resource)
	p.SetTag("endpoint", r.endpoint)
	p.SetTag("source_type", r.source)
	for k, v := range r.tags {
		p.SetTag(k, v)
	}
	p.AddField(point.String("trace_id", r.trace))
	p.AddField(point.String("span_id", strconv.FormatInt(r.id, 10)))
	p.AddField(point.String("parent_id", strconv.FormatInt(r.parent, 10)))
	p.AddField(point.String("resource", r.resource))
	p.AddField(point.Int("start", r.startMs*1000))
	p.AddField(point.Int("duration", r.durMs*1000))
	p.AddField(point.String("message", `{"big":"json the store does not keep"}`))
	for _, k := range slices.Sorted(maps.Keys(r.fields)) { // the same row, the same bytes
		if v := r.fields[k]; v != "" { // the input writes no empty field
			p.AddField(point.String(k, v))
		}
	}
	return p
}

// lines encodes points as line protocol.
func lines(t testing.TB, pts ...*point.Point) []byte {
	t.Helper()
	enc := point.NewEncoder()
	for _, p := range pts {
		if err := enc.Encode(p); err != nil {
			t.Fatal(err)
		}
	}
	return append([]byte(nil), enc.Bytes()...)
}

func rows(rs ...row) []*point.Point {
	pts := make([]*point.Point, len(rs))
	for i, r := range rs {
		pts[i] = r.point()
	}
	return pts
}

func write(t testing.TB, s *Store, pts ...*point.Point) {
	t.Helper()
	if err := s.Write(lines(t, pts...)); err != nil {
		t.Fatal(err)
	}
}

// call is a frontend -> backend -> database transaction: the frontend's root span, its
// HTTP exit to backend:8080, the backend's entry (caller frontend, called on
// backend:8080) and its SQL exit to the database "shop".
func call(trace string, n int64, startMs, durMs int64, failed bool) []row {
	base := n * 10
	return []row{
		{trace: trace, id: base + 1, kind: "entry", app: "frontend", agent: "fe-1", startMs: startMs, durMs: durMs, failed: failed,
			resource: "/orders/" + strconv.FormatInt(n, 10), tags: map[string]string{"http_method": "GET", "http_status_code": status(failed)},
			fields: map[string]string{"error_type": errType(failed), "error_message": errMsg(failed, "backend said 500")}},
		{trace: trace, id: base + 2, parent: base + 1, kind: "exit", app: "frontend", agent: "fe-1", startMs: startMs + 1, durMs: durMs - 2,
			resource: "http.Client", endpoint: "backend:8080", source: "http"},
		{trace: trace, id: base + 3, parent: base + 2, kind: "entry", app: "backend", agent: "be-1", startMs: startMs + 2, durMs: durMs - 4, failed: failed,
			resource: "/api", fields: map[string]string{"parent_application": "frontend", "acceptor_host": "backend:8080"}},
		{trace: trace, id: base + 4, parent: base + 3, kind: "exit", app: "backend", agent: "be-1", startMs: startMs + 3, durMs: durMs - 6, failed: failed,
			resource: "SELECT 1", endpoint: "shop", source: "db",
			fields: map[string]string{"db_sql_bind_values": "42", "error_type": errType(failed), "error_message": errMsg(failed, "no such table: orders")}},
	}
}

func status(failed bool) string {
	if failed {
		return "500"
	}
	return "200"
}

func errType(failed bool) string {
	if failed {
		return "SQLException"
	}
	return ""
}

func errMsg(failed bool, msg string) string {
	if failed {
		return msg
	}
	return ""
}

// agentPoint is a frontend agent's info: a start, or an end when end > 0.
func agentPoint(id string, start, end int64) *point.Point {
	p := point.New("pinpoint_agent", start*1e6)
	for k, v := range map[string]string{"agent_id": id, "service": "frontend", "hostname": "vm", "ip": "192.0.2.2", "agentVersion": "1.5.0"} {
		p.SetTag(k, v)
	}
	p.AddField(point.Int("start_time", start))
	p.AddField(point.Int("pid", 42))
	if end > 0 {
		p.AddField(point.Int("end_timestamp", end))
	}
	return p
}

// jvmPoint is a stat sample of fe-1.
func jvmPoint(ms, heap int64) *point.Point {
	p := point.New("pinpoint_jvm", ms*1e6)
	p.SetTag("agent_id", "fe-1")
	p.SetTag("service", "frontend")
	p.AddField(point.Int("JvmMemoryHeapUsed", heap))
	p.AddField(point.Float("JvmCpuLoad", 0.25))
	return p
}
