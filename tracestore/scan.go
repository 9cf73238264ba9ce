package tracestore

import (
	"bytes"
	"container/heap"

	"github.com/dgraph-io/badger/v4"
)

// keyRange is a range of keys of one kind, [lo, hi), given without the partition id; a
// scan reads it in every partition.
type keyRange struct {
	lo, hi  []byte
	reverse bool // newest (highest key) first
}

// prefixRange is every key that starts with prefix.
func prefixRange(prefix []byte) keyRange {
	return keyRange{lo: prefix, hi: prefixEnd(prefix)}
}

// prefixEnd is the smallest key greater than every key starting with p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xFF {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xFF: no end (never the case for apmkit's keys)
}

// cursor is one partition's iterator within a scan.
type cursor struct {
	it  *badger.Iterator
	pid []byte
}

// scan calls fn for every key in r across the partitions, merged in key order (partition
// ids aside), so the same row stored in two partitions comes twice in a row. fn returns
// false to stop. Memory: one iterator per partition, whatever the range holds.
func (s *Store) scan(r keyRange, fn func(key []byte, item *badger.Item) bool) error {
	db := s.db()
	if db == nil {
		return ErrUnavailable
	}
	return db.View(func(txn *badger.Txn) error {
		m := &merger{reverse: r.reverse}
		defer m.close()
		for _, id := range s.partitionIDs() {
			m.open(txn, r, partitionPrefix(id))
		}
		heap.Init(m)
		for m.Len() > 0 {
			c := m.cursors[0]
			item := c.it.Item()
			if !fn(item.Key(), item) {
				return nil
			}
			m.advance(r)
		}
		return nil
	})
}

// merger is a heap of partition cursors ordered by their current key.
type merger struct {
	cursors []*cursor
	all     []*cursor
	reverse bool
}

func (m *merger) open(txn *badger.Txn, r keyRange, pid []byte) {
	opts := badger.IteratorOptions{Reverse: r.reverse, Prefix: commonPrefix(pid, r)}
	c := &cursor{it: txn.NewIterator(opts), pid: pid}
	m.all = append(m.all, c)
	if r.reverse {
		c.it.Seek(append(bytes.Clone(pid), r.hi...))
	} else {
		c.it.Seek(append(bytes.Clone(pid), r.lo...))
	}
	if m.inRange(c, r) {
		m.cursors = append(m.cursors, c)
	}
}

// commonPrefix is what every key of the range in that partition starts with: badger skips
// tables without it.
func commonPrefix(pid []byte, r keyRange) []byte {
	n := 0
	for n < len(r.lo) && n < len(r.hi) && r.lo[n] == r.hi[n] {
		n++
	}
	return append(bytes.Clone(pid), r.lo[:n]...)
}

// inRange reports whether the cursor is on a key of the range, stepping over the upper
// bound itself when reading backwards (Seek lands on the largest key <= hi).
func (m *merger) inRange(c *cursor, r keyRange) bool {
	for c.it.Valid() {
		k := c.it.Item().Key()
		if !bytes.HasPrefix(k, c.pid) {
			return false
		}
		rest := k[len(c.pid):]
		switch {
		case bytes.Compare(rest, r.lo) < 0:
			return false // below the range: forward never gets here, backward is done
		case r.hi != nil && bytes.Compare(rest, r.hi) >= 0:
			if !r.reverse {
				return false
			}
			c.it.Next()
			continue
		}
		return true
	}
	return false
}

func (m *merger) advance(r keyRange) {
	c := m.cursors[0]
	c.it.Next()
	if m.inRange(c, r) {
		heap.Fix(m, 0)
		return
	}
	heap.Pop(m)
}

func (m *merger) close() {
	for _, c := range m.all {
		c.it.Close()
	}
}

func (m *merger) Len() int { return len(m.cursors) }
func (m *merger) Less(i, j int) bool {
	c := compareAcross(m.cursors[i].it.Item().Key(), m.cursors[j].it.Item().Key())
	if m.reverse {
		return c > 0
	}
	return c < 0
}
func (m *merger) Swap(i, j int) { m.cursors[i], m.cursors[j] = m.cursors[j], m.cursors[i] }
func (m *merger) Push(x any)    { m.cursors = append(m.cursors, x.(*cursor)) }
func (m *merger) Pop() any {
	c := m.cursors[len(m.cursors)-1]
	m.cursors = m.cursors[:len(m.cursors)-1]
	return c
}

// timeRange is the keys of one kind (after prefix) whose time is in [fromUs, toUs].
func timeRange(prefix []byte, fromUs, toUs int64, reverse bool) keyRange {
	lo := (&key{b: bytes.Clone(prefix)}).i64(fromUs).b
	hi := prefixEnd(prefix)
	if toUs < maxTime {
		hi = (&key{b: bytes.Clone(prefix)}).i64(toUs + 1).b
	}
	return keyRange{lo: lo, hi: hi, reverse: reverse}
}

const maxTime = int64(^uint64(0) >> 1)
