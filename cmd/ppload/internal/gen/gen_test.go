package gen

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// wireEvent is an event as a collector rebuilds it from the wire, following
// PINPOINT-PROTOCOL.md section 4 (independently of encode).
type wireEvent struct {
	seq, depth int32
	start, end int64 // epoch ms
	ev         *pb.PSpanEvent
}

// decodeEvents applies the protocol's rules: abs[0] = startElapsed[0],
// abs[i] = abs[i-1] + startElapsed[i], start = base + abs; a depth of 0 is the previous
// event's depth; endElapsed is the duration.
func decodeEvents(evs []*pb.PSpanEvent, base int64) []wireEvent {
	out := make([]wireEvent, len(evs))
	abs, depth := int64(0), int32(0)
	for i, e := range evs {
		abs += int64(e.GetStartElapsed())
		if e.GetDepth() != 0 {
			depth = e.GetDepth()
		}
		start := base + abs
		out[i] = wireEvent{seq: e.GetSequence(), depth: depth, start: start, end: start + int64(e.GetEndElapsed()), ev: e}
	}
	return out
}

// onWire marshals and unmarshals every message, so tests see what a collector decodes.
func onWire(t *testing.T, ms []*pb.PSpanMessage) []*pb.PSpanMessage {
	t.Helper()
	out := make([]*pb.PSpanMessage, len(ms))
	for i, m := range ms {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = &pb.PSpanMessage{}
		if err := proto.Unmarshal(b, out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// webAgent and apiAgent return fresh fixtures, so no test can change another's.
func webAgent() Agent {
	return Agent{ID: "ppl-test-0", Name: "ppl-test-0", Role: Web, StartTime: 1_700_000_000_000}
}

func apiAgent() *Agent {
	return &Agent{ID: "ppl-test-1", Name: "ppl-test-1", Role: API, StartTime: 1_700_000_000_001}
}

const testNow = int64(1_700_000_100_000)

func newGen(t *testing.T, o Options) *Generator {
	t.Helper()
	g, err := New(o, webAgent(), 7)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// spanEvents returns a span's events rebuilt from its sync chunks and the span, in
// sequence order, each message decoded against its own base.
func spanEvents(t *testing.T, ms []*pb.PSpanMessage) (*pb.PSpan, []wireEvent) {
	t.Helper()
	var span *pb.PSpan
	var all []wireEvent
	for _, m := range ms {
		if c := m.GetSpanChunk(); c != nil && c.GetLocalAsyncId() == nil {
			all = append(all, decodeEvents(c.GetSpanEvent(), c.GetKeyTime())...)
		}
		if s := m.GetSpan(); s != nil {
			span = s
			all = append(all, decodeEvents(s.GetSpanEvent(), s.GetStartTime())...)
		}
	}
	if span == nil {
		t.Fatal("no PSpan among the messages")
	}
	return span, all
}

func TestDeltaTimesRebuildPlannedTimes(t *testing.T) {
	for _, n := range []int{6, 12, 20, 21, 45} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			g := newGen(t, Options{Events: n, ChunkFrac: 1})
			sp := &spanPlan{id: 5, parentID: -1, evs: layout(n), agent: webAgent()}
			sp.elapsed = g.schedule(sp.evs, 0)
			sp.startMs = testNow - sp.elapsed
			ms := onWire(t, g.spanMessages(&pb.PTransactionId{AgentId: webAgent().ID, Sequence: 1}, sp))
			_, got := spanEvents(t, ms)
			if len(got) != n {
				t.Fatalf("%d events on the wire, want %d", len(got), n)
			}
			for i, e := range got {
				want := sp.evs[i]
				if e.seq != int32(i) || e.start != sp.startMs+want.start || e.end != sp.startMs+want.end || e.depth != want.depth {
					t.Errorf("event %d: seq %d depth %d [%d, %d], want seq %d depth %d [%d, %d]",
						i, e.seq, e.depth, e.start, e.end, i, want.depth, sp.startMs+want.start, sp.startMs+want.end)
				}
			}
		})
	}
}

func TestChildrenInsideParentsAndSpan(t *testing.T) {
	g := newGen(t, Options{Events: 45, ChunkFrac: 0.5, AsyncFrac: 0.5, ErrorFrac: 0.5, LinkedFrac: 0.5})
	for range 200 {
		tx := g.Next(testNow, apiAgent())
		for _, ms := range [][]*pb.PSpanMessage{tx.Own, tx.Callee} {
			if len(ms) == 0 {
				continue
			}
			span, evs := spanEvents(t, onWire(t, ms))
			checkNesting(t, span, evs)
		}
	}
}

// checkNesting checks every event lies within its parent (the nearest preceding event one
// level up; depth-1 events hang under the span) and that siblings do not overlap.
func checkNesting(t *testing.T, span *pb.PSpan, evs []wireEvent) {
	t.Helper()
	spanEnd := span.GetStartTime() + int64(span.GetElapsed())
	for i, e := range evs {
		if e.depth < 1 || (i > 0 && e.depth > evs[i-1].depth+1) || (i == 0 && e.depth != 1) {
			t.Fatalf("event %d: depth %d after %v is not a tree", i, e.depth, evs[max(i-1, 0)].depth)
		}
		pStart, pEnd := span.GetStartTime(), spanEnd
		for j := i - 1; j >= 0; j-- {
			if evs[j].depth == e.depth-1 {
				pStart, pEnd = evs[j].start, evs[j].end
				break
			}
		}
		if e.start < pStart || e.end > pEnd || e.end < e.start {
			t.Errorf("event %d [%d, %d] outside its parent [%d, %d]", i, e.start, e.end, pStart, pEnd)
		}
	}
}

func TestDepthCompression(t *testing.T) {
	g := newGen(t, Options{Events: 12})
	span, _ := spanEvents(t, onWire(t, g.Next(testNow, nil).Own))
	var got []int32
	for _, e := range span.GetSpanEvent() {
		got = append(got, e.GetDepth())
	}
	want := []int32{1, 2, 3, 4, 5, 0, 0, 4, 5, 0, 0, 4}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("wire depths %v, want %v", got, want)
	}
}

func TestChunkSplitAtTwenty(t *testing.T) {
	cases := []struct {
		events     int
		chunkSizes []int // events per sync chunk, in order
		spanEvents int
	}{
		{20, nil, 20}, // the buffer never filled: no chunk
		{21, []int{20}, 1},
		{45, []int{20, 20}, 5},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.events), func(t *testing.T) {
			g := newGen(t, Options{Events: c.events, ChunkFrac: 1})
			ms := onWire(t, g.Next(testNow, nil).Own)
			span := ms[len(ms)-1].GetSpan()
			var sizes []int
			seq := int32(0)
			for _, m := range ms[:len(ms)-1] {
				ch := m.GetSpanChunk()
				if ch == nil || ch.GetSpanId() != span.GetSpanId() || !proto.Equal(ch.GetTransactionId(), span.GetTransactionId()) {
					t.Fatalf("message %v is not a sync chunk of span %d", m, span.GetSpanId())
				}
				evs := ch.GetSpanEvent()
				if evs[0].GetSequence() != seq || evs[0].GetStartElapsed() != 0 || evs[0].GetDepth() == 0 {
					t.Errorf("chunk's first event seq %d startElapsed %d depth %d, want seq %d, 0 (keyTime is its start), absolute depth",
						evs[0].GetSequence(), evs[0].GetStartElapsed(), evs[0].GetDepth(), seq)
				}
				sizes = append(sizes, len(evs))
				seq += int32(len(evs))
			}
			if fmt.Sprint(sizes) != fmt.Sprint(c.chunkSizes) || len(span.GetSpanEvent()) != c.spanEvents {
				t.Errorf("chunks %v + span %d events, want %v + %d", sizes, len(span.GetSpanEvent()), c.chunkSizes, c.spanEvents)
			}
			if first := span.GetSpanEvent()[0]; first.GetSequence() != seq || first.GetDepth() == 0 {
				t.Errorf("span's first event seq %d depth %d, want seq %d with an absolute depth", first.GetSequence(), first.GetDepth(), seq)
			}
		})
	}
}

func TestLinkedCallNamesChildSpan(t *testing.T) {
	g := newGen(t, Options{Events: 12, LinkedFrac: 1})
	tx := g.Next(testNow, apiAgent())
	root, rootEvs := spanEvents(t, onWire(t, tx.Own))
	child, _ := spanEvents(t, onWire(t, tx.Callee))
	var call *wireEvent
	for i := range rootEvs {
		if me := rootEvs[i].ev.GetNextEvent().GetMessageEvent(); me.GetNextSpanId() != 0 {
			call = &rootEvs[i]
		}
	}
	if call == nil {
		t.Fatal("no event with nextSpanId")
	}
	switch {
	case call.ev.GetServiceType() != stHTTPClient4:
		t.Errorf("calling event serviceType %d, want %d", call.ev.GetServiceType(), stHTTPClient4)
	case call.ev.GetNextEvent().GetMessageEvent().GetNextSpanId() != child.GetSpanId():
		t.Errorf("nextSpanId %d, child spanId %d", call.ev.GetNextEvent().GetMessageEvent().GetNextSpanId(), child.GetSpanId())
	case child.GetParentSpanId() != root.GetSpanId() || root.GetParentSpanId() != -1:
		t.Errorf("child parentSpanId %d, root spanId %d (root parent %d)", child.GetParentSpanId(), root.GetSpanId(), root.GetParentSpanId())
	case !proto.Equal(child.GetTransactionId(), root.GetTransactionId()) || child.GetTransactionId().GetAgentId() != webAgent().ID:
		t.Errorf("child transaction %v, root %v", child.GetTransactionId(), root.GetTransactionId())
	case child.GetAcceptEvent().GetParentInfo().GetParentApplicationName() != Web.App():
		t.Errorf("child parentInfo %v", child.GetAcceptEvent().GetParentInfo())
	case child.GetStartTime() < call.start || child.GetStartTime()+int64(child.GetElapsed()) > call.end:
		t.Errorf("child [%d +%d] outside the call [%d, %d]", child.GetStartTime(), child.GetElapsed(), call.start, call.end)
	}
}

func TestAsyncChunkFollowsSpan(t *testing.T) {
	g := newGen(t, Options{Events: 12, AsyncFrac: 1})
	ms := onWire(t, g.Next(testNow, nil).Own)
	span, evs := spanEvents(t, ms)
	last := ms[len(ms)-1].GetSpanChunk()
	if last == nil || last.GetLocalAsyncId().GetAsyncId() != 1 || last.GetLocalAsyncId().GetSequence() != 1 {
		t.Fatalf("last message %v, want an async chunk {1, 1}", ms[len(ms)-1])
	}
	var spawn *wireEvent
	for i := range evs {
		if evs[i].ev.GetAsyncEvent() == last.GetLocalAsyncId().GetAsyncId() {
			spawn = &evs[i]
		}
	}
	first := last.GetSpanEvent()[0]
	switch {
	case spawn == nil:
		t.Error("no event has asyncEvent = 1")
	case last.GetSpanId() != span.GetSpanId():
		t.Errorf("async chunk spanId %d, span %d", last.GetSpanId(), span.GetSpanId())
	case first.GetServiceType() != stAsync || first.GetDepth() != 1:
		t.Errorf("async chunk's first event serviceType %d depth %d, want ASYNC (100) at depth 1", first.GetServiceType(), first.GetDepth())
	case last.GetKeyTime() <= spawn.start:
		t.Errorf("async work starts at %d, not after its spawning event (%d)", last.GetKeyTime(), spawn.start)
	}
}

func TestErrorSpan(t *testing.T) {
	g := newGen(t, Options{Events: 12, ErrorFrac: 1})
	span, evs := spanEvents(t, onWire(t, g.Next(testNow, nil).Own))
	failed := 0
	for _, e := range evs {
		if info := e.ev.GetExceptionInfo(); info != nil {
			failed++
			if info.GetIntValue() != strSQLException || info.GetStringValue().GetValue() == "" {
				t.Errorf("exceptionInfo %v", info)
			}
		}
	}
	if span.GetErr() != 1 || failed != 1 {
		t.Errorf("err %d and %d events with exceptionInfo, want 1 and 1", span.GetErr(), failed)
	}
}

// TestReferencedMetadataIsCatalogued checks every apiId, sqlId and stringId a span or
// chunk references is in the catalog of the agent that sends it.
func TestReferencedMetadataIsCatalogued(t *testing.T) {
	g := newGen(t, Options{Events: 45, ChunkFrac: 0.5, AsyncFrac: 0.5, ErrorFrac: 0.5, LinkedFrac: 0.5})
	for range 100 {
		tx := g.Next(testNow, apiAgent())
		checkRefs(t, Web, onWire(t, tx.Own))
		checkRefs(t, API, onWire(t, tx.Callee))
	}
}

func checkRefs(t *testing.T, r Role, ms []*pb.PSpanMessage) {
	t.Helper()
	apis, sqls, strs := CatalogFor(r).Known()
	check := func(what string, known map[int32]bool, id int32) {
		if !known[id] {
			t.Errorf("%s id %d is not in the %s catalog", what, id, r.App())
		}
	}
	var evs []*pb.PSpanEvent
	for _, m := range ms {
		if s := m.GetSpan(); s != nil {
			check("api", apis, s.GetApiId())
			evs = append(evs, s.GetSpanEvent()...)
		}
		evs = append(evs, m.GetSpanChunk().GetSpanEvent()...)
	}
	for _, e := range evs {
		check("api", apis, e.GetApiId())
		if info := e.GetExceptionInfo(); info != nil {
			check("string", strs, info.GetIntValue())
		}
		for _, a := range e.GetAnnotation() {
			if a.GetKey() == annSQLID {
				check("sql", sqls, a.GetValue().GetIntStringStringValue().GetIntValue())
			}
		}
	}
}

func TestIDsUnique(t *testing.T) {
	g := newGen(t, Options{Events: 6, LinkedFrac: 1})
	spans, txs := map[int64]bool{}, map[string]bool{}
	for range 5000 {
		tx := g.Next(testNow, apiAgent())
		key := fmt.Sprintf("%s^%d^%d", tx.ID.GetAgentId(), tx.ID.GetAgentStartTime(), tx.ID.GetSequence())
		if txs[key] {
			t.Fatalf("transaction %s twice", key)
		}
		txs[key] = true
		for _, m := range append(tx.Own, tx.Callee...) {
			if s := m.GetSpan(); s != nil {
				if spans[s.GetSpanId()] || s.GetSpanId() == 0 || s.GetSpanId() == -1 {
					t.Fatalf("span id %d repeated or reserved", s.GetSpanId())
				}
				spans[s.GetSpanId()] = true
			}
		}
	}
}

func TestSameSeedSameBytes(t *testing.T) {
	o := Options{Events: 30, ChunkFrac: 0.5, AsyncFrac: 0.5, ErrorFrac: 0.5, LinkedFrac: 0.5}
	a, b := newGen(t, o), newGen(t, o)
	for range 50 {
		ta, tb := a.Next(testNow, apiAgent()), b.Next(testNow, apiAgent())
		for i, m := range append(ta.Own, ta.Callee...) {
			other := append(tb.Own, tb.Callee...)
			if i >= len(other) || !proto.Equal(m, other[i]) {
				t.Fatalf("message %d differs between two generators of one seed", i)
			}
		}
	}
}

func TestTally(t *testing.T) {
	g := newGen(t, Options{Events: 21, ChunkFrac: 1, AsyncFrac: 1, ErrorFrac: 1, LinkedFrac: 1})
	tx := g.Next(testNow, apiAgent())
	var tl Tally
	tl.AddAll(tx.Own)
	tl.AddAll(tx.Callee)
	// root: chunk(20) + span(1) + async chunk(2); child: chunk(20) + span(1).
	want := Tally{Spans: 2, ChildSpans: 1, ErrorSpans: 1, Chunks: 3, AsyncChunks: 1, Events: 21 + 2 + 21}
	if tl != want {
		t.Errorf("tally %+v, want %+v", tl, want)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{Events: 5}, {Events: 12, ChunkFrac: 1.5}, {Events: 12, LinkedFrac: -0.1}} {
		if o.Validate() == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	if err := (Options{Events: 12, ErrorFrac: 1}).Validate(); err != nil {
		t.Error(err)
	}
}
