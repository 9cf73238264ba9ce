package tracestore

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
)

// base is the first transaction's start: the data's own time, unrelated to the store's
// clock (replayed data is as old as it is).
const base = int64(1_800_000_000_000)

// tenCalls writes ten frontend -> backend -> database transactions, one a second, the
// i-th taking (i+1)*100 ms; the 4th and 8th (i = 3, 7) fail.
func tenCalls(t *testing.T, s *Store) {
	t.Helper()
	var rs []row
	for i := range int64(10) {
		rs = append(rs, call(traceID(i), i, base+i*1000, (i+1)*100, i == 3 || i == 7)...)
	}
	write(t, s, rows(rs...)...)
}

func traceID(i int64) string { return fmt.Sprintf("fe-1^1^%d", i) }

func ids(txns []Transaction) []string {
	out := make([]string, len(txns))
	for i, t := range txns {
		out[i] = t.TraceID
	}
	return out
}

func TestTransactionsFilters(t *testing.T) {
	s := openStore(t, Options{})
	tenCalls(t, s)
	tenCalls(t, s) // written again (a retry): overwrites, adds nothing
	yes, no := true, false
	all := Query{FromUs: base * 1000, ToUs: (base + 10_000) * 1000, MaxUs: -1, Limit: 100}
	with := func(f func(q *Query)) Query { q := all; f(&q); return q }
	cases := []struct {
		name  string
		q     Query
		total int
	}{
		{"all", all, 10},
		{"time range is inclusive", with(func(q *Query) { q.FromUs, q.ToUs = (base+2000)*1000, (base+4000)*1000 }), 3},
		{"app", with(func(q *Query) { q.App = "frontend" }), 10},
		{"callee app has no transactions", with(func(q *Query) { q.App = "backend" }), 0},
		{"agent", with(func(q *Query) { q.Agent = "fe-1" }), 10},
		{"url prefix", with(func(q *Query) { q.URLPrefix = "/orders/1" }), 1},
		{"url exact", with(func(q *Query) { q.URLExact = "/orders/5" }), 1},
		{"method any case", with(func(q *Query) { q.Method = "get" }), 10},
		{"method", with(func(q *Query) { q.Method = "POST" }), 0},
		{"status", with(func(q *Query) { q.Status = 500 }), 2},
		{"status class", with(func(q *Query) { q.StatusClass = 2 }), 8},
		{"min and max", with(func(q *Query) { q.MinUs, q.MaxUs = 450_000, 750_000 }), 3},
		{"failed", with(func(q *Query) { q.Error = &yes }), 2},
		{"not failed", with(func(q *Query) { q.Error = &no }), 8},
		{"exception of the root", with(func(q *Query) { q.Exception = "BACKEND SAID" }), 2},
		{"exception of a callee", with(func(q *Query) { q.Exception = "no such table" }), 2},
		{"exception nowhere", with(func(q *Query) { q.Exception = "timeout" }), 0},
		{"trace id", with(func(q *Query) { q.TraceID = traceID(4) }), 1},
		{"attr", with(func(q *Query) { q.Attrs = []KV{{"http_status_code", "500"}} }), 2},
		{"attrs", with(func(q *Query) { q.Attrs = []KV{{"service", "frontend"}, {"http_method", "GET"}} }), 10},
		{"attr absent", with(func(q *Query) { q.Attrs = []KV{{"env", "prod"}} }), 0},
		{"failed, by app index", with(func(q *Query) { q.App, q.Error = "frontend", &yes }), 2},
	}
	for _, c := range cases {
		got, total, err := s.Transactions(c.q)
		if err != nil || total != c.total || len(got) != c.total {
			t.Errorf("%s: %d rows, total %d, err %v; want %d", c.name, len(got), total, err, c.total)
		}
	}
}

func TestTransactionsSortLimitAndRow(t *testing.T) {
	s := openStore(t, Options{})
	tenCalls(t, s)
	q := Query{FromUs: base * 1000, ToUs: (base + 10_000) * 1000, MaxUs: -1, Limit: 3}
	got, total, err := s.Transactions(q)
	if err != nil || total != 10 || !slices.Equal(ids(got), []string{traceID(9), traceID(8), traceID(7)}) {
		t.Fatalf("newest first: %v total %d err %v", ids(got), total, err)
	}
	want := Transaction{TraceID: traceID(7), StartUs: (base + 7000) * 1000, DurationUs: 800_000, Error: true,
		App: "frontend", AgentID: "fe-1", URL: "/orders/7", Method: "GET", Status: 500,
		Exception: "SQLException: backend said 500"}
	got[2].Attrs = nil
	if !reflect.DeepEqual(got[2], want) {
		t.Errorf("row\n got %+v\nwant %+v", got[2], want)
	}
	q.ByDuration, q.Limit = true, 2
	if got, total, _ := s.Transactions(q); total != 10 || !slices.Equal(ids(got), []string{traceID(9), traceID(8)}) {
		t.Errorf("slowest first: %v total %d", ids(got), total)
	}
	q.Limit = 0
	if got, total, _ := s.Transactions(q); total != 10 || len(got) != 0 {
		t.Errorf("limit 0 counts only: %d rows, total %d", len(got), total)
	}
}

func TestTraceAcrossPartitions(t *testing.T) {
	clk := &clock{now: time.Unix(1_900_000_000, 0)}
	s := openStore(t, Options{Now: clk.Now, Retention: 8 * time.Hour})
	tenCalls(t, s)
	clk.advance(2 * time.Hour) // the next write opens a second partition
	tenCalls(t, s)
	if n := len(s.partitionIDs()); n != 2 {
		t.Fatalf("%d partitions, want 2", n)
	}
	spans, truncated, err := s.Trace(traceID(3), 100)
	if err != nil || truncated || len(spans) != 4 {
		t.Fatalf("trace: %d spans (truncated %v, err %v), want 4 once each", len(spans), truncated, err)
	}
	slices.SortFunc(spans, func(a, b Span) int { return int(a.SpanID - b.SpanID) })
	db := spans[3]
	if db.SpanID != 34 || db.ParentID != 33 || db.Kind != KindExit || !db.Error || db.App != "backend" ||
		db.Resource != "SELECT 1" || db.Endpoint != "shop" || db.Attr("db_sql_bind_values") != "42" ||
		db.ErrorType != "SQLException" || db.ErrorMessage != "no such table: orders" || db.Attr("message") != "" ||
		db.StartUs != (base+3003)*1000 || db.DurationUs != 394_000 {
		t.Errorf("database span: %+v", db)
	}
	if _, total, _ := s.Transactions(Query{ToUs: maxTime, MaxUs: -1}); total != 10 {
		t.Errorf("transactions stored in two partitions: %d, want 10 (each once)", total)
	}
	if spans, truncated, _ := s.Trace(traceID(3), 3); len(spans) != 3 || !truncated {
		t.Errorf("max 3: %d spans, truncated %v", len(spans), truncated)
	}
}

func TestServiceMap(t *testing.T) {
	s := openStore(t, Options{})
	tenCalls(t, s)
	tenCalls(t, s) // the same batch again (a retry, a spill re-delivery): counted once
	var rs []row
	for i, ms := range []int64{3000, 5000, 7000} { // one call in each slower bucket; limits are inclusive
		rs = append(rs, call(traceID(int64(10+i)), int64(10+i), base+int64(10+i)*1000, ms, false)...)
	}
	rs = append(rs, row{trace: traceID(12), id: 999, parent: 123, kind: "exit", app: "backend", agent: "be-1",
		startMs: base + 12_005, durMs: 30, resource: "POST", endpoint: "payments:443", source: "http"})
	write(t, s, rows(rs...)...)
	sm, err := s.ServiceMap(base*1000, (base+60_000)*1000)
	if err != nil {
		t.Fatal(err)
	}
	wantNodes := []Node{{"frontend", "app"}, {"backend", "app"}, {"shop", "database"}, {"payments:443", "remote"}, {"USER", "user"}}
	slices.SortFunc(wantNodes, func(a, b Node) int { return compareNodes(a, b) })
	if !reflect.DeepEqual(sm.Nodes, wantNodes) {
		t.Errorf("nodes %v, want %v", sm.Nodes, wantNodes)
	}
	type counts struct{ calls, errors, maxMs uint64 }
	got := map[string]counts{}
	for _, e := range sm.Edges {
		got[e.From+">"+e.To] = counts{e.Calls, e.Errors, e.MaxUs / 1000}
	}
	want := map[string]counts{
		"USER>frontend":        {13, 2, 7000},
		"frontend>backend":     {13, 2, 6996},
		"backend>shop":         {13, 2, 6994},
		"backend>payments:443": {1, 0, 30},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("edges %v\nwant %v", got, want)
	}
	user := sm.Edges[slices.IndexFunc(sm.Edges, func(e Edge) bool { return e.From == UserNode })]
	if h := user.Histogram; !reflect.DeepEqual(h, map[string]uint64{"1s": 8, "3s": 1, "5s": 1, "Slow": 1, "Error": 2}) {
		t.Errorf("USER histogram %v", h)
	}
	if user.SumUs != (100+200+300+400+500+600+700+800+900+1000+3000+5000+7000)*1000 {
		t.Errorf("USER sum %d", user.SumUs)
	}
	if sm, _ := s.ServiceMap((base+120_000)*1000, (base+180_000)*1000); len(sm.Edges) != 0 {
		t.Errorf("a later minute has edges: %v", sm.Edges)
	}
}

func compareNodes(a, b Node) int {
	if a.Type != b.Type {
		if a.Type < b.Type {
			return -1
		}
		return 1
	}
	if a.Name < b.Name {
		return -1
	}
	if a.Name > b.Name {
		return 1
	}
	return 0
}

// TestRetentionByAge: a partition goes once its newest data was stored longer ago than the
// retention (8 h here, partitions of 1 h), whatever the data's own time (here 25 years
// older than the store's clock) and however long ago the partition was opened.
func TestRetentionByAge(t *testing.T) {
	clk := &clock{now: time.Unix(1_900_000_000, 0)}
	s := openStore(t, Options{Now: clk.Now, Retention: 8 * time.Hour})
	r := row{trace: "old^1^1", id: 1, kind: "entry", app: "a", agent: "a-1", startMs: 978_307_200_000, durMs: 5, resource: "/"}
	write(t, s, r.point())
	s.enforce()
	count := func(trace string) int { spans, _, _ := s.Trace(trace, 10); return len(spans) }
	if count("old^1^1") != 1 {
		t.Fatal("data from 2001 stored now was dropped at once")
	}
	clk.advance(50 * time.Minute)
	r.trace = "later^1^1"
	write(t, s, r.point()) // the same partition, written 50 min after it opened
	clk.advance(70 * time.Minute)
	r.trace = "fresh^1^1"
	write(t, s, r.point())                    // a new partition: the first is 2 h old
	clk.advance(6*time.Hour + 40*time.Minute) // the first partition opened 8 h 40 min ago, last written 7 h 50 min ago
	s.enforce()
	if count("old^1^1") != 1 || count("later^1^1") != 1 || s.counters.droppedAge.Load() != 0 {
		t.Fatalf("a partition written 7 h 50 min ago was dropped: old %d, later %d", count("old^1^1"), count("later^1^1"))
	}
	clk.advance(20 * time.Minute) // last written 8 h 10 min ago; the second partition 6 h 60 min ago
	s.enforce()
	if count("old^1^1") != 0 || count("later^1^1") != 0 || count("fresh^1^1") != 1 || len(s.partitionIDs()) != 1 || s.counters.droppedAge.Load() != 1 {
		t.Errorf("after 8 h 10 min: old %d, later %d, fresh %d spans, %d partitions, %d dropped; want 0, 0, 1, 1, 1",
			count("old^1^1"), count("later^1^1"), count("fresh^1^1"), len(s.partitionIDs()), s.counters.droppedAge.Load())
	}
}

// TestRetentionBySize: over max_mb, the oldest partitions go; the one being written is
// sealed instead, and goes at the next check once another took over.
func TestRetentionBySize(t *testing.T) {
	clk := &clock{now: time.Unix(1_900_000_000, 0)}
	s := openStore(t, Options{Now: clk.Now, Retention: 8 * time.Hour, MaxBytes: 1}) // always over
	r := row{trace: "a^1^1", id: 1, kind: "entry", app: "a", agent: "a-1", startMs: base, durMs: 5, resource: "/"}
	write(t, s, r.point())
	clk.advance(2 * time.Hour)
	r.trace = "b^1^1"
	write(t, s, r.point())
	s.enforce()
	count := func(trace string) int { spans, _, _ := s.Trace(trace, 10); return len(spans) }
	if count("a^1^1") != 0 || count("b^1^1") != 1 || s.counters.droppedSize.Load() != 1 || !s.sealed {
		t.Fatalf("a %d, b %d spans, %d dropped, sealed %v; want 0, 1, 1, true", count("a^1^1"), count("b^1^1"), s.counters.droppedSize.Load(), s.sealed)
	}
	r.trace = "c^1^1"
	write(t, s, r.point()) // no time passed: a new partition all the same
	s.enforce()
	if count("b^1^1") != 0 || count("c^1^1") != 1 || s.counters.droppedSize.Load() != 2 {
		t.Errorf("b %d, c %d spans, %d dropped; want 0, 1, 2", count("b^1^1"), count("c^1^1"), s.counters.droppedSize.Load())
	}
}

func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{CheckEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tenCalls(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{CheckEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, total, _ := s.Transactions(Query{ToUs: maxTime, MaxUs: -1}); total != 10 || len(s.partitionIDs()) != 1 {
		t.Errorf("after reopening: %d transactions in %d partitions, want 10 in 1", total, len(s.partitionIDs()))
	}
}

// TestDiskFull: below the free-space reserve nothing is written, and Close leaves badger
// for the next start (its final flush would write through memory maps).
func TestDiskFull(t *testing.T) {
	var free atomic.Int64
	free.Store(1 << 40)
	s, err := Open(t.TempDir(), Options{CheckEvery: time.Hour, FreeSpace: func(string) (int64, error) { return free.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	r := row{trace: "a^1^1", id: 1, kind: "entry", app: "a", agent: "a-1", startMs: base, durMs: 5, resource: "/"}
	free.Store(0)
	s.space.room(true)
	if err := s.Write(lines(t, r.point())); !errors.Is(err, ErrDiskFull) || s.counters.refused.Load() != 1 {
		t.Fatalf("write on a full disk: %v, %d refused", err, s.counters.refused.Load())
	}
	free.Store(1 << 40)
	s.space.room(true)
	if err := s.Write(lines(t, r.point())); err != nil {
		t.Fatalf("write once there is room: %v", err)
	}
	free.Store(0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.db().IsClosed() {
		t.Fatal("Close closed badger on a full disk")
	}
	_ = s.db().Close() // what the next start's replay would recover
}

// TestFullDiskAtOpen: on a disk already full, the store opens closed (badger not opened:
// its log replay and memtables write through memory maps), refuses writes, answers
// ErrUnavailable, and opens by itself once the disk has room.
func TestFullDiskAtOpen(t *testing.T) {
	var free atomic.Int64
	s := openStore(t, Options{ReopenEvery: 10 * time.Millisecond, FreeSpace: func(string) (int64, error) { return free.Load(), nil }})
	r := row{trace: "a^1^1", id: 1, kind: "entry", app: "a", agent: "a-1", startMs: base, durMs: 5, resource: "/"}
	if err := s.Write(lines(t, r.point())); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("write while closed: %v", err)
	}
	if _, _, err := s.Transactions(Query{ToUs: maxTime, MaxUs: -1}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("query while closed: %v", err)
	}
	free.Store(1 << 40)
	deadline := time.Now().Add(10 * time.Second)
	for s.db() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s.space.room(true)
	if err := s.Write(lines(t, r.point())); err != nil {
		t.Fatalf("write once there is room: %v", err)
	}
	if _, total, err := s.Transactions(Query{ToUs: maxTime, MaxUs: -1}); err != nil || total != 1 {
		t.Errorf("after opening: %d transactions, %v", total, err)
	}
}

func TestMalformedBatchIsRefusedWhole(t *testing.T) {
	s := openStore(t, Options{})
	r := row{trace: "a^1^1", id: 1, kind: "entry", app: "a", agent: "a-1", startMs: base, durMs: 5, resource: "/"}
	batch := append(lines(t, r.point()), "pinpoint,broken\n"...)
	if err := s.Write(batch); !errors.Is(err, ErrMalformed) {
		t.Fatalf("malformed batch: %v", err)
	}
	if spans, _, _ := s.Trace("a^1^1", 10); len(spans) != 0 {
		t.Errorf("a refused batch wrote %d spans", len(spans))
	}
	bad := r.point()
	bad.AddField(point.String("span_id", "not-a-number"))
	write(t, s, bad)
	if s.counters.skipped.Load() != 1 || s.counters.spans.Load() != 0 {
		t.Errorf("span without a numeric id: skipped %d, stored %d", s.counters.skipped.Load(), s.counters.spans.Load())
	}
}

func TestAgentsAndSamples(t *testing.T) {
	s := openStore(t, Options{})
	pool := point.New("pinpoint_datasource", (base+5000)*1e6)
	pool.SetTag("agent_id", "fe-1")
	pool.SetTag("pool_id", "7")
	pool.SetTag("url", "jdbc:mysql://db/shop")
	pool.AddField(point.Int("ActiveConnectionSize", 3))
	write(t, s, agentPoint("fe-1", base-100_000, 0), agentPoint("fe-1", base-100_000, base-50_000), agentPoint("fe-1", base, 0), // a run ended, a new one
		agentPoint("fe-2", base, 0), agentPoint("fe-2", base, base+60_000), // a run that ended
		jvmPoint(base+10_000, 2048), jvmPoint(base+5000, 1024), pool)
	write(t, s, rows(call(traceID(1), 1, base+20_000, 100, false)...)...)
	agents, err := s.Agents()
	if err != nil {
		t.Fatal(err)
	}
	want := []Agent{
		{AgentID: "be-1", App: "backend", LastSeenMs: base + 20_098},
		{AgentID: "fe-1", App: "frontend", Hostname: "vm", IP: "192.0.2.2", Version: "1.5.0", PID: 42, StartMs: base, LastSeenMs: base + 20_100},
		{AgentID: "fe-2", App: "frontend", Hostname: "vm", IP: "192.0.2.2", Version: "1.5.0", PID: 42, StartMs: base, EndMs: base + 60_000},
	}
	if !reflect.DeepEqual(agents, want) {
		t.Errorf("agents\n got %+v\nwant %+v", agents, want)
	}
	samples, err := s.Samples("fe-1", base, base+10_000)
	if err != nil || len(samples) != 3 {
		t.Fatalf("samples: %d, %v", len(samples), err)
	}
	heap0, _ := samples[0].Get("JvmMemoryHeapUsed")
	heap2, _ := samples[2].Get("JvmMemoryHeapUsed")
	active, _ := samples[1].Get("ActiveConnectionSize")
	if samples[0].TimeMs != base+5000 || samples[0].Kind != SampleJVM || heap0 != 1024 || samples[1].Kind != SampleDataSource ||
		samples[1].URL != "jdbc:mysql://db/shop" || active != 3 || heap2 != 2048 {
		t.Errorf("samples %+v", samples)
	}
	if samples, _ := s.Samples("fe-1", base, base+9_999); len(samples) != 2 {
		t.Errorf("to is inclusive, to+1 ms excluded: %d samples", len(samples))
	}
}
