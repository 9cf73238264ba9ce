package tracestore

import (
	"bytes"
	"encoding/binary"
)

// Key layout. Every key starts with its partition's id (4 bytes, big-endian) so that one
// partition is one contiguous key range: dropping it (badger's DropPrefix) deletes whole
// tables at once. Partition 0 is the meta space, where each partition's bookkeeping lives.
// After the id, one byte says what the key indexes; numbers are big-endian (times with the
// sign bit flipped) so keys sort by them; strings are length-prefixed (one byte). batch is a
// hash of the written batch's bytes: the same batch written again (a retry, a spill
// re-delivery) overwrites its own records instead of adding to them.
//
//	pid 'S' trace batch             -> spans       (a trace's rows one write stored)
//	pid 'X' start trace             -> transaction (by start time)
//	pid 'A' app start trace         -> transaction (by application, then start)
//	pid 'R' start trace             -> transaction (failed ones, by start)
//	pid 'Y' trace spanID            -> exception   (of a failed span that is not the root)
//	pid 'E' minute batch            -> edges       (service map counts of one write, one minute)
//	pid 'M' agent time kind pool    -> sample      (stat samples)
//	pid 'G' agent start end?        -> agent       (agent info: start, or end)
//	pid 'L' agent                   -> agent       (last seen: newest span or sample time)
//	0   'P' pid                     -> partition
const (
	kindSpan byte = 'S'
	kindTxn  byte = 'X'
	kindApp  byte = 'A'
	kindErr  byte = 'R'
	kindExc  byte = 'Y'
	kindEdge byte = 'E'
	kindStat byte = 'M'
	kindInfo byte = 'G'
	kindSeen byte = 'L'
	kindPart byte = 'P'
)

// maxIDLen bounds the strings in keys (one length byte); longer ones are not stored.
const maxIDLen = 255

// key builds a key.
type key struct{ b []byte }

func newKey(pid uint32, kind byte) *key {
	k := &key{b: make([]byte, 0, 48)}
	k.b = binary.BigEndian.AppendUint32(k.b, pid)
	k.b = append(k.b, kind)
	return k
}

// str appends a length-prefixed string (at most maxIDLen bytes: callers check).
func (k *key) str(s string) *key {
	k.b = append(k.b, byte(len(s)))
	k.b = append(k.b, s...)
	return k
}

// i64 appends an int64 that sorts as a signed number.
func (k *key) i64(v int64) *key {
	k.b = binary.BigEndian.AppendUint64(k.b, uint64(v)^(1<<63))
	return k
}

func (k *key) u32(v uint32) *key {
	k.b = binary.BigEndian.AppendUint32(k.b, v)
	return k
}

func (k *key) byte(v byte) *key {
	k.b = append(k.b, v)
	return k
}

// partitionPrefix is the key range of one partition.
func partitionPrefix(pid uint32) []byte { return binary.BigEndian.AppendUint32(nil, pid) }

func metaKey(pid uint32) []byte { return newKey(0, kindPart).u32(pid).b }

// sortPart is what orders a key among its kind across partitions: the key without the
// partition id.
func sortPart(k []byte) []byte {
	if len(k) < 4 {
		return nil
	}
	return k[4:]
}

// compareAcross orders keys of the same kind from different partitions.
func compareAcross(a, b []byte) int { return bytes.Compare(sortPart(a), sortPart(b)) }
