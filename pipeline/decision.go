package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apmkit/apmkit/span"
)

// The decision buffer. A trace's spans wait in memory from its first span until
// DecisionWait later, then the trace is decided whole (Pipeline.decide) and its kept spans
// are emitted. Waiting traces are ordered by arrival, which is their deadline order, so the
// background loop only looks at the head of a queue. The buffer is bounded in bytes: a span
// that takes it over DecisionBufferBytes makes the oldest traces be decided at once, with
// the spans they have (deciding early: the hash part of the decision is exact, an error
// that comes later is not seen). Decisions are remembered (decisionMemory) so a span that
// arrives after its trace was decided follows it. Stop decides every waiting trace.

// traceOverhead is what a waiting trace costs beyond its spans: its record, map entry and
// queue slot.
const traceOverhead = 256

// dueBatch is the most traces decided under one hold of the lock by the background loop.
const dueBatch = 256

// cause is when a trace was decided.
type cause uint8

const (
	causeWaited     cause = iota // its DecisionWait was over
	causeBufferFull              // early: the buffer was full
	causeStop                    // early: the pipeline stopped
	numCauses
)

var causeNames = [numCauses]string{"waited", "buffer_full", "stop"}

type decisionBuffer struct {
	wait     time.Duration
	maxBytes int64
	tick     time.Duration
	now      func() time.Time

	mu      sync.Mutex
	pending map[string]*pendingTrace
	queue   []*pendingTrace // by deadline; queue[head:] are waiting
	head    int
	bytes   int64
	stopped bool // Stop ran: spans are decided at once
	memory  *decisionMemory

	life    sync.Mutex // Start and Stop
	running bool
	halted  bool
	stop    chan struct{}
	done    chan struct{}
	cancel  context.CancelFunc
}

type pendingTrace struct {
	traceView
	deadline int64 // unix ns
	bytes    int64
}

// decidedTrace is a decided trace whose spans are still to be emitted (if kept).
type decidedTrace struct {
	id     string
	hash   uint64
	spans  []*span.Span
	d      decision
	cause  cause
	points int
}

func newDecisionBuffer(wait time.Duration, maxBytes int64, now func() time.Time) *decisionBuffer {
	if wait <= 0 {
		wait = DefaultDecisionWait
	}
	if maxBytes <= 0 {
		maxBytes = DefaultDecisionBufferBytes
	}
	return &decisionBuffer{
		wait: wait, maxBytes: maxBytes, tick: min(max(wait/10, 5*time.Millisecond), 250*time.Millisecond), now: now,
		pending: map[string]*pendingTrace{}, memory: newDecisionMemory(now()),
	}
}

// add takes a span with a trace id. A span of a decided trace is not kept: add returns the
// decision and waits=false. Else the span waits (waits=true) and add returns the traces it
// made the buffer decide early (the full buffer's oldest; its own when stopped).
func (b *decisionBuffer) add(p *Pipeline, s *span.Span) (d decision, waits bool, decided []decidedTrace) {
	h := traceHash(s.TraceID)
	now := b.now()
	size := int64(s.Size())
	b.mu.Lock()
	defer b.mu.Unlock()
	if d, ok := b.memory.get(h, now); ok {
		return d, false, nil
	}
	if b.stopped {
		t := &pendingTrace{traceView: traceView{id: s.TraceID, hash: h, spans: []*span.Span{s}, hasError: s.HasError()}}
		return decision{}, true, []decidedTrace{p.decideLocked(t, causeStop, now)}
	}
	t := b.pending[s.TraceID]
	if t == nil {
		t = &pendingTrace{traceView: traceView{id: s.TraceID, hash: h}, deadline: now.Add(b.wait).UnixNano(), bytes: traceOverhead}
		b.pending[s.TraceID] = t
		b.queue = append(b.queue, t)
		b.bytes += traceOverhead
	}
	t.spans = append(t.spans, s)
	t.hasError = t.hasError || s.HasError()
	t.bytes += size
	b.bytes += size
	for b.bytes > b.maxBytes && b.head < len(b.queue) {
		decided = append(decided, p.decideLocked(b.pop(), causeBufferFull, now))
	}
	p.metrics.setPending(len(b.pending), b.bytes)
	return decision{}, true, decided
}

// pop removes the oldest waiting trace; the caller holds mu and checked there is one.
func (b *decisionBuffer) pop() *pendingTrace {
	t := b.queue[b.head]
	b.queue[b.head] = nil
	b.head++
	if b.head == len(b.queue) {
		b.queue, b.head = b.queue[:0], 0
	} else if b.head >= 1024 && 2*b.head >= len(b.queue) {
		n := copy(b.queue, b.queue[b.head:])
		clear(b.queue[n:])
		b.queue, b.head = b.queue[:n], 0
	}
	delete(b.pending, t.id)
	b.bytes -= t.bytes
	return t
}

// decideLocked decides a trace taken out of the buffer (or never in it), remembers and
// counts the decision. The caller holds b.mu.
func (p *Pipeline) decideLocked(t *pendingTrace, c cause, now time.Time) decidedTrace {
	d := p.decide(&t.traceView)
	p.buf.memory.set(t.hash, d, now)
	points := 0
	for _, s := range t.spans {
		points += len(s.Events)
	}
	dt := decidedTrace{id: t.id, hash: t.hash, spans: t.spans, d: d, cause: c, points: points}
	if p.shared == nil {
		// Counted at once, so Stats never shows a trace neither pending nor decided. With
		// replicas the count waits for release, where the decision may still change.
		p.metrics.countTrace(d, c, points)
	}
	return dt
}

// release settles each decision with the other replicas (shared.go) and emits the spans
// of the kept traces; failures are counted, and the first is returned with
// their number. It runs outside the buffer's lock: settling may wait on the shared store.
func (p *Pipeline) release(ctx context.Context, decided []decidedTrace) error {
	var first error
	failed := 0
	for i := range decided {
		dt := &decided[i]
		if p.shared != nil {
			p.shareDecision(dt)
			p.metrics.countTrace(dt.d, dt.cause, dt.points)
		}
		if !dt.d.keep {
			continue
		}
		for _, s := range dt.spans {
			if err := p.emit(ctx, s); err != nil {
				p.metrics.emitErrors.Inc()
				failed++
				if first == nil {
					first = err
				}
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("pipeline: %d decided spans not handed on: %w", failed, first)
	}
	return nil
}

// decideDue decides every trace whose wait is over, emitting as it goes.
func (p *Pipeline) decideDue(ctx context.Context) {
	b := p.buf
	for {
		now := p.now()
		b.mu.Lock()
		var out []decidedTrace
		for len(out) < dueBatch && b.head < len(b.queue) && b.queue[b.head].deadline <= now.UnixNano() {
			out = append(out, p.decideLocked(b.pop(), causeWaited, now))
		}
		p.metrics.setPending(len(b.pending), b.bytes)
		b.mu.Unlock()
		_ = p.release(ctx, out) // counted
		if len(out) < dueBatch {
			return
		}
	}
}

// Start runs the loop that decides traces whose wait is over (only when a sampler or filter
// is configured; else nothing waits). It is idempotent; after Stop it does nothing.
func (p *Pipeline) Start() {
	b := p.buf
	if b == nil {
		return
	}
	b.life.Lock()
	defer b.life.Unlock()
	if b.running || b.halted {
		return
	}
	b.running = true
	ctx, cancel := context.WithCancel(context.Background())
	b.stop, b.done, b.cancel = make(chan struct{}), make(chan struct{}), cancel
	go func() {
		defer close(b.done)
		t := time.NewTicker(b.tick)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				p.decideDue(ctx)
			}
		}
	}()
}

// Stop ends the loop and decides every trace still waiting with the spans it has, emitting
// the kept ones with ctx; spans that come later are decided at once. Stop it after the
// input (nothing feeds it any more) and before the uploader (which takes what it emits).
// It is idempotent and safe before Start; the error reports spans Emit refused.
func (p *Pipeline) Stop(ctx context.Context) error {
	b := p.buf
	if b == nil {
		return nil
	}
	b.life.Lock()
	defer b.life.Unlock()
	if b.halted {
		return nil
	}
	b.halted = true
	var cut error
	if b.running {
		close(b.stop)
		select {
		case <-b.done:
		case <-ctx.Done(): // the loop is blocked in Emit: cut it short
			b.cancel()
			<-b.done
			cut = fmt.Errorf("pipeline: stop: decided spans being handed on were given up: %w", ctx.Err())
		}
		b.cancel()
	}
	now := p.now()
	b.mu.Lock()
	b.stopped = true
	var out []decidedTrace
	for b.head < len(b.queue) {
		out = append(out, p.decideLocked(b.pop(), causeStop, now))
	}
	p.metrics.setPending(len(b.pending), b.bytes)
	b.mu.Unlock()
	return errors.Join(cut, p.release(ctx, out))
}

// decisionMemory remembers decided traces so that their late spans follow the decision:
// a 4-way set-associative table of trace hashes (12 bytes an entry, no pointers, allocated
// once), entries expire after memoryTTL, and a full set forgets its oldest entry. A span
// whose trace was forgotten starts a new wait and is decided by the same rules on what it
// brings: the hash part gives the same answer. Two traces with the same 64-bit hash share an
// entry (about one chance in 10^8 among the traces of ten minutes at 1,000 a second).
type decisionMemory struct {
	base time.Time
	keys []uint64 // 0: empty
	vals []uint32 // seconds since base << 4 | reason << 1 | keep
}

const (
	memorySets   = 1 << 16
	memoryWays   = 4
	memoryTraces = memorySets * memoryWays
	memoryTTL    = 10 * time.Minute
)

func newDecisionMemory(now time.Time) *decisionMemory {
	return &decisionMemory{base: now, keys: make([]uint64, memoryTraces), vals: make([]uint32, memoryTraces)}
}

func (m *decisionMemory) secs(now time.Time) uint32 {
	d := now.Sub(m.base)
	if d < 0 {
		return 0
	}
	return uint32(min(d/time.Second, 1<<28-1))
}

func (m *decisionMemory) slots(h uint64) (uint64, int) {
	if h == 0 {
		h = 1
	}
	return h, int(h&(memorySets-1)) * memoryWays
}

func (m *decisionMemory) get(h uint64, now time.Time) (decision, bool) {
	key, set := m.slots(h)
	for i := set; i < set+memoryWays; i++ {
		if m.keys[i] != key {
			continue
		}
		v := m.vals[i]
		if m.secs(now)-v>>4 >= uint32(memoryTTL/time.Second) {
			m.keys[i] = 0
			return decision{}, false
		}
		return decision{keep: v&1 == 1, reason: reason(v >> 1 & 7)}, true
	}
	return decision{}, false
}

func (m *decisionMemory) set(h uint64, d decision, now time.Time) {
	key, set := m.slots(h)
	slot := set
	for i := set; i < set+memoryWays; i++ {
		if m.keys[i] == key || m.keys[i] == 0 {
			slot = i
			break
		}
		if m.vals[i]>>4 < m.vals[slot]>>4 {
			slot = i
		}
	}
	v := m.secs(now)<<4 | uint32(d.reason)<<1
	if d.keep {
		v |= 1
	}
	m.keys[slot], m.vals[slot] = key, v
}
