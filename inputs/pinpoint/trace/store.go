package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// Key layout in Options.Store (numbers big-endian so one span's keys sort together):
//
//	'c' spanKey minSeq(4) digest(8) -> pending sync chunk (pendingRecord)
//	's' spanKey                     -> skeleton of an emitted span (written at Stop)
//	'a' spanKey asyncId(4) seq(4)   -> skeleton of emitted async work (written at Stop)
//	'h' spanKey asyncId(4) seq(4) digest(8)
//	                                -> span or chunk still held for metadata at Stop
//	                                   (encodeHeldRecord), read back at Start
//
// spanKey = uvarint(len) senderAgentId senderStartTime(8) uvarint(len) txAgentId
// txStartTime(8) txSequence(8) spanId(8). The sender is part of it because a chunk belongs
// to the span of the same agent run, transaction and spanId, never to a transaction alone.
// A chunk's key ends in its first sequence and a digest of its bytes, so a re-sent copy
// overwrites itself while different chunks never collide.
const (
	prefixPending       = 'c'
	prefixSkeleton      = 's'
	prefixAsyncSkeleton = 'a'
	prefixHeld          = 'h'

	chunkSuffixLen = 4 + 8
	recordVersion  = 1
)

// spanKey identifies one Pinpoint span of one agent run.
type spanKey struct {
	sender   meta.AgentKey
	txAgent  string
	txStart  int64
	txSeq    int64
	spanID   int64
	asyncID  int32 // async work only
	asyncSeq int32
}

// newSpanKey normalises the transaction id: an empty agentId means the sender itself
// started the transaction (the agent leaves its own id out).
func newSpanKey(s *meta.Sender, tx *pb.PTransactionId, spanID int64) spanKey {
	k := spanKey{sender: s.AgentKey, txAgent: tx.GetAgentId(), txStart: tx.GetAgentStartTime(), txSeq: tx.GetSequence(), spanID: spanID}
	if k.txAgent == "" {
		k.txAgent = s.AgentID
		if k.txStart == 0 {
			k.txStart = s.StartTime
		}
	}
	return k
}

// traceID is agentId^agentStartTime^sequence.
func (k spanKey) traceID() string {
	b := make([]byte, 0, len(k.txAgent)+42)
	b = append(b, k.txAgent...)
	b = append(b, '^')
	b = appendInt(b, k.txStart)
	b = append(b, '^')
	b = appendInt(b, k.txSeq)
	return string(b)
}

func (k spanKey) appendTo(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(k.sender.AgentID)))
	b = append(b, k.sender.AgentID...)
	b = binary.BigEndian.AppendUint64(b, uint64(k.sender.StartTime))
	b = binary.AppendUvarint(b, uint64(len(k.txAgent)))
	b = append(b, k.txAgent...)
	b = binary.BigEndian.AppendUint64(b, uint64(k.txStart))
	b = binary.BigEndian.AppendUint64(b, uint64(k.txSeq))
	return binary.BigEndian.AppendUint64(b, uint64(k.spanID))
}

// id is the span key as the pending index and the stripe locks know it.
func (k spanKey) id() string { return string(k.appendTo(make([]byte, 0, 64))) }

func storeKey(prefix byte, spanID string, extra int) []byte {
	b := make([]byte, 0, 1+len(spanID)+extra)
	return append(append(b, prefix), spanID...)
}

func skeletonKey(spanID string) string { return string(storeKey(prefixSkeleton, spanID, 0)) }

func asyncSkeletonKey(spanID string, asyncID, asyncSeq int32) string {
	b := storeKey(prefixAsyncSkeleton, spanID, 8)
	b = binary.BigEndian.AppendUint32(b, uint32(asyncID))
	return string(binary.BigEndian.AppendUint32(b, uint32(asyncSeq)))
}

func pendingPrefix(spanID string) []byte { return storeKey(prefixPending, spanID, chunkSuffixLen) }

// pendingKey names one chunk of a span; minSeq is flipped so negative sequences sort first.
func pendingKey(spanID string, minSeq int32, raw []byte) []byte {
	b := pendingPrefix(spanID)
	b = binary.BigEndian.AppendUint32(b, uint32(minSeq)^0x80000000)
	h := fnv.New64a()
	h.Write(raw)
	return h.Sum(b)
}

// spanIDOfPendingKey returns the span key part of a pending chunk's store key.
func spanIDOfPendingKey(key []byte) (string, bool) {
	if len(key) <= 1+chunkSuffixLen || key[0] != prefixPending {
		return "", false
	}
	return string(key[1 : len(key)-chunkSuffixLen]), true
}

// pendingRecord is a sync chunk waiting for its span, with what is needed to emit it
// after a restart: the deadline and the sender's names.
type pendingRecord struct {
	deadline int64 // epoch ms
	sender   meta.Sender
	chunk    *pb.PSpanChunk
	size     int64 // bytes in the store, key included
}

// encodePendingRecord writes: version(1) deadline(8) uvarint-len appName, uvarint-len
// agentName, varint serviceType, then the chunk's protobuf bytes.
func encodePendingRecord(deadline int64, s *meta.Sender, raw []byte) []byte {
	b := make([]byte, 0, 1+8+len(s.ApplicationName)+len(s.AgentName)+16+len(raw))
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(deadline))
	b = binary.AppendUvarint(b, uint64(len(s.ApplicationName)))
	b = append(b, s.ApplicationName...)
	b = binary.AppendUvarint(b, uint64(len(s.AgentName)))
	b = append(b, s.AgentName...)
	b = binary.AppendVarint(b, int64(s.ServiceType))
	return append(b, raw...)
}

var errBadRecord = errors.New("trace: damaged pending chunk record")

// decodePendingHeader reads a record's deadline and sender names and returns the rest.
func decodePendingHeader(val []byte, agent meta.AgentKey) (int64, meta.Sender, []byte, error) {
	s := meta.Sender{AgentKey: agent}
	if len(val) < 9 || val[0] != recordVersion {
		return 0, s, nil, errBadRecord
	}
	deadline := int64(binary.BigEndian.Uint64(val[1:9]))
	rest := val[9:]
	var ok bool
	if s.ApplicationName, rest, ok = readString(rest); !ok {
		return 0, s, nil, errBadRecord
	}
	if s.AgentName, rest, ok = readString(rest); !ok {
		return 0, s, nil, errBadRecord
	}
	st, n := binary.Varint(rest)
	if n <= 0 || st < math.MinInt32 || st > math.MaxInt32 {
		return 0, s, nil, errBadRecord
	}
	s.ServiceType = int32(st)
	return deadline, s, rest[n:], nil
}

func decodePendingRecord(val []byte, agent meta.AgentKey) (pendingRecord, error) {
	deadline, s, raw, err := decodePendingHeader(val, agent)
	if err != nil {
		return pendingRecord{}, err
	}
	c := &pb.PSpanChunk{}
	if err := proto.Unmarshal(raw, c); err != nil {
		return pendingRecord{}, fmt.Errorf("%w: %v", errBadRecord, err)
	}
	return pendingRecord{deadline: deadline, sender: s, chunk: c}, nil
}

func readString(b []byte) (string, []byte, bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return "", nil, false
	}
	return string(b[w : w+int(n)]), b[w+int(n):], true
}

// agentOfSpanID reads the sender back from a span key (for records found at Start).
func agentOfSpanID(id string) (meta.AgentKey, bool) {
	b := []byte(id)
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) || len(b)-w-int(n) < 8 {
		return meta.AgentKey{}, false
	}
	agent := string(b[w : w+int(n)])
	start := int64(binary.BigEndian.Uint64(b[w+int(n):]))
	return meta.AgentKey{AgentID: agent, StartTime: start}, true
}

// A skeleton is what a chunk arriving after its span needs of the span: each emitted
// event's sequence, depth and span_id. Encoding: version(1) uvarint(count), then per event
// in sequence order: varint(seq - previous seq), varint(depth), id(8).
func encodeSkeleton(evs []event, keep func(*event) bool) []byte {
	b := make([]byte, 0, 2+len(evs)*12)
	b = append(b, recordVersion)
	n := 0
	for i := range evs {
		if keep(&evs[i]) {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	var prev int64
	for i := range evs {
		if !keep(&evs[i]) {
			continue
		}
		b = binary.AppendVarint(b, int64(evs[i].seq)-prev)
		prev = int64(evs[i].seq)
		b = binary.AppendVarint(b, int64(evs[i].depth))
		b = binary.BigEndian.AppendUint64(b, uint64(evs[i].id))
	}
	return b
}

// decodeSkeleton appends the skeleton's events (ev nil, msg msgSkeleton) to dst.
func decodeSkeleton(dst []event, b []byte) ([]event, error) {
	if len(b) < 2 || b[0] != recordVersion {
		return dst, errBadRecord
	}
	b = b[1:]
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return dst, errBadRecord
	}
	b = b[w:]
	var seq int64
	for range n {
		d, w1 := binary.Varint(b)
		if w1 <= 0 {
			return dst, errBadRecord
		}
		depth, w2 := binary.Varint(b[w1:])
		if w2 <= 0 || len(b) < w1+w2+8 {
			return dst, errBadRecord
		}
		seq += d
		id := int64(binary.BigEndian.Uint64(b[w1+w2:]))
		b = b[w1+w2+8:]
		dst = append(dst, event{seq: int32(seq), depth: int32(depth), id: id, msg: msgSkeleton})
	}
	return dst, nil
}
