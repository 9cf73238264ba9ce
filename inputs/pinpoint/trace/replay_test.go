package trace

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/point"
)

// feedRecording decodes a recording in seq order, stores its metadata in h.meta and feeds
// its spans and chunks to the assembler with the sender of their call, moving the fake
// clock along the recording's t_ms.
func feedRecording(t testing.TB, h *harness, rec *replay.Recording) {
	t.Helper()
	senders := map[string]*meta.Sender{}
	base := h.clock.Now()
	ctx := context.Background()
	for _, ev := range rec.Events {
		h.clock.Set(base.Add(time.Duration(ev.TMs) * time.Millisecond))
		if ev.Event == "open" {
			senders[ev.Stream] = senderFromHeaders(t, ev.Headers)
			continue
		}
		if ev.Event != "msg" {
			continue
		}
		s := senders[ev.Stream]
		raw, err := ev.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		feedMessage(t, h, ctx, s, ev.Method, raw)
		h.due()
	}
}

func senderFromHeaders(t testing.TB, hd map[string]string) *meta.Sender {
	start, err := strconv.ParseInt(hd["starttime"], 10, 64)
	if err != nil {
		t.Fatalf("starttime header: %v", err)
	}
	st, _ := strconv.ParseInt(hd["servicetype"], 10, 32)
	return &meta.Sender{
		AgentKey:  meta.AgentKey{AgentID: hd["agentid"], StartTime: start},
		AgentName: hd["agentname"], ApplicationName: hd["applicationname"], ServiceType: int32(st),
	}
}

func feedMessage(t testing.TB, h *harness, ctx context.Context, s *meta.Sender, method string, raw []byte) {
	t.Helper()
	unmarshal := func(m proto.Message) {
		if err := proto.Unmarshal(raw, m); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
	}
	var err error
	switch method {
	case "/v1.Agent/RequestAgentInfo":
		m := &pb.PAgentInfo{}
		unmarshal(m)
		err = h.meta.PutAgent(*s, m)
	case "/v1.Metadata/RequestApiMetaData":
		m := &pb.PApiMetaData{}
		unmarshal(m)
		err = h.meta.PutAPI(s.AgentKey, m)
	case "/v1.Metadata/RequestSqlMetaData":
		m := &pb.PSqlMetaData{}
		unmarshal(m)
		err = h.meta.PutSQL(s.AgentKey, m)
	case "/v1.Metadata/RequestSqlUidMetaData":
		m := &pb.PSqlUidMetaData{}
		unmarshal(m)
		err = h.meta.PutSQLUID(s.AgentKey, m)
	case "/v1.Metadata/RequestStringMetaData":
		m := &pb.PStringMetaData{}
		unmarshal(m)
		err = h.meta.PutString(s.AgentKey, m)
	case "/v1.Metadata/RequestExceptionMetaData":
		m := &pb.PExceptionMetaData{}
		unmarshal(m)
		err = h.meta.PutExceptions(s.AgentKey, m)
	case "/v1.Span/SendSpanBatch":
		m := &pb.PSpanMessageBatch{}
		unmarshal(m)
		for _, sm := range m.GetSpan() {
			err = feedSpanMessage(h, ctx, s, sm)
			if err != nil {
				break
			}
		}
	case "/v1.Span/SendSpan":
		m := &pb.PSpanMessage{}
		unmarshal(m)
		err = feedSpanMessage(h, ctx, s, m)
	}
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
}

func feedSpanMessage(h *harness, ctx context.Context, s *meta.Sender, m *pb.PSpanMessage) error {
	if sp := m.GetSpan(); sp != nil {
		return h.asm.ConsumeSpan(ctx, s, sp)
	}
	if c := m.GetSpanChunk(); c != nil {
		return h.asm.ConsumeChunk(ctx, s, c)
	}
	return nil
}

// TestReplayMatchesManifest feeds every recording (metadata and spans in recorded order,
// each attributed to the sender of its call, the clock following t_ms) and checks the
// output against the facts of the recording's manifest.
func TestReplayMatchesManifest(t *testing.T) {
	recs, err := replay.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		t.Run(rec.Name, func(t *testing.T) {
			h := newHarness(t)
			feedRecording(t, h, rec)
			if err := h.asm.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkManifest(t, rec.Manifest, h.sink.points(), h.asm.Stats())
		})
	}
}

// replayFacts are what the output says about the manifest's numbers.
type replayFacts struct {
	entries, events, errorEntries int
	linkedCallees                 int // entry spans whose parent_id is an exit span of their trace
	asyncRoots                    int // async work tops whose parent is their spawning event
}

func checkManifest(t *testing.T, m replay.Manifest, pts []*point.Point, st Stats) {
	t.Helper()
	f := collectFacts(t, pts)
	want := func(name string, got int, path string) {
		t.Helper()
		if w := m.Int(path); int64(got) != w {
			t.Errorf("%s: got %d, manifest %s = %d", name, got, path, w)
		}
	}
	want("entry spans", f.entries, "messages.PSpan")
	want("event spans", f.events, "traces.span_events.total")
	want("callee entries linked to their caller's exit span", f.linkedCallees, "traces.parent_child_links.matching_same_transaction_and_parent")
	want("async work under its spawning event", f.asyncRoots, "traces.async.chunks_matching_asyncEvent_same_transaction_span")
	want("error entry spans", f.errorEntries, "traces.error_spans")
	for kind, n := range st.Unresolved {
		if n != 0 {
			t.Errorf("%d unresolved %s ids (placeholders)", n, kind)
		}
	}
	if st.PartialSpans != 0 || st.PendingSpans != 0 || st.Held != 0 {
		t.Errorf("partial, pending or held spans left: %+v", st)
	}
	// Where metadata came after spans that use it, those spans must have waited for it.
	late := m.Int("traces.api_ids.events_resolved_same_agent") - m.Int("traces.api_ids.events_resolved_metadata_arrived_before")
	if late > 0 && st.HeldForMetadata == 0 {
		t.Errorf("%d events' api metadata came after them, yet nothing was held", late)
	}
}

func collectFacts(t *testing.T, pts []*point.Point) replayFacts {
	t.Helper()
	type spanRef struct {
		p     *point.Point
		async bool // spawned async work
		exit  bool
	}
	traces := map[string]map[string]spanRef{}
	var f replayFacts
	for _, p := range pts {
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		tr, id := fieldString(p, "trace_id"), fieldString(p, "span_id")
		if traces[tr] == nil {
			traces[tr] = map[string]spanRef{}
		}
		if _, dup := traces[tr][id]; dup {
			t.Errorf("trace %s: span_id %s twice", tr, id)
		}
		spanType, _ := p.Tag("span_type")
		traces[tr][id] = spanRef{p: p, async: strings.Contains(fieldString(p, "message"), `"asyncEvent":`), exit: spanType == "exit"}
		if spanType == "entry" {
			f.entries++
			if st, _ := p.Tag("status"); st == "error" {
				f.errorEntries++
			}
		} else {
			f.events++
		}
	}
	for tr, spans := range traces {
		for id, s := range spans {
			parent := fieldString(s.p, "parent_id")
			if parent == "0" {
				continue
			}
			ps, ok := spans[parent]
			if !ok {
				t.Errorf("trace %s: span %s has parent %s, which is not in the trace", tr, id, parent)
				continue
			}
			spanType, _ := s.p.Tag("span_type")
			serviceType, _ := s.p.Tag("service_type")
			switch {
			case spanType == "entry" && ps.exit:
				f.linkedCallees++
			case serviceType == "ASYNC" && ps.async:
				f.asyncRoots++
			}
			checkWithin(t, tr, s.p, ps.p, serviceType == "ASYNC")
		}
	}
	return f
}

// checkWithin checks that a child lies in its parent's time range, with 1 ms tolerance
// for Pinpoint's millisecond rounding. Async work may outlive the event that started it
// (the goroutine goes on), so only its start is checked.
func checkWithin(t *testing.T, tr string, child, parent *point.Point, async bool) {
	t.Helper()
	const tolerance = 1000 // µs
	cs, ce := fieldInt(child, "start"), fieldInt(child, "start")+fieldInt(child, "duration")
	ps, pe := fieldInt(parent, "start"), fieldInt(parent, "start")+fieldInt(parent, "duration")
	if cs < ps-tolerance || (!async && ce > pe+tolerance) {
		t.Errorf("trace %s: span %s [%d, %d] outside its parent %s [%d, %d]", tr,
			fieldString(child, "span_id"), cs, ce, fieldString(parent, "span_id"), ps, pe)
	}
}

// TestReplayOrderDoesNotMatter feeds each recording's metadata first and then its spans
// and chunks in a random order: the output must be the same set of lines as in the
// recorded order (ids are deterministic, chunks are linked whatever comes first).
func TestReplayOrderDoesNotMatter(t *testing.T) {
	recs, err := replay.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		t.Run(rec.Name, func(t *testing.T) {
			inOrder := newHarness(t)
			feedRecording(t, inOrder, rec)
			if err := inOrder.asm.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			shuffled := newHarness(t)
			feedShuffled(t, shuffled, rec, rand.New(rand.NewPCG(1, 2)))
			if err := shuffled.asm.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			a, b := sortedLines(t, inOrder.sink.points()), sortedLines(t, shuffled.sink.points())
			if len(a) != len(b) {
				t.Fatalf("%d lines in order, %d shuffled", len(a), len(b))
			}
			for i := range a {
				if a[i] != b[i] {
					t.Fatalf("line %d differs:\n%s\n%s", i, a[i], b[i])
				}
			}
			if st := shuffled.asm.Stats(); st.LateChunks == 0 {
				t.Errorf("the shuffle put no chunk after its span: %+v", st)
			}
		})
	}
}

// feedShuffled stores all metadata first, then feeds every span and chunk in random order.
func feedShuffled(t *testing.T, h *harness, rec *replay.Recording, r *rand.Rand) {
	t.Helper()
	senders := map[string]*meta.Sender{}
	type msg struct {
		s *meta.Sender
		m *pb.PSpanMessage
	}
	var spans []msg
	ctx := context.Background()
	for _, ev := range rec.Events {
		if ev.Event == "open" {
			senders[ev.Stream] = senderFromHeaders(t, ev.Headers)
			continue
		}
		if ev.Event != "msg" {
			continue
		}
		raw, err := ev.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		s := senders[ev.Stream]
		switch ev.Method {
		case "/v1.Span/SendSpanBatch":
			b := &pb.PSpanMessageBatch{}
			if err := proto.Unmarshal(raw, b); err != nil {
				t.Fatal(err)
			}
			for _, m := range b.GetSpan() {
				spans = append(spans, msg{s, m})
			}
		case "/v1.Span/SendSpan":
			m := &pb.PSpanMessage{}
			if err := proto.Unmarshal(raw, m); err != nil {
				t.Fatal(err)
			}
			spans = append(spans, msg{s, m})
		default:
			feedMessage(t, h, ctx, s, ev.Method, raw)
		}
	}
	r.Shuffle(len(spans), func(i, j int) { spans[i], spans[j] = spans[j], spans[i] })
	for _, m := range spans {
		if err := feedSpanMessage(h, ctx, m.s, m.m); err != nil {
			t.Fatal(err)
		}
	}
}

func sortedLines(t *testing.T, pts []*point.Point) []string {
	t.Helper()
	out := make([]string, 0, len(pts))
	for _, p := range pts {
		l, err := pointLine(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}
