package trace

import (
	"cmp"
	"slices"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// event is one span event, decoded and placed in its tree.
type event struct {
	ev    *pb.PSpanEvent // nil for a skeleton entry (an event emitted earlier)
	seq   int32
	depth int32 // absolute: wire depth 0 resolved to the previous event's
	start int64 // epoch ms
	id    int64 // span_id
	// parent is the span_id of the parent: an event's id, the span's id, or the spawning
	// event's id for the top of async work.
	parent int64
	// msg says which message the event came from: msgSpan, msgSkeleton, or the index of
	// a chunk among those being merged.
	msg int32
	// uncertain: a parent may be missing (events with sequences between it and the event
	// are unknown), so the link may be wrong if more chunks are still to come.
	uncertain bool
}

const (
	msgSkeleton int32 = -2 // sorts before the span, so a re-sent event loses to the emitted one
	msgSpan     int32 = -1
)

// idScheme says how ordinary events of a message get their ids.
type idScheme struct {
	spanID   int64
	async    bool
	asyncID  int32
	asyncSeq int32
}

func (s idScheme) eventID(ev *pb.PSpanEvent) int64 {
	if c := ev.GetNextEvent().GetMessageEvent().GetNextSpanId(); isCallee(c) {
		return nextCallID(s.spanID, c)
	}
	if a := ev.GetAsyncEvent(); a != 0 {
		return asyncSpawnID(s.spanID, a)
	}
	if s.async {
		return asyncEventID(s.spanID, s.asyncID, s.asyncSeq, ev.GetSequence())
	}
	return syncEventID(s.spanID, ev.GetSequence())
}

// appendMessage decodes the events of one span or chunk and appends them to dst.
// Each message is decoded on its own, in sequence order (pinpoint-protocol §4):
// startElapsed is a delta from the previous event's start, so the start of event i is
// base + the sum of startElapsed[0..i]; a wire depth of 0 repeats the previous event's
// depth (0 for the message's first event).
func appendMessage(dst []event, evs []*pb.PSpanEvent, base int64, msg int32, ids idScheme) []event {
	first := len(dst)
	for _, ev := range evs {
		if ev == nil {
			continue
		}
		dst = append(dst, event{ev: ev, seq: ev.GetSequence(), msg: msg, id: ids.eventID(ev)})
	}
	part := dst[first:]
	if !slices.IsSortedFunc(part, bySequence) {
		slices.SortStableFunc(part, bySequence)
	}
	var elapsed int64
	var depth int32
	for i := range part {
		elapsed += int64(part[i].ev.GetStartElapsed())
		part[i].start = base + elapsed
		if d := part[i].ev.GetDepth(); d != 0 {
			depth = d
		}
		part[i].depth = depth
	}
	return dst
}

func bySequence(a, b event) int { return cmp.Compare(a.seq, b.seq) }

// bySequenceThenSource orders merged events; among equal sequences the one from the
// earlier source (skeleton, span, then chunks in arrival order) comes first and wins.
func bySequenceThenSource(a, b event) int {
	if c := cmp.Compare(a.seq, b.seq); c != 0 {
		return c
	}
	return cmp.Compare(a.msg, b.msg)
}

// mergeEvents sorts events of several messages by sequence and drops events whose
// sequence is already taken (a re-sent chunk), returning how many it dropped.
func mergeEvents(evs []event) ([]event, int) {
	if !slices.IsSortedFunc(evs, bySequenceThenSource) {
		slices.SortStableFunc(evs, bySequenceThenSource)
	}
	out := evs[:0]
	dropped := 0
	for i, e := range evs {
		if i > 0 && e.seq == evs[i-1].seq {
			dropped++
			continue
		}
		out = append(out, e)
	}
	return out, dropped
}

// linker finds parents: the parent of an event at depth d is the nearest preceding event
// (by sequence) at depth d-1; events at depth <= 1 hang under the root. It remembers the
// last event seen at each depth; small depths in an array, the rare deep ones in a map
// (bounded by the number of events).
type linker struct {
	shallow [64]int32 // index+1 of the last event at each depth; 0 = none
	deep    map[int32]int32
}

func (l *linker) last(depth int32) (int, bool) {
	var v int32
	if depth < int32(len(l.shallow)) {
		v = l.shallow[depth]
	} else {
		v = l.deep[depth]
	}
	return int(v) - 1, v != 0
}

func (l *linker) set(depth int32, i int) {
	if depth < 0 {
		return
	}
	if depth < int32(len(l.shallow)) {
		l.shallow[depth] = int32(i + 1)
		return
	}
	if l.deep == nil {
		l.deep = make(map[int32]int32)
	}
	l.deep[depth] = int32(i + 1)
}

// link sets parent and uncertain on every event of evs (sorted by sequence, unique) that
// is not a skeleton entry. root is the parent of depth <= 1 events. An event is uncertain
// when sequences between it and its parent are missing, or it has no candidate parent
// and sequences before it are missing: the true parent may be in a chunk not merged.
// Uncertain events get the candidate as parent, or root when there is none or
// uncertainToRoot is set (a partial span, where a guess would be worse than the root).
func link(evs []event, root int64, uncertainToRoot bool) {
	var l linker
	for i := range evs {
		e := &evs[i]
		if e.ev != nil {
			e.parent, e.uncertain = root, false
			if e.depth > 1 {
				e.parent, e.uncertain = parentOf(evs, &l, i, root, uncertainToRoot)
			}
		}
		l.set(e.depth, i)
	}
}

func parentOf(evs []event, l *linker, i int, root int64, uncertainToRoot bool) (int64, bool) {
	e := &evs[i]
	j, ok := l.last(e.depth - 1)
	if !ok {
		// Nothing at depth d-1 before it: certain only when no sequence before it is
		// missing (sequences start at 0), which is a malformed span; hang it under root.
		return root, int64(e.seq) != int64(i)
	}
	// evs is sorted and unique, so no sequence is missing in between exactly when the
	// distance in the slice equals the distance in sequence numbers.
	gap := int64(e.seq)-int64(evs[j].seq) != int64(i-j)
	if gap && uncertainToRoot {
		return root, true
	}
	return evs[j].id, gap
}
