package trace

import (
	"slices"
	"testing"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/servicetype"
)

func TestSnakeCase(t *testing.T) {
	for in, want := range map[string]string{
		"http.status.code": "http_status_code", "args[0]": "args_0", "args[N]": "args_n",
		"cached_args[3]": "cached_args_3", "SQL-BindValue": "sql_bind_value", "http.io": "http_io",
		"MONGO-JSON-Data": "mongo_json_data", "ExceptionChainId": "exception_chain_id",
		"Asynchronous Invocation": "asynchronous_invocation", "RETURN_DATA": "return_data",
		"...": "", "es.dsl": "es_dsl",
	} {
		if got := snakeCase(in); got != want {
			t.Errorf("snakeCase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAnnotationFieldNames(t *testing.T) {
	n := newAnnotationNames(servicetype.Builtin())
	for code, want := range map[int32]string{
		-1: "args_0", -11: "args_n", 49: "http_io", -30: "cached_args_0", 14: "return_data", 777: "annotation_777",
	} {
		if got := n.field(code); got != want {
			t.Errorf("field(%d) = %q, want %q", code, got, want)
		}
	}
}

func TestShortAPIName(t *testing.T) {
	cases := []struct {
		in   string
		java bool
		want string
	}{
		{"com.example.DemoController.demo2(java.lang.String)", true, "DemoController.demo2()"},
		{"org.apache.catalina.core.StandardHostValve.invoke(org.apache.catalina.connector.Request request, org.apache.catalina.connector.Response response)", true, "StandardHostValve.invoke()"},
		{"com.example.Outer$Inner.run()", true, "Outer$Inner.run()"},
		{"Foo.bar()", true, "Foo.bar()"},
		{"main(java.lang.String[])", true, "main()"},
		{"Tomcat Servlet Process", true, "Tomcat Servlet Process"},
		{"main.main.proxy.func3()", false, "main.main.proxy.func3()"},
		{"http/Client.Do()", false, "http/Client.Do()"},
	}
	for _, c := range cases {
		if got := shortAPIName(c.in, c.java); got != c.want {
			t.Errorf("shortAPIName(%q, %v) = %q, want %q", c.in, c.java, got, c.want)
		}
	}
}

func TestJavaStyleAPI(t *testing.T) {
	for st, want := range map[int32]bool{1010: true, 1210: true, 1400: false, 1500: false, 1700: false, 1800: false, 1801: false} {
		s := &meta.Sender{AgentKey: meta.AgentKey{AgentID: "x", StartTime: 1}, ServiceType: st}
		if got := javaStyleAPI(s, nil); got != want {
			t.Errorf("serviceType %d: java = %v", st, got)
		}
	}
	// Without the header, the agent's PAgentInfo decides; without either, Java.
	s := &meta.Sender{AgentKey: meta.AgentKey{AgentID: "go", StartTime: 2}, ServiceType: -1}
	if javaStyleAPI(s, &pb.PAgentInfo{ServiceType: 1800}) {
		t.Error("Go agent without header taken as Java")
	}
	if !javaStyleAPI(s, nil) {
		t.Error("unknown agent not taken as Java")
	}
}

func TestSplitMethod(t *testing.T) {
	for _, c := range []struct{ in, method, wantMethod, wantURL string }{
		{"GET http://h/x?a=1", "", "GET", "http://h/x?a=1"},
		{"DELETE /a b", "", "DELETE", "/a b"},
		{"POST http://h/", "PUT", "PUT", "http://h/"},
		{"http://h/x", "", "", "http://h/x"},
		{"Get http://h/", "", "", "Get http://h/"},
	} {
		m, u := splitMethod(c.in, c.method)
		if m != c.wantMethod || u != c.wantURL {
			t.Errorf("splitMethod(%q, %q) = %q, %q", c.in, c.method, m, u)
		}
	}
}

// events builds wire events from (sequence, depth, startElapsed, endElapsed) rows.
func events(rows ...[4]int32) []*pb.PSpanEvent {
	out := make([]*pb.PSpanEvent, len(rows))
	for i, r := range rows {
		out[i] = &pb.PSpanEvent{Sequence: r[0], Depth: r[1], StartElapsed: r[2], EndElapsed: r[3]}
	}
	return out
}

func TestAppendMessageDecodesDeltasAndDepths(t *testing.T) {
	// Listed out of order on purpose: decoding sorts by sequence first.
	wire := events([4]int32{2, 0, 3, 1}, [4]int32{0, 1, 5, 10}, [4]int32{1, 2, 1, 2}, [4]int32{3, 1, 0, 1})
	got := appendMessage(nil, wire, 1000, msgSpan, idScheme{spanID: 9})
	wantStart := []int64{1005, 1006, 1009, 1009}
	wantDepth := []int32{1, 2, 2, 1}
	for i, e := range got {
		if e.seq != int32(i) || e.start != wantStart[i] || e.depth != wantDepth[i] {
			t.Errorf("event %d: seq %d start %d depth %d, want start %d depth %d", i, e.seq, e.start, e.depth, wantStart[i], wantDepth[i])
		}
	}
}

func TestLinkSiblingsAndDeepTrees(t *testing.T) {
	// depth-0 runs are siblings: 0(d1) 1(d2) 2(d0->2) 3(d0->2) 4(d3) 5(d1) 6(d0->1)
	evs := appendMessage(nil, events(
		[4]int32{0, 1, 0, 9}, [4]int32{1, 2, 0, 1}, [4]int32{2, 0, 1, 1}, [4]int32{3, 0, 1, 3},
		[4]int32{4, 3, 0, 1}, [4]int32{5, 1, 4, 1}, [4]int32{6, 0, 1, 1}), 0, msgSpan, idScheme{spanID: 77})
	link(evs, 77, false)
	id := func(seq int32) int64 { return syncEventID(77, seq) }
	want := []int64{77, id(0), id(0), id(0), id(3), 77, 77}
	for i, e := range evs {
		if e.parent != want[i] || e.uncertain {
			t.Errorf("seq %d: parent %d (uncertain %v), want %d", e.seq, e.parent, e.uncertain, want[i])
		}
	}
	// A chain deeper than the linker's array still links.
	var rows [][4]int32
	for d := int32(0); d < 200; d++ {
		rows = append(rows, [4]int32{d, d + 1, 0, 1})
	}
	deep := appendMessage(nil, events(rows...), 0, msgSpan, idScheme{spanID: 1})
	link(deep, 1, false)
	for i := 1; i < len(deep); i++ {
		if deep[i].parent != deep[i-1].id {
			t.Fatalf("depth %d: wrong parent", i+1)
		}
	}
}

func TestLinkMarksPossiblyMissingParents(t *testing.T) {
	// Sequences 2..4 are missing: event 5 (depth 2) may belong under one of them.
	evs := appendMessage(nil, events([4]int32{0, 1, 0, 1}, [4]int32{1, 2, 0, 1}, [4]int32{5, 2, 0, 1}), 0, 0, idScheme{spanID: 3})
	link(evs, 3, false)
	if evs[1].uncertain || !evs[2].uncertain || evs[2].parent != evs[0].id {
		t.Errorf("uncertain = %v %v, parent of 5 = %d", evs[1].uncertain, evs[2].uncertain, evs[2].parent)
	}
	link(evs, 3, true) // a partial span: the guess becomes the span
	if evs[2].parent != 3 {
		t.Errorf("partial: parent of 5 = %d, want the span", evs[2].parent)
	}
}

func TestMergeDropsRepeatedSequences(t *testing.T) {
	evs := appendMessage(nil, events([4]int32{0, 1, 0, 1}, [4]int32{1, 2, 0, 1}), 0, msgSpan, idScheme{spanID: 1})
	evs = appendMessage(evs, events([4]int32{1, 2, 0, 1}, [4]int32{2, 2, 0, 1}), 0, 0, idScheme{spanID: 1})
	merged, dropped := mergeEvents(evs)
	if dropped != 1 || len(merged) != 3 || merged[1].msg != msgSpan {
		t.Errorf("dropped %d, merged %d, seq 1 from %d", dropped, len(merged), merged[1].msg)
	}
}

func TestPendingIndexCapsAndDeadlines(t *testing.T) {
	x := newPendingIndex(2, 1000)
	if ev := x.add("a", 10, 100); ev != nil {
		t.Fatal(ev)
	}
	x.add("b", 5, 100)
	x.add("a", 20, 100) // a second chunk keeps the earlier deadline
	if ev := x.add("c", 30, 100); !slices.Equal(ev, []string{"b"}) {
		t.Errorf("count cap evicted %v, want the earliest deadline b", ev)
	}
	if ev := x.add("c", 40, 800); !slices.Equal(ev, []string{"a"}) {
		t.Errorf("byte cap evicted %v, want a", ev)
	}
	if due := x.due(29); len(due) != 0 {
		t.Errorf("due early: %v", due)
	}
	if due := x.due(30); !slices.Equal(due, []string{"c"}) {
		t.Errorf("due %v", due)
	}
	if n, b := x.size(); n != 0 || b != 0 {
		t.Errorf("left %d spans, %d bytes", n, b)
	}
	x.add("d", 1, 10)
	x.set("d", 0, 0, 0)
	if x.has("d") {
		t.Error("set with no chunks left keeps the span")
	}
	for range maxChunksPerSpan {
		if ev := x.add("e", 1, 1); ev != nil {
			t.Fatalf("evicted %v below the per-span chunk cap", ev)
		}
	}
	if ev := x.add("e", 1, 1); !slices.Equal(ev, []string{"e"}) {
		t.Errorf("per-span chunk cap evicted %v", ev)
	}
}

func TestStoreRecordsRoundTrip(t *testing.T) {
	s := &meta.Sender{AgentKey: meta.AgentKey{AgentID: "agent-1", StartTime: 7}, AgentName: "n", ApplicationName: "app", ServiceType: -1}
	key := newSpanKey(s, &pb.PTransactionId{Sequence: 3}, -42)
	if key.txAgent != "agent-1" || key.txStart != 7 || key.traceID() != "agent-1^7^3" {
		t.Errorf("empty transaction agentId not taken from the sender: %+v", key)
	}
	id := key.id()
	if agent, ok := agentOfSpanID(id); !ok || agent != s.AgentKey {
		t.Errorf("agentOfSpanID = %v %v", agent, ok)
	}
	pk := pendingKey(id, -5, []byte("x"))
	if got, ok := spanIDOfPendingKey(pk); !ok || got != id {
		t.Error("pending key does not give back its span")
	}
	val := encodePendingRecord(99, s, []byte{0x18, 0x05}) // the header does not look at the chunk bytes
	deadline, sender, raw, err := decodePendingHeader(val, s.AgentKey)
	if err != nil || deadline != 99 || sender != *s || len(raw) != 2 {
		t.Errorf("header = %d %+v %v %v", deadline, sender, raw, err)
	}
	if _, _, _, err := decodePendingHeader(val[:5], s.AgentKey); err == nil {
		t.Error("truncated record decoded")
	}
	skel := []event{{seq: -3, depth: 1, id: 5}, {seq: 0, depth: 2, id: -6}, {seq: 40, depth: 1 << 20, id: 7}}
	back, err := decodeSkeleton(nil, encodeSkeleton(skel, func(*event) bool { return true }))
	if err != nil || len(back) != 3 {
		t.Fatal(back, err)
	}
	for i := range skel {
		if back[i].seq != skel[i].seq || back[i].depth != skel[i].depth || back[i].id != skel[i].id || back[i].msg != msgSkeleton {
			t.Errorf("skeleton entry %d = %+v", i, back[i])
		}
	}
	if _, err := decodeSkeleton(nil, []byte{1, 5, 0}); err == nil {
		t.Error("damaged skeleton decoded")
	}
}

func TestAnnotationFieldsRepeatAndOverflow(t *testing.T) {
	h := goldenHarness(t)
	e := ev(0, 1, 0, 1, 5000, 3)
	e.Annotation = []*pb.PAnnotation{strAnn(-1, "a"), strAnn(41, "p=1"), strAnn(-1, "b")}
	h.span(javaA, shopSpan(1, 1, 1, e))
	p := h.sink.points()[1]
	if got := fieldString(p, "args_0"); got != "a\nb" {
		t.Errorf("repeated key joined as %q", got)
	}
	if got := fieldString(p, "http_param"); got != "p=1" {
		t.Errorf("http_param = %q", got)
	}
	// Fields go in name order; past the cap the rest land, as lines, in one field.
	for i := range int32(maxAnnotationFields + 1) {
		e.Annotation = append(e.Annotation, strAnn(2000+i, "x"))
	}
	h.span(javaA, shopSpan(2, 2, 1, e))
	p = h.sink.points()[3]
	want := "annotation_2032=x\nargs_0=a\nargs_0=b\nhttp_param=p=1"
	if got := fieldString(p, "annotation_overflow"); got != want {
		t.Errorf("overflow = %q", got)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if n := len(p.Fields); n > 16+maxAnnotationFields {
		t.Errorf("%d fields", n)
	}
}
