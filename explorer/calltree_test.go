package explorer

import (
	"reflect"
	"testing"

	"github.com/apmkit/apmkit/tracestore"
)

// TestCallTree checks the columns on a trace small enough to compute by hand:
//
//	1 entry  /checkout   0..100 ms
//	  2 local  handle    1..99        (children: 3 sync 10 ms, 4 async 50 ms, 5 exit 30 ms)
//	    3 local  validate  2..12
//	    4 local  ASYNC     20..70     (async: not subtracted from handle's self)
//	      6 local  worker   21..61
//	    5 exit   http      60..90
//	      7 entry  /pay (other app) 62..88
//	9 local  orphan (parent 8 never stored)  5..6
func TestCallTree(t *testing.T) {
	sp := func(id, parent int64, kind, app, op string, startMs, durMs int64, ord uint64) tracestore.Span {
		return tracestore.Span{SpanID: id, ParentID: parent, Kind: kind, App: app, AgentID: app + "-1", Operation: op,
			Resource: op, StartUs: startMs * 1000, DurationUs: durMs * 1000, Ordinal: ord}
	}
	async := sp(4, 2, "local", "shop", "Goroutine", 20, 50, 5)
	async.ServiceType = "ASYNC"
	spans := []tracestore.Span{ // stored out of order
		sp(7, 5, "entry", "pay", "/pay", 62, 26, 9),
		sp(9, 8, "local", "shop", "orphan", 5, 1, 10),
		sp(5, 2, "exit", "shop", "http", 60, 30, 6),
		sp(3, 2, "local", "shop", "validate", 2, 10, 3),
		async,
		sp(6, 4, "local", "shop", "worker", 21, 40, 7),
		sp(1, 0, "entry", "shop", "/checkout", 0, 100, 1),
		sp(2, 1, "local", "shop", "handle", 1, 98, 2),
	}
	type want struct {
		id                      string
		depth                   int
		gap, exec, self, pctX10 float64
	}
	wants := []want{
		{"1", 0, 0, 100, 2, 1000}, // self: 100 - 98
		{"2", 1, 1, 98, 58, 980},  // 98 - 10 - 30 (the async 50 runs beside it)
		{"3", 2, 1, 10, 10, 100},  // 2 - 1: its parent is the row before
		{"4", 2, 8, 50, 10, 500},  // 20 - (2 + 10): the row before is its sibling
		{"6", 3, 1, 40, 40, 400},  // 21 - 20
		{"5", 2, -1, 30, 4, 300},  // 60 - (21 + 40): overlaps the async work
		{"7", 3, 2, 26, 26, 260},  // 62 - 60
		{"9", 0, -83, 1, 1, 10},   // 5 - (62 + 26): an orphan, after the root's tree
	}
	rows := callTree(spans)
	if len(rows) != len(wants) {
		t.Fatalf("%d rows, want %d", len(rows), len(wants))
	}
	for i, w := range wants {
		r := rows[i]
		got := want{r.SpanID, r.Depth, r.GapMs, r.ExecMs, r.SelfMs, r.ExecPct * 10}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("row %d: %+v, want %+v", i, got, w)
		}
	}
	if rows[0].ParentID != "0" || rows[6].App != "pay" || rows[6].AgentID != "pay-1" || rows[6].Type != "entry" {
		t.Errorf("row fields: %+v / %+v", rows[0], rows[6])
	}
}

// TestCallTreeSiblingsInStoredOrder: events that start in the same millisecond keep the
// order they were stored in (their sequence), whatever their ids.
func TestCallTreeSiblingsInStoredOrder(t *testing.T) {
	spans := []tracestore.Span{
		{SpanID: 1, Kind: "entry", DurationUs: 5000, Ordinal: 1},
		{SpanID: 20, ParentID: 1, StartUs: 1000, Ordinal: 3},
		{SpanID: 30, ParentID: 1, StartUs: 1000, Ordinal: 2},
		{SpanID: 10, ParentID: 1, StartUs: 1000, Ordinal: 4},
	}
	var ids []string
	for _, r := range callTree(spans) {
		ids = append(ids, r.SpanID)
	}
	if !reflect.DeepEqual(ids, []string{"1", "30", "20", "10"}) {
		t.Errorf("order %v", ids)
	}
}

// TestCallTreeCycle: ids that point at each other (corrupt data) are shown, flat, after
// the tree, never lost and never looped over.
func TestCallTreeCycle(t *testing.T) {
	spans := []tracestore.Span{
		{SpanID: 1, ParentID: 0, Kind: "entry", DurationUs: 10_000},
		{SpanID: 2, ParentID: 3, DurationUs: 1000},
		{SpanID: 3, ParentID: 2, DurationUs: 1000},
	}
	rows := callTree(spans)
	if len(rows) != 3 || rows[0].SpanID != "1" || rows[1].Depth != 0 || rows[2].Depth != 0 {
		t.Errorf("rows %+v", rows)
	}
}

func TestArgs(t *testing.T) {
	cases := []struct {
		name string
		span tracestore.Span
		want string
	}{
		{"sql with binds", tracestore.Span{Kind: "exit", Operation: "query", Resource: "SELECT ? FROM t",
			Attrs: []tracestore.KV{{Key: "db_sql_bind_values", Value: "1, 'a'"}}}, "SELECT ? FROM t (bind: 1, 'a')"},
		{"http client", tracestore.Span{Kind: "exit", Operation: "Client.Do", Resource: "Client.Do",
			Tags:  []tracestore.KV{{Key: "http_method", Value: "GET"}, {Key: "http_url", Value: "http://b/api/{id}"}},
			Attrs: []tracestore.KV{{Key: "http_url_raw", Value: "http://b/api/7"}}}, "GET http://b/api/7"},
		{"entry", tracestore.Span{Kind: "entry", Operation: "HTTP Server", Resource: "/cart",
			Attrs: []tracestore.KV{{Key: "remote_addr", Value: "10.0.0.1"}, {Key: "args_0", Value: "42"}}}, "/cart  from 10.0.0.1  args_0=42"},
		{"method only", tracestore.Span{Kind: "local", Operation: "main.f()", Resource: "main.f()"}, ""},
		{"api in full", tracestore.Span{Kind: "local", Operation: "Cart.add()", Resource: "com.shop.Cart.add(int)"}, "com.shop.Cart.add(int)"},
	}
	for _, c := range cases {
		if got := args(&c.span); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
