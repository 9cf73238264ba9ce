package tracestore

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/apmkit/apmkit/cache"
)

// loadPartitions reads the partitions' bookkeeping, then drops key ranges no bookkeeping
// names: a drop interrupted between badger's DropPrefix and the removal of its meta key
// leaves the meta key (dropped again below, harmless), never data without one.
func (s *Store) loadPartitions(db *badger.DB) error {
	prefix := newKey(0, kindPart).b
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefix)+4 {
				continue
			}
			p := partition{id: binary.BigEndian.Uint32(k[len(prefix):])}
			err := it.Item().Value(func(v []byte) error { return decodePartition(v, &p) })
			if err != nil || p.id == 0 {
				s.counters.corrupt.Add(1)
				continue
			}
			s.parts = append(s.parts, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tracestore: read partitions: %w", err)
	}
	return s.dropOrphans(db)
}

// dropOrphans drops the key ranges of partition ids that have no bookkeeping.
func (s *Store) dropOrphans(db *badger.DB) error {
	known := map[uint32]bool{0: true}
	for _, p := range s.parts {
		known[p.id] = true
	}
	var orphans [][]byte
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Seek(partitionPrefix(1)); it.Valid(); {
			pid := binary.BigEndian.Uint32(it.Item().Key())
			if !known[pid] {
				orphans = append(orphans, partitionPrefix(pid))
			}
			if pid == ^uint32(0) {
				break
			}
			it.Seek(partitionPrefix(pid + 1))
		}
		return nil
	})
	if err != nil || len(orphans) == 0 {
		return err
	}
	s.log.Warn("tracestore: dropping data of partitions without bookkeeping", "partitions", len(orphans))
	return db.DropPrefix(orphans...)
}

// partitionAge is how long a partition takes writes before the next one opens.
func (s *Store) partitionAge() time.Duration {
	return min(max(s.opts.Retention/partitionsPerRetention, minPartitionAge), 24*time.Hour)
}

// partitionBytes is how many bytes a partition takes before the next one opens.
func (s *Store) partitionBytes() int64 { return max(s.opts.MaxBytes/partitionsPerRetention, 1<<20) }

// current returns the partition to write to, opening a new one when the last is sealed,
// old or big enough. The caller holds s.mu.
func (s *Store) current(nowMs int64) *partition {
	if n := len(s.parts); n > 0 && !s.sealed {
		p := &s.parts[n-1]
		young := time.Duration(nowMs-p.createdMs)*time.Millisecond < s.partitionAge()
		if young && p.bytes < s.partitionBytes() {
			return p
		}
	}
	id := uint32(1)
	if n := len(s.parts); n > 0 {
		id = s.parts[n-1].id + 1
	}
	s.parts = append(s.parts, partition{id: id, createdMs: nowMs, lastMs: nowMs})
	s.sealed = false
	clear(s.seen)
	return &s.parts[len(s.parts)-1]
}

// enforce applies the retention now: it drops the partitions whose newest data is older
// than the retention, then the oldest ones while the store is larger than its maximum.
// The background loop calls it; tests call it to get a deterministic result.
func (s *Store) enforce() {
	nowMs := s.opts.Now().UnixMilli()
	for _, p := range s.expired(nowMs) {
		s.drop(p, "age")
	}
	for {
		p, ok := s.oversize()
		if !ok {
			return
		}
		s.drop(p, "size")
	}
}

// expired takes the partitions whose last write is older than the retention out of the
// list (the one being written included: then the next write opens a new one).
func (s *Store) expired(nowMs int64) []partition {
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := nowMs - s.opts.Retention.Milliseconds()
	var gone []partition
	keep := s.parts[:0]
	for _, p := range s.parts {
		if p.lastMs < limit {
			gone = append(gone, p)
			continue
		}
		keep = append(keep, p)
	}
	s.parts = keep
	return gone
}

// oversize takes the oldest partition out of the list while the store is over its
// maximum. When only the partition being written is left, it is sealed instead: the next
// write opens a new one, and the next check drops it.
func (s *Store) oversize() (partition, bool) {
	total, _ := cache.DirUsage(s.dir)
	if total <= s.opts.MaxBytes {
		return partition{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.parts) <= 1 {
		s.sealed = len(s.parts) == 1
		return partition{}, false
	}
	p := s.parts[0]
	s.parts = s.parts[1:]
	return p, true
}

// drop deletes a partition: its key range, then its bookkeeping. It no longer takes
// writes (it left the list under s.mu), so badger's DropPrefix, which pauses writes while
// it deletes the tables, runs without s.mu.
func (s *Store) drop(p partition, reason string) {
	if !s.space.room(true) {
		// DropPrefix flushes memtables and may rewrite tables: not on a full disk. The
		// partition stays on disk, unlisted; its bookkeeping lists it again at the next
		// open, and retention drops it then.
		s.log.Warn("tracestore: disk full: a partition past its retention stays on disk until the next start", "partition", p.id)
		return
	}
	db := s.db()
	if db == nil {
		return
	}
	if err := db.DropPrefix(partitionPrefix(p.id)); err != nil {
		s.log.Warn("tracestore: drop partition", "partition", p.id, "err", err)
		return
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Delete(metaKey(p.id)) }); err != nil {
		s.log.Warn("tracestore: drop partition bookkeeping", "partition", p.id, "err", err)
	}
	s.counters.dropped(reason).Add(1)
	s.log.Debug("tracestore: partition dropped", "partition", p.id, "reason", reason)
}

// partitionIDs lists the partitions to read, oldest first.
func (s *Store) partitionIDs() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]uint32, len(s.parts))
	for i, p := range s.parts {
		ids[i] = p.id
	}
	return ids
}
