package trace

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/point"
)

// The property test generates random call trees, encodes them the way agents do (delta
// start times, depth compression, sync chunks of 20 events in the order events END with
// the rest in the final span, async work as chunks), delivers the messages in random
// order, and checks that the rebuilt tree is the original: every event's parent, start
// and duration, every entry span's links.

// gNode is one traced process's span of a generated transaction.
type gNode struct {
	sender       meta.Sender
	spanID       int64
	parentSpanID int64
	start        int64
	elapsed      int32
	works        []*gWork // [0] the span's own events; the rest async work
}

// gWork is the events of the span itself (asyncID 0) or of one async work.
type gWork struct {
	asyncID, asyncSeq int32
	events            []*gEvent // by sequence (= start order)
	// seqChunks: the work is split into chunks by sequence (20 each) and they are
	// delivered in order, as an agent streaming long async work would; otherwise async
	// work has at most 20 events (one chunk).
	seqChunks bool
}

type gEvent struct {
	seq, depth int32
	start      int64
	dur        int32
	parent     *gEvent
	next       int64 // callee span id
	spawn      int32 // async id started here
	id         int64 // expected span_id
}

func (e *gEvent) end() int64 { return e.start + int64(e.dur) }

type genState struct {
	r        *rand.Rand
	asyncSeq int32 // per-agent async id counter
	goStyle  bool
	// what was generated, so a test can check the generator covers the hard cases
	nested, multiChunk int
}

// genTree builds the events of one work under [lo, hi] starting at depth.
func (g *genState) genTree(w *gWork, parent *gEvent, depth int32, lo, hi int64, budget *int, maxDepth int32) {
	if depth > maxDepth || *budget <= 0 {
		return
	}
	n := g.r.IntN(5)
	if depth == 1 && parent == nil {
		n = 1 + g.r.IntN(3)
	}
	cursor := lo
	for range n {
		if *budget <= 0 || cursor > hi {
			return
		}
		*budget--
		s := cursor + int64(g.r.IntN(3))
		if s > hi {
			s = hi
		}
		e := s + int64(g.r.IntN(int(hi-s)+1))
		ev := &gEvent{seq: int32(len(w.events)), depth: depth, start: s, dur: int32(e - s), parent: parent}
		w.events = append(w.events, ev)
		g.genTree(w, ev, depth+1, s, e, budget, maxDepth)
		cursor = e
	}
}

func (g *genState) genNode(sender meta.Sender, spanID, parentSpanID, start int64) *gNode {
	nd := &gNode{sender: sender, spanID: spanID, parentSpanID: parentSpanID, start: start}
	span := &gWork{}
	budget := 1 + g.r.IntN(130)
	g.genTree(span, nil, 1, start, start+int64(5+g.r.IntN(300)), &budget, int32(1+g.r.IntN(7)))
	nd.works = append(nd.works, span)
	end := start
	for _, e := range span.events {
		end = max(end, e.end())
	}
	nd.elapsed = int32(end - start)
	g.addAsync(nd, span, 0)
	return nd
}

// addAsync lets some events of w start async work, nested up to three levels.
func (g *genState) addAsync(nd *gNode, w *gWork, level int) {
	if level > 2 {
		return
	}
	for _, ev := range w.events {
		if g.r.IntN(25) != 0 {
			continue
		}
		g.asyncSeq++
		ev.spawn = g.asyncSeq
		aw := &gWork{asyncID: g.asyncSeq, asyncSeq: 1, seqChunks: g.r.IntN(3) == 0}
		limit := 20
		if aw.seqChunks {
			limit = 60
		}
		budget := limit - 1
		// The async root may outlive its spawner (the goroutine goes on).
		s := ev.start + int64(g.r.IntN(2))
		root := &gEvent{seq: 0, depth: 1, start: s, dur: int32(1 + g.r.IntN(200))}
		aw.events = append(aw.events, root)
		g.genTree(aw, root, 2, root.start, root.end(), &budget, int32(2+g.r.IntN(5)))
		nd.works = append(nd.works, aw)
		if level > 0 {
			g.nested++
		}
		if len(aw.events) > 20 {
			g.multiChunk++
		}
		g.addAsync(nd, aw, level+1)
	}
}

// assignIDs computes the ids every event must get (docs/SCHEMA.md rules).
func (nd *gNode) assignIDs() {
	for _, w := range nd.works {
		for _, e := range w.events {
			switch {
			case e.next != 0:
				e.id = nextCallID(nd.spanID, e.next)
			case e.spawn != 0:
				e.id = asyncSpawnID(nd.spanID, e.spawn)
			case w.asyncID != 0:
				e.id = asyncEventID(nd.spanID, w.asyncID, w.asyncSeq, e.seq)
			default:
				e.id = syncEventID(nd.spanID, e.seq)
			}
		}
	}
}

func (nd *gNode) expectedParent(w *gWork, e *gEvent) int64 {
	switch {
	case e.parent != nil:
		return e.parent.id
	case w.asyncID != 0:
		return asyncSpawnID(nd.spanID, w.asyncID)
	default:
		return nd.spanID
	}
}

// delivery is one message to feed, with an ordering constraint group.
type delivery struct {
	sender *meta.Sender
	span   *pb.PSpan
	chunk  *pb.PSpanChunk
	group  string // messages of one group keep their relative order
}

func txOf(nd *gNode, root meta.AgentKey, seq int64, omitAgent bool) *pb.PTransactionId {
	tx := &pb.PTransactionId{AgentId: root.AgentID, AgentStartTime: root.StartTime, Sequence: seq}
	if omitAgent {
		tx.AgentId = "" // the root agent leaves its own id out
	}
	return tx
}

// encodeNode turns a node into the messages an agent sends.
func (g *genState) encodeNode(nd *gNode, tx *pb.PTransactionId) []delivery {
	var out []delivery
	span := &pb.PSpan{
		Version: 1, TransactionId: tx, SpanId: nd.spanID, ParentSpanId: nd.parentSpanID,
		StartTime: nd.start, Elapsed: nd.elapsed, ServiceType: 1010,
	}
	groups := endOrderGroups(nd.works[0].events)
	for i, grp := range groups {
		if i == len(groups)-1 {
			span.SpanEvent = g.encodeEvents(grp, nd.start)
			break
		}
		keyTime := minStart(grp) - int64(g.r.IntN(2))
		out = append(out, delivery{sender: &nd.sender, chunk: &pb.PSpanChunk{
			Version: 1, TransactionId: tx, SpanId: nd.spanID, KeyTime: keyTime,
			SpanEvent: g.encodeEvents(grp, keyTime),
		}})
	}
	out = append(out, delivery{sender: &nd.sender, span: span})
	for _, w := range nd.works[1:] {
		grps := [][]*gEvent{w.events}
		if w.seqChunks {
			grps = seqGroups(w.events)
		}
		for _, grp := range grps {
			keyTime := minStart(grp)
			out = append(out, delivery{sender: &nd.sender, group: fmt.Sprint(nd.spanID, "/", w.asyncID), chunk: &pb.PSpanChunk{
				Version: 1, TransactionId: tx, SpanId: nd.spanID, KeyTime: keyTime,
				LocalAsyncId: &pb.PLocalAsyncId{AsyncId: w.asyncID, Sequence: w.asyncSeq},
				SpanEvent:    g.encodeEvents(grp, keyTime),
			}})
		}
	}
	return out
}

// endOrderGroups splits events the way agents buffer them: in the order they end (a
// child before its parent), 20 to a chunk; the last group goes in the span.
func endOrderGroups(evs []*gEvent) [][]*gEvent {
	order := slices.Clone(evs)
	slices.SortStableFunc(order, func(a, b *gEvent) int {
		if c := cmp.Compare(a.end(), b.end()); c != 0 {
			return c
		}
		return cmp.Compare(b.depth, a.depth)
	})
	var groups [][]*gEvent
	for len(order) > 20 {
		groups = append(groups, order[:20])
		order = order[20:]
	}
	return append(groups, order)
}

func seqGroups(evs []*gEvent) [][]*gEvent {
	var groups [][]*gEvent
	for len(evs) > 20 {
		groups = append(groups, evs[:20])
		evs = evs[20:]
	}
	return append(groups, evs)
}

func minStart(evs []*gEvent) int64 {
	m := evs[0].start
	for _, e := range evs {
		m = min(m, e.start)
	}
	return m
}

// encodeEvents writes one message's events: startElapsed as deltas in sequence order from
// base; Java-style depth compression (0 = same as the previous event), or Go-style
// explicit depths with the events listed in the order they ended.
func (g *genState) encodeEvents(grp []*gEvent, base int64) []*pb.PSpanEvent {
	bySeq := slices.Clone(grp)
	slices.SortFunc(bySeq, func(a, b *gEvent) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]*pb.PSpanEvent, len(bySeq))
	prevStart, prevDepth := base, int32(-1)
	for i, e := range bySeq {
		pe := &pb.PSpanEvent{
			Sequence: e.seq, Depth: e.depth, StartElapsed: int32(e.start - prevStart),
			EndElapsed: e.dur, ServiceType: 5000, AsyncEvent: e.spawn,
		}
		if !g.goStyle && e.depth == prevDepth {
			pe.Depth = 0
		}
		if e.next != 0 {
			pe.ServiceType = 9052
			pe.NextEvent = &pb.PNextEvent{Field: &pb.PNextEvent_MessageEvent{MessageEvent: &pb.PMessageEvent{
				NextSpanId: e.next, DestinationId: "callee:8080",
			}}}
		}
		out[i] = pe
		prevStart, prevDepth = e.start, e.depth
	}
	if g.goStyle {
		order := make(map[*pb.PSpanEvent]int, len(grp))
		for i, e := range grp {
			order[out[slices.Index(bySeq, e)]] = i
		}
		slices.SortFunc(out, func(a, b *pb.PSpanEvent) int { return cmp.Compare(order[a], order[b]) })
	}
	return out
}

// shuffleKeepingGroups shuffles deliveries but keeps each group's relative order.
func shuffleKeepingGroups(r *rand.Rand, ds []delivery) {
	r.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
	pos := map[string][]int{}
	for i, d := range ds {
		if d.group != "" {
			pos[d.group] = append(pos[d.group], i)
		}
	}
	for _, idx := range pos {
		grp := make([]delivery, len(idx))
		for k, i := range idx {
			grp[k] = ds[i]
		}
		slices.SortStableFunc(grp, func(a, b delivery) int {
			return cmp.Compare(a.chunk.GetSpanEvent()[0].GetSequence(), b.chunk.GetSpanEvent()[0].GetSequence())
		})
		for k, i := range idx {
			ds[i] = grp[k]
		}
	}
}

// genTransaction builds 1-3 nodes: a root and callees of some of its exit events.
func (g *genState) genTransaction(senders []meta.Sender, txSeq int64) ([]*gNode, []delivery) {
	root := g.genNode(senders[0], int64(g.r.Uint64()), -1, 1795417120000+int64(g.r.IntN(1000)))
	nodes := []*gNode{root}
	for i := 1; i < len(senders); i++ {
		caller := nodes[g.r.IntN(len(nodes))]
		callerEv := caller.works[0].events[g.r.IntN(len(caller.works[0].events))]
		if callerEv.next != 0 || callerEv.spawn != 0 {
			continue
		}
		callerEv.next = int64(g.r.Uint64())
		nodes = append(nodes, g.genNode(senders[i], callerEv.next, caller.spanID, callerEv.start))
	}
	var ds []delivery
	for _, nd := range nodes {
		nd.assignIDs()
		tx := txOf(nd, senders[0].AgentKey, txSeq, nd == root && g.r.IntN(2) == 0)
		ds = append(ds, g.encodeNode(nd, tx)...)
	}
	shuffleKeepingGroups(g.r, ds)
	return nodes, ds
}

func TestPropertyRebuildsRandomTrees(t *testing.T) {
	cases := 3000
	if testing.Short() {
		cases = 300
	}
	r := rand.New(rand.NewPCG(20261123, 4))
	senders := []meta.Sender{
		{AgentKey: meta.AgentKey{AgentID: "java-a", StartTime: 1795417000001}, AgentName: "java-a", ApplicationName: "a", ServiceType: 1010},
		{AgentKey: meta.AgentKey{AgentID: "go-b", StartTime: 1795417000002}, AgentName: "go-b", ApplicationName: "b", ServiceType: 1800},
		{AgentKey: meta.AgentKey{AgentID: "java-c", StartTime: 1795417000003}, AgentName: "java-c", ApplicationName: "c", ServiceType: 1010},
	}
	var h *harness
	for i := range cases {
		if i%200 == 0 {
			h = newHarness(t, func(o *Options) { o.DelMessage = true; o.MetadataWait = -1 })
		}
		g := &genState{r: r, goStyle: r.IntN(2) == 0}
		nodes, ds := g.genTransaction(senders[:1+r.IntN(3)], int64(i+1))
		before := len(h.sink.points())
		for _, d := range ds {
			if d.span != nil {
				h.span(d.sender, d.span)
			} else {
				h.chunk(d.sender, d.chunk)
			}
		}
		if st := h.asm.Stats(); st.PendingSpans != 0 || st.PartialSpans != 0 {
			t.Fatalf("case %d: chunks left waiting after every message arrived: %+v", i, st)
		}
		got := h.sink.points()[before:]
		if err := checkRebuilt(nodes, got); err != nil {
			t.Fatalf("case %d (goStyle=%v, %d messages): %v", i, g.goStyle, len(ds), err)
		}
		// Nothing more may come out once the waits run out.
		h.clock.Advance(3 * DefaultChunkWait)
		h.due()
		if n := len(h.sink.points()); n != before+len(got) {
			t.Fatalf("case %d: %d points emitted after the waits ran out", i, n-before-len(got))
		}
	}
}

// checkRebuilt compares the emitted points of one transaction with the generated tree.
func checkRebuilt(nodes []*gNode, pts []*point.Point) error {
	byID := map[string]*point.Point{}
	for _, p := range pts {
		id := fieldString(p, "span_id")
		if _, dup := byID[id]; dup {
			return fmt.Errorf("span_id %s emitted twice", id)
		}
		byID[id] = p
	}
	want := 0
	for _, nd := range nodes {
		want++
		entry := byID[strconv.FormatInt(nd.spanID, 10)]
		if entry == nil {
			return fmt.Errorf("no entry span %d", nd.spanID)
		}
		if err := expectSpan(entry, strconv.FormatInt(entryParentID(nd.spanID, nd.parentSpanID), 10), nd.start, nd.elapsed); err != nil {
			return fmt.Errorf("entry %d: %w", nd.spanID, err)
		}
		for _, w := range nd.works {
			for _, e := range w.events {
				want++
				p := byID[strconv.FormatInt(e.id, 10)]
				if p == nil {
					return fmt.Errorf("span %d work %d: event seq %d (id %d) not emitted", nd.spanID, w.asyncID, e.seq, e.id)
				}
				if err := expectSpan(p, strconv.FormatInt(nd.expectedParent(w, e), 10), e.start, e.dur); err != nil {
					return fmt.Errorf("span %d work %d event seq %d depth %d: %w", nd.spanID, w.asyncID, e.seq, e.depth, err)
				}
			}
		}
	}
	if len(pts) != want {
		return fmt.Errorf("%d points, want %d", len(pts), want)
	}
	return nil
}

func expectSpan(p *point.Point, parent string, startMs int64, durMs int32) error {
	if got := fieldString(p, "parent_id"); got != parent {
		return fmt.Errorf("parent_id %s, want %s", got, parent)
	}
	if got := fieldInt(p, "start"); got != startMs*1000 {
		return fmt.Errorf("start %d, want %d", got, startMs*1000)
	}
	if got := fieldInt(p, "duration"); got != int64(durMs)*1000 {
		return fmt.Errorf("duration %d, want %d", got, int64(durMs)*1000)
	}
	if p.Time/1_000_000 != startMs { // inside its start millisecond (rowtime.go)
		return fmt.Errorf("time %d, want within millisecond %d", p.Time, startMs)
	}
	return p.Validate()
}

func fieldString(p *point.Point, k string) string {
	f, _ := p.Field(k)
	return f.StringValue()
}

func fieldInt(p *point.Point, k string) int64 {
	f, _ := p.Field(k)
	return f.IntValue()
}

// The generator must produce what it claims, or the property proves little: chunks that
// arrive after their span, deferred chunks, nested and multi-chunk async work.
func TestPropertyGeneratorCoversTheHardCases(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	senders := []meta.Sender{{AgentKey: meta.AgentKey{AgentID: "a", StartTime: 1}, AgentName: "a", ApplicationName: "a"}}
	h := newHarness(t, func(o *Options) { o.DelMessage = true; o.MetadataWait = -1 })
	nested, multiChunk := 0, 0
	for i := range 400 {
		g := &genState{r: r, goStyle: i%2 == 0}
		_, ds := g.genTransaction(senders, int64(i+1))
		nested, multiChunk = nested+g.nested, multiChunk+g.multiChunk
		for _, d := range ds {
			if d.span != nil {
				h.span(d.sender, d.span)
			} else {
				h.chunk(d.sender, d.chunk)
			}
		}
	}
	st := h.asm.Stats()
	t.Logf("nested async %d, multi-chunk async %d, %+v", nested, multiChunk, st)
	if st.LateChunks == 0 || st.DeferredChunks == 0 || st.AsyncChunks == 0 || nested == 0 || multiChunk == 0 {
		t.Fatalf("generator misses hard cases: nested %d, multi-chunk %d, %+v", nested, multiChunk, st)
	}
	if st.Chunks-st.AsyncChunks < 200 {
		t.Fatalf("only %d sync chunks", st.Chunks-st.AsyncChunks)
	}
}
