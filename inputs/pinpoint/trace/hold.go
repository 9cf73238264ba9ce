package trace

import (
	"context"
	"errors"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/span"
)

// unit is what one Emit call carries: a span (entry + events, with the chunks merged into
// it), the events of chunks emitted without their span, or one piece of async work.
type unit struct {
	sender  meta.Sender
	key     spanKey
	span    *pb.PSpan // nil when only chunk events are emitted
	events  []event   // sorted by sequence
	partial bool      // the span never came: points are tagged partial=true

	// Set while held for metadata.
	deadline int64 // epoch ms
	missing  []ref
	size     int64
	// record is the store key of a unit a previous run kept at Stop (restored at Start);
	// the record is deleted when the unit is emitted.
	record []byte
}

// release emits a unit, or holds it for metadata that has not arrived yet.
func (a *Assembler) release(ctx context.Context, u *unit) error {
	if u == nil {
		return nil
	}
	conv := a.getConverter()
	defer a.putConverter(conv)
	sp := conv.convert(u)
	if len(conv.res.misses) == 0 || a.opts.MetadataWait < 0 {
		return a.emit(ctx, u, sp, &conv.res.count)
	}
	u.missing = slices.Clone(conv.res.misses)
	u.deadline = a.opts.Now().Add(a.opts.MetadataWait).UnixMilli()
	u.size = unitSize(u)
	evicted, held := a.held.push(u)
	var errs []error
	if held {
		a.c.heldForMetadata.Add(1)
	} else {
		a.c.heldOverflow.Add(1)
		errs = append(errs, a.emit(ctx, u, sp, &conv.res.count))
	}
	for _, old := range evicted {
		a.c.heldOverflow.Add(1)
		errs = append(errs, a.emitFinal(ctx, old))
	}
	return errors.Join(errs...)
}

// emitFinal converts a unit that waited and emits it whatever is still unresolved. A unit
// restored after a restart leaves the store here, and is counted when it still carries
// placeholders.
func (a *Assembler) emitFinal(ctx context.Context, u *unit) error {
	if u.record != nil && !a.claimStored(u.record) {
		return nil // restored by another replica too, which emits it
	}
	conv := a.getConverter()
	defer a.putConverter(conv)
	sp := conv.convert(u)
	err := a.emit(ctx, u, sp, &conv.res.count)
	if err != nil {
		a.c.emitErrors.Add(1)
	}
	if u.record != nil && len(conv.res.misses) > 0 {
		a.c.restoredUnresolved.Add(1)
	}
	return err
}

func (a *Assembler) emit(ctx context.Context, u *unit, sp *span.Span, unresolved *[numRefKinds]int) error {
	a.c.events.Add(uint64(len(u.events)))
	a.c.addUnresolved(unresolved)
	if len(sp.Events) == 0 {
		return nil
	}
	return a.opts.Emit(ctx, sp)
}

// unitSize estimates the memory a held unit keeps alive: decoded messages take about
// three times their wire size, plus the decoded event list.
func unitSize(u *unit) int64 {
	n := int64(256 + len(u.events)*64)
	if u.span != nil {
		n += 3 * int64(proto.Size(u.span))
	}
	for i := range u.events {
		if u.span == nil || u.events[i].msg != msgSpan {
			n += 3 * int64(proto.Size(u.events[i].ev))
		}
	}
	return n
}

// holdQueue keeps units waiting for metadata, oldest first, within a count and a byte
// cap. Agents whose metadata arrived are marked dirty; their units are re-checked at the
// next wake-up.
type holdQueue struct {
	mu       sync.Mutex
	units    []*unit
	bytes    int64
	maxUnits int
	maxBytes int64

	dirtyMu  sync.Mutex
	dirty    []meta.AgentKey // bounded by maxDirty; beyond it, allDirty
	allDirty bool
}

// maxDirty bounds the agents remembered between two wake-ups; more than that re-checks
// every held unit, which is correct, just slower.
const maxDirty = 64

func newHoldQueue(maxUnits int, maxBytes int64) *holdQueue {
	return &holdQueue{maxUnits: maxUnits, maxBytes: maxBytes}
}

// push holds u. It returns the units pushed out to make room (to emit now), and false
// when u itself cannot be held (bigger than the whole byte cap).
func (q *holdQueue) push(u *unit) ([]*unit, bool) {
	if u.size > q.maxBytes {
		return nil, false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*unit
	for len(q.units) > 0 && (len(q.units)+1 > q.maxUnits || q.bytes+u.size > q.maxBytes) {
		out = append(out, q.units[0])
		q.bytes -= q.units[0].size
		q.units[0] = nil
		q.units = q.units[1:]
	}
	q.units = append(q.units, u)
	q.bytes += u.size
	return out, true
}

func (q *holdQueue) markDirty(agent meta.AgentKey) {
	q.dirtyMu.Lock()
	defer q.dirtyMu.Unlock()
	if q.allDirty || slices.Contains(q.dirty, agent) {
		return
	}
	if len(q.dirty) == maxDirty {
		q.allDirty = true
		q.dirty = q.dirty[:0]
		return
	}
	q.dirty = append(q.dirty, agent)
}

// markAllDirty makes the next wake-up re-check every held unit (after a restore).
func (q *holdQueue) markAllDirty() {
	q.dirtyMu.Lock()
	defer q.dirtyMu.Unlock()
	q.allDirty = true
	q.dirty = q.dirty[:0]
}

func (q *holdQueue) takeDirty() ([]meta.AgentKey, bool) {
	q.dirtyMu.Lock()
	defer q.dirtyMu.Unlock()
	d, all := slices.Clone(q.dirty), q.allDirty
	q.dirty, q.allDirty = q.dirty[:0], false
	return d, all
}

// ready takes out the units whose wait is over at now and those of dirty agents whose
// missing ids all resolve now.
func (q *holdQueue) ready(m Metadata, now int64) []*unit {
	dirty, all := q.takeDirty()
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*unit
	kept := q.units[:0]
	for _, u := range q.units {
		recheck := all || slices.Contains(dirty, u.sender.AgentKey)
		if u.deadline <= now || (recheck && resolvable(m, u.sender.AgentKey, u.missing)) {
			out = append(out, u)
			q.bytes -= u.size
			continue
		}
		kept = append(kept, u)
	}
	clear(q.units[len(kept):])
	q.units = kept
	return out
}

// drain takes out everything (Stop), oldest first.
func (q *holdQueue) drain() []*unit {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.units
	q.units, q.bytes = nil, 0
	return out
}

func (q *holdQueue) size() (int64, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return int64(len(q.units)), q.bytes
}
