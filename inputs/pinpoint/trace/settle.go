package trace

import (
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// settleRequest is one reason to look at a span's state: its PSpan arrived, one of its sync
// chunks arrived, or its pending chunks must go out now (force: ChunkWait ran out or a
// cap was hit; then only id is known and the rest comes from the store).
type settleRequest struct {
	key    spanKey
	id     string // key.id()
	sender meta.Sender
	span   *pb.PSpan
	chunk  *pb.PSpanChunk
	force  bool
}

// storedChunk is a pending chunk read back from the store.
type storedChunk struct {
	key []byte
	pendingRecord
}

// settle merges everything known of one span under its lock and returns what to emit,
// and the spans a cap pushed out of the pending index (to emit early).
//
// Known are: the PSpan (when it is what arrived), or else the skeleton of the span if it
// was emitted before; the sync chunks waiting in the store; the chunk that arrived. A
// chunk whose span is unknown waits in the store. Otherwise all events are merged in
// sequence order and linked; a chunk with an event whose parent may be in a chunk not
// received yet waits too (unless forced), and the rest is emitted.
func (a *Assembler) settle(r settleRequest) (*unit, []string) {
	if r.id == "" {
		r.id = r.key.id()
	}
	mu := a.stripe(r.id)
	mu.Lock()
	defer mu.Unlock()

	var skeleton []event
	haveSkeleton := false
	if r.span == nil {
		skeleton, haveSkeleton = a.loadSkeleton(skeletonKey(r.id))
		if !haveSkeleton && !r.force {
			return a.park(r)
		}
	}
	var stored []storedChunk
	if r.force || a.pending.has(r.id) || a.shared != nil { // another replica may have parked some
		stored = a.loadPending(r.id)
	}
	if r.force {
		if len(stored) == 0 {
			return nil, nil // the span took them meanwhile
		}
		r.sender = stored[0].sender
		r.key = newSpanKey(&r.sender, stored[0].chunk.GetTransactionId(), stored[0].chunk.GetSpanId())
	}
	m := merge{span: r.span, skeleton: skeleton, stored: stored, chunk: r.chunk}
	m.run(r.key.spanID, r.span == nil && !haveSkeleton, r.force)
	a.c.duplicateEvents.Add(uint64(m.dropped))
	evict := a.keepWaiting(r, &m)
	if r.span != nil || haveSkeleton {
		a.saveSkeleton(skeletonKey(r.id), m.events, m.emitted)
	}
	return a.mergedUnit(r, &m, haveSkeleton), evict
}

// merge is the work of one settle: the messages, their merged events, and which chunks
// can be emitted now.
type merge struct {
	span     *pb.PSpan
	skeleton []event
	stored   []storedChunk
	chunk    *pb.PSpanChunk // the one that arrived, last (index len(stored))
	events   []event
	ready    []bool // per chunk index
	dropped  int
}

func (m *merge) chunkAt(i int) *pb.PSpanChunk {
	if i < len(m.stored) {
		return m.stored[i].chunk
	}
	return m.chunk
}

func (m *merge) numChunks() int {
	if m.chunk != nil {
		return len(m.stored) + 1
	}
	return len(m.stored)
}

func (m *merge) run(spanID int64, partial, force bool) {
	ids := idScheme{spanID: spanID}
	n := len(m.skeleton) + len(m.span.GetSpanEvent())
	for i := range m.numChunks() {
		n += len(m.chunkAt(i).GetSpanEvent())
	}
	evs := append(make([]event, 0, n), m.skeleton...)
	if m.span != nil {
		evs = appendMessage(evs, m.span.GetSpanEvent(), m.span.GetStartTime(), msgSpan, ids)
	}
	for i := range m.numChunks() {
		c := m.chunkAt(i)
		evs = appendMessage(evs, c.GetSpanEvent(), c.GetKeyTime(), int32(i), ids)
	}
	m.events, m.dropped = mergeEvents(evs)
	link(m.events, spanID, partial)
	m.ready = make([]bool, m.numChunks())
	for i := range m.ready {
		m.ready[i] = true
	}
	if force {
		return
	}
	for i := range m.events {
		if e := &m.events[i]; e.uncertain && e.msg >= 0 {
			m.ready[e.msg] = false
		}
	}
}

// emitted says whether an event is (or was) emitted, so it belongs in the skeleton.
func (m *merge) emitted(e *event) bool { return e.msg < 0 || m.ready[e.msg] }

// keepWaiting brings the store and the index up to date after a merge: emitted stored
// chunks are deleted, the chunk that arrived waits if it is not ready.
func (a *Assembler) keepWaiting(r settleRequest, m *merge) []string {
	left, bytes, deadline := 0, int64(0), int64(math.MaxInt64)
	for i, sc := range m.stored {
		if m.ready[i] {
			if !a.claimStored(sc.key) {
				m.ready[i] = false // another replica took it first and emits it
			}
			continue
		}
		left++
		bytes += sc.size
		deadline = min(deadline, sc.deadline)
		if r.span != nil {
			a.c.deferredChunks.Add(1)
		}
	}
	if m.chunk != nil && !m.ready[len(m.stored)] {
		d := a.opts.Now().Add(a.opts.ChunkWait).UnixMilli()
		if size, ok := a.storeChunk(r.id, &r.sender, m.chunk, d); ok {
			a.c.deferredChunks.Add(1)
			left++
			bytes += size
			deadline = min(deadline, d)
		} else {
			m.ready[len(m.stored)] = true // the store refused it: emit it now, best effort
		}
	}
	if left == 0 && len(m.stored) == 0 {
		return nil
	}
	return a.pending.set(r.id, left, bytes, deadline)
}

// mergedUnit collects the events to emit now. It filters m.events in place, so it runs
// after saveSkeleton, which needs them all.
func (a *Assembler) mergedUnit(r settleRequest, m *merge, haveSkeleton bool) *unit {
	u := &unit{sender: r.sender, key: r.key, span: r.span, partial: r.span == nil && !haveSkeleton}
	evs := m.events[:0]
	for _, e := range m.events {
		if e.ev != nil && m.emitted(&e) {
			evs = append(evs, e)
		}
	}
	u.events = evs
	if r.span == nil {
		ready := 0
		for _, ok := range m.ready {
			if ok {
				ready++
			}
		}
		if u.partial {
			if ready > 0 {
				a.c.partialSpans.Add(1)
			}
		} else {
			a.c.lateChunks.Add(uint64(ready))
		}
		if len(u.events) == 0 {
			return nil
		}
	}
	return u
}

// park stores a chunk whose span is unknown yet. If the store refuses it, the chunk is
// emitted at once as a partial span rather than lost.
func (a *Assembler) park(r settleRequest) (*unit, []string) {
	deadline := a.opts.Now().Add(a.opts.ChunkWait).UnixMilli()
	size, ok := a.storeChunk(r.id, &r.sender, r.chunk, deadline)
	if !ok {
		m := merge{chunk: r.chunk}
		m.run(r.key.spanID, true, true)
		return a.mergedUnit(r, &m, false), nil
	}
	return nil, a.pending.add(r.id, deadline, size)
}

// storeChunk writes a pending chunk record and returns its size in the store.
func (a *Assembler) storeChunk(id string, s *meta.Sender, c *pb.PSpanChunk, deadline int64) (int64, bool) {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		a.c.storeErrors.Add(1)
		return 0, false
	}
	minSeq := int32(math.MaxInt32)
	for _, ev := range c.GetSpanEvent() {
		minSeq = min(minSeq, ev.GetSequence())
	}
	key := pendingKey(id, minSeq, raw)
	val := encodePendingRecord(deadline, s, raw)
	if err := a.opts.Store.Set(key, val, a.opts.PendingTTL); err != nil {
		a.c.storeErrors.Add(1)
		return 0, false
	}
	return int64(len(key) + len(val)), true
}

func (a *Assembler) loadPending(id string) []storedChunk {
	agent, ok := agentOfSpanID(id)
	if !ok {
		return nil
	}
	var out []storedChunk
	err := a.opts.Store.Scan(pendingPrefix(id), func(key, val []byte) error {
		if len(key) != 1+len(id)+chunkSuffixLen {
			return nil // a longer span key that shares the prefix
		}
		rec, err := decodePendingRecord(val, agent)
		if err != nil {
			a.c.storeErrors.Add(1)
			return nil
		}
		rec.size = int64(len(key) + len(val))
		out = append(out, storedChunk{key: append([]byte(nil), key...), pendingRecord: rec})
		return nil
	})
	if err != nil {
		a.c.storeErrors.Add(1)
	}
	return out
}

func (a *Assembler) deleteStored(key []byte) {
	if err := a.opts.Store.Delete(key); err != nil {
		a.c.storeErrors.Add(1)
	}
}

func (a *Assembler) loadSkeleton(key string) ([]event, bool) {
	raw, ok := a.skeletons.get(key, a.opts.Now().UnixMilli())
	if !ok {
		if raw, ok = a.loadSharedSkeleton(key); !ok {
			return nil, false
		}
	}
	evs, err := decodeSkeleton(nil, raw)
	if err != nil {
		a.c.storeErrors.Add(1)
		return nil, false
	}
	return evs, true
}

// saveSkeleton remembers the emitted events of a span for chunks that come after it, for
// twice ChunkWait, so a chunk deferred for ChunkWait still finds it.
func (a *Assembler) saveSkeleton(key string, evs []event, keep func(*event) bool) {
	n := 0
	for i := range evs {
		if keep(&evs[i]) {
			n++
		}
	}
	if n > a.opts.MaxSkeletonEvents {
		return
	}
	data, now := encodeSkeleton(evs, keep), a.opts.Now().UnixMilli()
	a.skeletons.put(key, data, now)
	a.shareSkeleton(key, data, now)
}

// asyncUnit places one chunk of async work (asyncId A, sequence s) under the event that
// spawned it: the work's depth-1 events get the spawner's id h(spanId, "async", A), which
// is computable without the span, so the chunk is emitted at once whether it comes before
// or after its span. Work split over several chunks links an event whose parent is in an
// earlier chunk through the skeleton of the work; without one it hangs under the spawner.
func (a *Assembler) asyncUnit(key spanKey, s *meta.Sender, c *pb.PSpanChunk) *unit {
	ids := idScheme{spanID: key.spanID, async: true, asyncID: key.asyncID, asyncSeq: key.asyncSeq}
	root := asyncSpawnID(key.spanID, key.asyncID)
	evs, dropped := mergeEvents(appendMessage(make([]event, 0, len(c.GetSpanEvent())), c.GetSpanEvent(), c.GetKeyTime(), 0, ids))
	link(evs, root, false)

	id := key.id()
	skKey := asyncSkeletonKey(id, key.asyncID, key.asyncSeq)
	mu := a.stripe(id)
	mu.Lock()
	all := evs
	// A chunk that starts the work and links all its events needs no earlier chunk; any
	// other may continue work whose earlier events were emitted already.
	if len(evs) > 0 && (evs[0].seq != 0 || anyUncertain(evs)) {
		if skeleton, ok := a.loadSkeleton(skKey); ok {
			var d int
			all, d = mergeEvents(append(skeleton, evs...))
			link(all, root, false)
			evs, dropped = onlyNew(all), dropped+d
		}
	}
	a.saveSkeleton(skKey, all, func(*event) bool { return true })
	mu.Unlock()

	a.c.duplicateEvents.Add(uint64(dropped))
	if len(evs) == 0 {
		return nil
	}
	return &unit{sender: *s, key: key, events: evs}
}

func anyUncertain(evs []event) bool {
	for i := range evs {
		if evs[i].uncertain {
			return true
		}
	}
	return false
}

// onlyNew returns the events that are not skeleton entries.
func onlyNew(evs []event) []event {
	out := make([]event, 0, len(evs))
	for _, e := range evs {
		if e.ev != nil {
			out = append(out, e)
		}
	}
	return out
}
