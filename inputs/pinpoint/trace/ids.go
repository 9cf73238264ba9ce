package trace

// Span ids are deterministic so that any apmkit instance, at any time, gives the same span
// the same id, and a child can name its parent without seeing the parent's data
// (docs/SCHEMA.md, "Deterministic ids"):
//
//	entry span             span_id   = the Pinpoint spanId
//	                       parent_id = "0" for a root span (parentSpanId -1),
//	                                   else h(parentSpanId, "next", spanId)
//	event with nextSpanId C (not 0/-1)     span_id = h(spanId, "next", C)
//	event with asyncEvent A (not 0)        span_id = h(spanId, "async", A)
//	event in async work (A, s)             span_id = h(spanId, A, s, sequence)
//	any other event                        span_id = h(spanId, sequence)
//
// The depth-1 events of async work (A, s) get parent_id h(spanId, "async", A). Rule order
// matters: an event that calls another node keeps the "next" id even when it is also async
// work or spawns some, because the callee's entry span names exactly that id.
//
// h is FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3) over the parts
// encoded one after the other as
//
//	integer part: 0x01, then the value as 8 bytes big-endian two's complement (int64)
//	string part:  0x02, then one byte of length, then the bytes
//
// and the 64-bit result is read as an int64 and written in decimal. The type bytes keep
// h(1, 2) and h(1, "x") apart; sequence numbers, async ids and the like are widened to
// int64 first. This definition is a stored format: changing it changes every id users
// have stored, so it is pinned by TestIDHash against values computed independently.

const (
	fnvOffset64 = 0xcbf29ce484222325
	fnvPrime64  = 0x100000001b3

	partInt    = 0x01
	partString = 0x02
)

// idHash is the running state of h. It is a value type so computing an id never allocates.
type idHash uint64

func newIDHash() idHash { return fnvOffset64 }

func (h idHash) byte(b byte) idHash { return (h ^ idHash(b)) * fnvPrime64 }

func (h idHash) int(v int64) idHash {
	h = h.byte(partInt)
	for shift := 56; shift >= 0; shift -= 8 {
		h = h.byte(byte(uint64(v) >> shift))
	}
	return h
}

// str hashes a string part; only the package's short constant labels are passed here.
func (h idHash) str(s string) idHash {
	h = h.byte(partString).byte(byte(len(s)))
	for i := 0; i < len(s); i++ {
		h = h.byte(s[i])
	}
	return h
}

func (h idHash) id() int64 { return int64(h) }

// nextCallID is the span_id of an event that called span calleeID, and so also the
// parent_id of that callee's entry span.
func nextCallID(spanID, calleeID int64) int64 {
	return newIDHash().int(spanID).str("next").int(calleeID).id()
}

// asyncSpawnID is the span_id of the event that started async work asyncID, and the
// parent_id of that work's depth-1 events.
func asyncSpawnID(spanID int64, asyncID int32) int64 {
	return newIDHash().int(spanID).str("async").int(int64(asyncID)).id()
}

// syncEventID is the span_id of an ordinary event of a span (or of its sync chunks).
func syncEventID(spanID int64, sequence int32) int64 {
	return newIDHash().int(spanID).int(int64(sequence)).id()
}

// asyncEventID is the span_id of an ordinary event of async work (asyncID, asyncSeq).
func asyncEventID(spanID int64, asyncID, asyncSeq, sequence int32) int64 {
	return newIDHash().int(spanID).int(int64(asyncID)).int(int64(asyncSeq)).int(int64(sequence)).id()
}

// isCallee reports whether a nextSpanId names a real callee: agents write 0 or -1 for none.
func isCallee(nextSpanID int64) bool { return nextSpanID != 0 && nextSpanID != -1 }

// entryParentID is the parent_id of an entry span: 0 for a root span.
func entryParentID(spanID, parentSpanID int64) int64 {
	if parentSpanID == -1 {
		return 0
	}
	return nextCallID(parentSpanID, spanID)
}
