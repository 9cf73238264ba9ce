package trace

import "github.com/apmkit/apmkit/internal/splitmix"

// Row timestamps. InfluxDB (and every store built like it: DataWay, VictoriaMetrics) keeps
// one row per measurement + tag set + timestamp: a second point with the same three
// replaces the first. Pinpoint times are whole milliseconds and span points carry no
// per-span tag (cardinality), so same-shaped spans of one agent that start in the same
// millisecond would overwrite each other. Each point therefore gets a nanosecond offset
// inside its start millisecond (the `start` field keeps the exact value), computed from the
// point's identity only, so the same span written again (a retry, a spill re-delivery, an
// agent's re-sent batch, another replica) lands on its own row and never adds one:
//
//	time   = start_ms * 1e6 + 1000*hi + lo            (0 <= hi, lo < 1000)
//	hi     = (transaction sequence + m(transaction agentId, agentStartTime)) mod 1000
//	lo     = (position + m(spanId, asyncId, asyncSequence)) mod 1000
//	position = 0 for the entry span, event sequence + 1 for an event
//
// m is splitmix64's finalizer over the FNV-1a id hash of its parts (ids.go), so it is fixed
// across versions and replicas. Why this shape:
//   - hi: an agent numbers its transactions consecutively, so up to 1,000 transactions that
//     one agent starts around the same time all get different hi: a burst of identical
//     requests never collides, whatever the rate.
//   - lo: the points of one span (and its async work) differ by their sequence numbers, so
//     up to 1,000 events of one span in one millisecond never collide either.
//   - m spreads callers: a callee agent serves transactions numbered by many caller
//     agents, whose sequences overlap; m shifts each caller's numbering and each span's
//     positions, so two such points share a row only when both hi and lo agree by chance
//     (about one in a million for two same-shaped points in the same millisecond).
//
// Two Pinpoint spans of one transaction on one agent (a service calling itself) have the
// same hi; their points collide only if m(spanId) lines up their positions (1 in 1,000 per
// pair of same-shaped points in one millisecond).
const rowSlots = 1000

// rowOffsets is what the points of one unit share: hi*1000 and the span's shift of lo.
type rowOffsets struct {
	base  int64 // 1000 * hi
	shift int64 // m(span) mod 1000
}

func newRowOffsets(k spanKey) rowOffsets {
	tx := newIDHash().str(k.txAgent).int(k.txStart).id()
	span := newIDHash().int(k.spanID).int(int64(k.asyncID)).int(int64(k.asyncSeq)).id()
	return rowOffsets{
		base:  rowSlots * mod(k.txSeq+int64(splitmix.Mix64(uint64(tx))%rowSlots), rowSlots),
		shift: int64(splitmix.Mix64(uint64(span)) % rowSlots),
	}
}

// entry is the offset of the span's entry point; event that of the event with sequence seq.
func (r rowOffsets) entry() int64          { return r.base + r.shift }
func (r rowOffsets) event(seq int32) int64 { return r.base + mod(int64(seq)+1+r.shift, rowSlots) }

// mod is the non-negative remainder (sequences are signed on the wire).
func mod(v, m int64) int64 {
	v %= m
	if v < 0 {
		v += m
	}
	return v
}
