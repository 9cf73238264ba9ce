package trace

import (
	"fmt"
	"strings"
	"testing"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/point"
)

// TestRowOffsetsPinned pins the row-time scheme: the values were computed once with an
// independent implementation (Python: FNV-1a 64 over the id-hash parts as in TestIDHash,
// splitmix64's finalizer, then the formula of rowtime.go). Stored rows depend on it: a
// change makes re-sent spans land on new rows instead of their own.
func TestRowOffsetsPinned(t *testing.T) {
	cases := []struct {
		key              spanKey
		entry, ev0, e998 int64
	}{
		{spanKey{txAgent: "frontend-01", txStart: 1795417161961, txSeq: 1, spanID: 7986916454579006446}, 579487, 579488, 579486},
		{spanKey{txAgent: "frontend-01", txStart: 1795417161961, txSeq: 2, spanID: 7986916454579006446}, 580487, 580488, 580486},
		{spanKey{txAgent: "java-a", txStart: 1700000000000, txSeq: -5, spanID: -1, asyncID: 1, asyncSeq: 2}, 562798, 562799, 562797},
	}
	for _, c := range cases {
		r := newRowOffsets(c.key)
		if got := [3]int64{r.entry(), r.event(0), r.event(998)}; got != [3]int64{c.entry, c.ev0, c.e998} {
			t.Errorf("%+v: offsets (entry, seq 0, seq 998) = %v, want %d %d %d", c.key, got, c.entry, c.ev0, c.e998)
		}
	}
}

// seriesTime is what InfluxDB keys a row by: the series (measurement and tags) and the time.
func seriesTime(p *point.Point) string {
	var b strings.Builder
	b.WriteString(p.Name)
	for _, tg := range p.Tags {
		fmt.Fprintf(&b, ",%s=%s", tg.Key, tg.Value)
	}
	fmt.Fprintf(&b, " %d", p.Time)
	return b.String()
}

// checkRows fails when two points would share a row, or a point left its start millisecond.
func checkRows(t *testing.T, pts []*point.Point, want int) {
	t.Helper()
	if len(pts) != want {
		t.Fatalf("%d points, want %d", len(pts), want)
	}
	rows := map[string]string{}
	for _, p := range pts {
		start, _ := p.Field("start")
		if p.Time/1_000_000 != start.IntValue()/1000 {
			t.Fatalf("time %d is outside the start millisecond (start %d µs)", p.Time, start.IntValue())
		}
		k := seriesTime(p)
		id, _ := p.Field("span_id")
		if prev, dup := rows[k]; dup {
			t.Errorf("span %s shares row %q with span %s", id.StringValue(), k, prev)
		}
		rows[k] = id.StringValue()
	}
}

// A burst of identical requests to one agent, all in the same millisecond, with identical
// events in the same millisecond too: every point is its own row.
func TestRowTimesBurstOfIdenticalSpans(t *testing.T) {
	h := newHarness(t)
	putAPI(t, h, javaA, "com.example.Shop.items()")
	const spans, events = 1000, 30
	for seq := range int64(spans) {
		evs := make([]*pb.PSpanEvent, events)
		for i := range evs {
			evs[i] = ev(int32(i), 1, 0, 0, 5000, 1) // same service type, API and time
		}
		h.span(javaA, shopSpan(seq*7919+1, 4000+seq, 0, evs...))
	}
	checkRows(t, h.sink.points(), spans*(events+1))
}

// A callee agent serving eight callers whose transaction sequences overlap, all in one
// millisecond, and async work of the callers' spans: no two points share a row.
func TestRowTimesOverlappingCallers(t *testing.T) {
	h := newHarness(t)
	api := &meta.Sender{AgentKey: meta.AgentKey{AgentID: "api-1", StartTime: 1700000000500}, AgentName: "api-1", ApplicationName: "api"}
	putAPI(t, h, api, "com.example.Api.get()")
	n := 0
	for caller := range 8 {
		for seq := range int64(20) {
			s := &pb.PSpan{
				Version: 1, TransactionId: txID(fmt.Sprintf("web-%d", caller), 1700000000000+int64(caller), seq),
				SpanId: int64(caller)<<32 | seq + 11, ParentSpanId: 99, StartTime: t0, ApiId: 1, ServiceType: 1010,
				AcceptEvent: &pb.PAcceptEvent{Rpc: "/api"},
				SpanEvent:   []*pb.PSpanEvent{ev(0, 1, 0, 0, 5000, 1), ev(1, 1, 0, 0, 5000, 1)},
			}
			h.span(api, s)
			h.chunk(api, &pb.PSpanChunk{
				Version: 1, TransactionId: s.TransactionId, SpanId: s.SpanId, KeyTime: t0,
				LocalAsyncId: &pb.PLocalAsyncId{AsyncId: 1, Sequence: 0},
				SpanEvent:    []*pb.PSpanEvent{ev(0, 1, 0, 0, 5000, 1), ev(1, 1, 0, 0, 5000, 1)},
			})
			n += 5
		}
	}
	h.due()
	if err := h.asm.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkRows(t, h.sink.points(), n)
}

func putAPI(t *testing.T, h *harness, s *meta.Sender, api string) {
	t.Helper()
	if err := h.meta.PutAPI(s.AgentKey, &pb.PApiMetaData{ApiId: 1, ApiInfo: api}); err != nil {
		t.Fatal(err)
	}
}
