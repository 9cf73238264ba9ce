package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// Spans and chunks held for metadata when the assembler stops are written to the store
// ('h' records, see store.go) instead of being emitted with placeholders: agents send each
// metadata item once, and during a restart that item may reach only the next process.
// Start reads them back into the hold queue with a fresh MetadataWait; a record stays in
// the store until its unit is emitted, so a crash after the restart does not lose it.

// heldRecordVersion is the first byte of a held record.
const heldRecordVersion = 1

// Flags of a held record.
const (
	heldHasSpan = 1 << iota
	heldPartial
	heldFlagsAll = heldHasSpan | heldPartial
)

// How an event's PSpanEvent is written: its own bytes, or its index among the events of
// the record's span (the span's events are written once, inside the span).
const (
	heldEventInline    = 0
	heldEventSpanIndex = 1
)

// minHeldEventBytes is the least an encoded event takes (six one-byte varints, the
// uncertain byte, the kind and a one-byte length or index); it bounds the event count a
// record may claim, so a damaged count cannot make the decoder allocate much.
const minHeldEventBytes = 9

var errBadHeldRecord = errors.New("trace: damaged held span record")

// heldKey names the record of a held unit: prefix, span key, async work, and a digest of
// the value, so a unit written twice overwrites itself and two units never collide.
func heldKey(u *unit, val []byte) []byte {
	id := u.key.id()
	b := storeKey(prefixHeld, id, 8+8)
	b = binary.BigEndian.AppendUint32(b, uint32(u.key.asyncID))
	b = binary.BigEndian.AppendUint32(b, uint32(u.key.asyncSeq))
	h := fnv.New64a()
	h.Write(val)
	return h.Sum(b)
}

// encodeHeldRecord writes everything convert needs of a unit:
//
//	version(1) flags(1)
//	sender:  str agentId, varint startTime, str applicationName, str agentName, varint serviceType
//	key:     str txAgentId, varint txStartTime, varint txSequence, varint spanId,
//	         varint asyncId, varint asyncSequence
//	span:    bytes (PSpan, with its events) when flags has heldHasSpan
//	events:  uvarint count, then per event: varint msg, varint seq, varint depth,
//	         varint start, varint id, varint parent, uncertain(1), kind(1), then
//	         bytes (PSpanEvent) for kind 0 or uvarint index into the span's events for kind 1
//
// str and bytes are uvarint length + bytes. The deadline is not kept: a restored unit
// waits MetadataWait from the start that restores it.
func encodeHeldRecord(u *unit) ([]byte, error) {
	det := proto.MarshalOptions{Deterministic: true}
	b := make([]byte, 0, 256)
	b = append(b, heldRecordVersion)
	var flags byte
	if u.span != nil {
		flags |= heldHasSpan
	}
	if u.partial {
		flags |= heldPartial
	}
	b = append(b, flags)
	b = appendHeldString(b, u.sender.AgentID)
	b = binary.AppendVarint(b, u.sender.StartTime)
	b = appendHeldString(b, u.sender.ApplicationName)
	b = appendHeldString(b, u.sender.AgentName)
	b = binary.AppendVarint(b, int64(u.sender.ServiceType))
	k := u.key
	b = appendHeldString(b, k.txAgent)
	b = binary.AppendVarint(b, k.txStart)
	b = binary.AppendVarint(b, k.txSeq)
	b = binary.AppendVarint(b, k.spanID)
	b = binary.AppendVarint(b, int64(k.asyncID))
	b = binary.AppendVarint(b, int64(k.asyncSeq))
	var inSpan map[*pb.PSpanEvent]int
	if u.span != nil {
		raw, err := det.Marshal(u.span)
		if err != nil {
			return nil, err
		}
		b = appendHeldBytes(b, raw)
		inSpan = make(map[*pb.PSpanEvent]int, len(u.span.GetSpanEvent()))
		for i, ev := range u.span.GetSpanEvent() {
			if _, dup := inSpan[ev]; !dup {
				inSpan[ev] = i
			}
		}
	}
	b = binary.AppendUvarint(b, uint64(len(u.events)))
	for i := range u.events {
		e := &u.events[i]
		b = binary.AppendVarint(b, int64(e.msg))
		b = binary.AppendVarint(b, int64(e.seq))
		b = binary.AppendVarint(b, int64(e.depth))
		b = binary.AppendVarint(b, e.start)
		b = binary.AppendVarint(b, e.id)
		b = binary.AppendVarint(b, e.parent)
		b = append(b, boolByte(e.uncertain))
		if j, ok := inSpan[e.ev]; ok && e.ev != nil {
			b = append(b, heldEventSpanIndex)
			b = binary.AppendUvarint(b, uint64(j))
			continue
		}
		raw, err := det.Marshal(e.ev)
		if err != nil {
			return nil, err
		}
		b = append(b, heldEventInline)
		b = appendHeldBytes(b, raw)
	}
	return b, nil
}

// decodeHeldRecord reads a record back. It never panics and checks every length against
// what is left; anything that does not add up is errBadHeldRecord.
func decodeHeldRecord(val []byte) (*unit, error) {
	r := heldReader{b: val}
	if r.byte() != heldRecordVersion {
		return nil, errBadHeldRecord
	}
	flags := r.byte()
	if flags&^heldFlagsAll != 0 {
		return nil, errBadHeldRecord
	}
	u := &unit{partial: flags&heldPartial != 0}
	u.sender.AgentID = r.string()
	u.sender.StartTime = r.varint()
	u.sender.ApplicationName = r.string()
	u.sender.AgentName = r.string()
	u.sender.ServiceType = r.int32()
	u.key = spanKey{sender: u.sender.AgentKey, txAgent: r.string(), txStart: r.varint(), txSeq: r.varint(),
		spanID: r.varint(), asyncID: r.int32(), asyncSeq: r.int32()}
	if r.bad {
		return nil, errBadHeldRecord
	}
	if flags&heldHasSpan != 0 {
		raw := r.bytes()
		if r.bad {
			return nil, errBadHeldRecord
		}
		u.span = &pb.PSpan{}
		if err := proto.Unmarshal(raw, u.span); err != nil {
			return nil, fmt.Errorf("%w: span: %v", errBadHeldRecord, err)
		}
	}
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b))/minHeldEventBytes {
		return nil, errBadHeldRecord
	}
	if n == 0 && u.span == nil {
		return nil, errBadHeldRecord // a held unit always has something to emit
	}
	u.events = make([]event, 0, n)
	for range n {
		e := event{msg: r.int32(), seq: r.int32(), depth: r.int32(), start: r.varint(), id: r.varint(), parent: r.varint()}
		switch r.byte() {
		case 0:
		case 1:
			e.uncertain = true
		default:
			r.bad = true
		}
		if e.msg < msgSpan || (e.msg == msgSpan && u.span == nil) {
			r.bad = true
		}
		switch r.byte() {
		case heldEventSpanIndex:
			j := r.uvarint()
			evs := u.span.GetSpanEvent()
			if r.bad || j >= uint64(len(evs)) || evs[j] == nil {
				return nil, errBadHeldRecord
			}
			e.ev = evs[j]
		case heldEventInline:
			raw := r.bytes()
			if r.bad {
				return nil, errBadHeldRecord
			}
			e.ev = &pb.PSpanEvent{}
			if err := proto.Unmarshal(raw, e.ev); err != nil {
				return nil, fmt.Errorf("%w: event: %v", errBadHeldRecord, err)
			}
		default:
			return nil, errBadHeldRecord
		}
		if r.bad {
			return nil, errBadHeldRecord
		}
		u.events = append(u.events, e)
	}
	if len(r.b) != 0 {
		return nil, errBadHeldRecord
	}
	return u, nil
}

// heldReader reads a record front to back; the first problem sets bad and every later
// read returns zero values.
type heldReader struct {
	b   []byte
	bad bool
}

func (r *heldReader) byte() byte {
	if r.bad || len(r.b) == 0 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *heldReader) varint() int64 {
	if r.bad {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *heldReader) uvarint() uint64 {
	if r.bad {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *heldReader) int32() int32 {
	v := r.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.bad = true
		return 0
	}
	return int32(v)
}

func (r *heldReader) bytes() []byte {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

// string reads a string that must be valid UTF-8, as protobuf strings and header values
// are: the names go into tags and fields.
func (r *heldReader) string() string {
	b := r.bytes()
	if !utf8.Valid(b) {
		r.bad = true
		return ""
	}
	return string(b)
}

func appendHeldString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendHeldBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// keepHeld writes a unit still waiting for metadata at Stop to the store. A unit restored
// from the store is there already. It reports false when the unit could not be written
// (counted): the caller then emits it rather than lose it.
func (a *Assembler) keepHeld(u *unit) bool {
	if u.record != nil {
		return true
	}
	val, err := encodeHeldRecord(u)
	if err != nil {
		a.c.storeErrors.Add(1)
		return false
	}
	if err := a.opts.Store.Set(heldKey(u, val), val, a.opts.PendingTTL); err != nil {
		a.c.storeErrors.Add(1)
		return false
	}
	return true
}

// restoreHeld puts the units a previous Stop kept back into the hold queue, each waiting
// MetadataWait from now, and marks every agent for a re-check so the units whose metadata
// is known already go out at the first wake-up. A record that does not decode is counted
// (StoreErrors), deleted and skipped. It returns the units the queue's caps push out (to
// be emitted by the background work).
func (a *Assembler) restoreHeld() ([]*unit, error) {
	deadline := a.opts.Now().Add(a.opts.MetadataWait).UnixMilli()
	var out []*unit
	err := a.opts.Store.Scan([]byte{prefixHeld}, func(key, val []byte) error {
		u, err := decodeHeldRecord(val)
		if err != nil {
			a.c.storeErrors.Add(1)
			a.deleteStored(slices.Clone(key))
			return nil
		}
		u.record = slices.Clone(key)
		u.missing = a.unresolvedRefs(u)
		u.deadline = deadline
		u.size = unitSize(u)
		a.c.restoredHeld.Add(1)
		evicted, held := a.held.push(u)
		if !held {
			evicted = append(evicted, u)
		}
		a.c.heldOverflow.Add(uint64(len(evicted)))
		out = append(out, evicted...)
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("trace: restore spans held for metadata: %w", err)
	}
	a.held.markAllDirty()
	return out, nil
}

// unresolvedRefs converts u (the points are dropped) to find the ids it cannot resolve now.
func (a *Assembler) unresolvedRefs(u *unit) []ref {
	conv := a.getConverter()
	defer a.putConverter(conv)
	conv.convert(u)
	return slices.Clone(conv.res.misses)
}
