package trace

import (
	"container/heap"
	"sync"
)

// pendingIndex is the in-memory view of the spans whose sync chunks wait in the store: it
// saves a store scan for every span that has no chunks (nearly all) and orders the waiting
// spans by deadline. It is bounded: when a cap is hit, the spans waiting longest are taken
// out and handed back to be emitted early as partial spans.
type pendingIndex struct {
	mu       sync.Mutex
	bySpan   map[string]*pendingSpan
	order    deadlineHeap
	bytes    int64
	maxSpans int
	maxBytes int64
}

// maxChunksPerSpan bounds the chunks one span keeps waiting: each arriving chunk of a span
// re-reads those waiting, so an agent sending endless chunks for one span must not make
// that quadratic. Java flushes every 20 events, so 256 chunks are 5,000 events.
const maxChunksPerSpan = 256

// pendingSpan is one span's waiting chunks.
type pendingSpan struct {
	id       string // spanKey.id()
	deadline int64  // epoch ms; the earliest of its chunks
	bytes    int64
	chunks   int
	slot     int // position in the heap
}

func newPendingIndex(maxSpans int, maxBytes int64) *pendingIndex {
	return &pendingIndex{bySpan: make(map[string]*pendingSpan), maxSpans: maxSpans, maxBytes: maxBytes}
}

func (x *pendingIndex) has(id string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, ok := x.bySpan[id]
	return ok
}

// add records a chunk of bytes waiting until deadline. It returns the spans to emit
// early to stay within the caps (removed from the index already), oldest first.
func (x *pendingIndex) add(id string, deadline, bytes int64) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.addLocked(id, deadline, 1, bytes)
	return x.evictLocked(id)
}

// set replaces what a span has waiting after a merge (the chunks left, their bytes and
// earliest deadline); no chunks left removes it. Like add it returns spans to emit early.
func (x *pendingIndex) set(id string, chunks int, bytes, deadline int64) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	if p, ok := x.bySpan[id]; ok {
		x.removeLocked(p)
	}
	if chunks == 0 {
		return nil
	}
	x.addLocked(id, deadline, chunks, bytes)
	return x.evictLocked(id)
}

func (x *pendingIndex) addLocked(id string, deadline int64, chunks int, bytes int64) {
	p, ok := x.bySpan[id]
	if !ok {
		p = &pendingSpan{id: id, deadline: deadline}
		x.bySpan[id] = p
		heap.Push(&x.order, p)
	} else if deadline < p.deadline {
		p.deadline = deadline
		heap.Fix(&x.order, p.slot)
	}
	p.bytes += bytes
	p.chunks += chunks
	x.bytes += bytes
}

// evictLocked takes out the span just changed if it has too many chunks, then the spans
// with the earliest deadlines while a cap is exceeded.
func (x *pendingIndex) evictLocked(changed string) []string {
	var evict []string
	if p := x.bySpan[changed]; p != nil && p.chunks > maxChunksPerSpan {
		evict = append(evict, x.removeLocked(p))
	}
	for len(x.order) > 0 && (len(x.order) > x.maxSpans || x.bytes > x.maxBytes) {
		evict = append(evict, x.removeLocked(x.order[0]))
	}
	return evict
}

// due takes out every span whose deadline is at or before now.
func (x *pendingIndex) due(now int64) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []string
	for len(x.order) > 0 && x.order[0].deadline <= now {
		out = append(out, x.removeLocked(x.order[0]))
	}
	return out
}

func (x *pendingIndex) removeLocked(p *pendingSpan) string {
	heap.Remove(&x.order, p.slot)
	delete(x.bySpan, p.id)
	x.bytes -= p.bytes
	return p.id
}

// reset forgets everything (Stop: the chunks stay in the store for the next Start).
func (x *pendingIndex) reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	clear(x.bySpan)
	x.order = nil
	x.bytes = 0
}

func (x *pendingIndex) size() (spans, bytes int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return int64(len(x.order)), x.bytes
}

// deadlineHeap is a min-heap of pending spans by deadline.
type deadlineHeap []*pendingSpan

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].deadline < h[j].deadline }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].slot, h[j].slot = i, j
}
func (h *deadlineHeap) Push(v any) {
	p := v.(*pendingSpan)
	p.slot = len(*h)
	*h = append(*h, p)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return p
}
