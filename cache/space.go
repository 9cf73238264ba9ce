package cache

import (
	"sync"
	"sync/atomic"
	"time"
)

// The free-space reserve (see diskSpace).
const (
	// minReserve is the smallest reserve, Config.MinFreeMB's default: badger flushes each of
	// its memtables into a level-0 table of about the memtable's size, and on Close (or when
	// it replays its log at open) it may flush all of them at once; 2 MiB more for the
	// manifest, the discard-stats file and the headers of new log files.
	minReserve = numMemtables*memTableSize + 2<<20
	// maxCompactionReserve caps what the reserve adds for compactions: a level-0 compaction
	// of a small cache rewrites every table before deleting the old ones, so the reserve
	// grows with the tables' size; once the tables outgrow badger's base level, compactions
	// rewrite a few tables at a time and this is plenty.
	maxCompactionReserve = 64 << 20
	// hysteresis is the room above the reserve that ends the disk_full state, so that a
	// disk at the edge does not flip between states on every write.
	hysteresis = 2 << 20
	// tablesEvery bounds how often the cache dir is listed for the size of badger's tables.
	tablesEvery = time.Second
)

// FreeSpaceFunc returns the bytes of the file system holding dir that apmkit may still
// write (statfs's f_bavail times the block size), or an error when it cannot tell. The
// default is the operating system's; tests pass a fake one with WithFreeSpace.
type FreeSpaceFunc func(dir string) (int64, error)

// State is the cache's health, as reported in Stats, /v1/ping and apmkit monitor.
type State string

const (
	// StateOK: badger is open and takes writes.
	StateOK State = "ok"
	// StateDiskFull: badger is open, but the free space is below the reserve: writes are
	// refused with ErrDiskFull (and counted), reads still work. Writes are admitted again
	// once the free space is back above the reserve (plus a small margin).
	StateDiskFull State = "disk_full"
	// StateMemory: badger could not be opened (the disk was full at start, or badger failed
	// to open): the cache runs on a bounded in-memory store, so what it holds does not
	// survive a restart and the data of earlier runs on disk is not visible. Once space
	// returns, badger is opened again and what the memory holds is copied into it.
	StateMemory State = "memory"
	// StateRedisDown: Redis does not answer (or not in time, see Config.RedisTimeout).
	// Writes are kept in a bounded in-memory fallback, reads of the keys written since are
	// served from it, other reads fail at once with ErrUnavailable. Redis is tried again
	// every second.
	StateRedisDown State = "redis_down"
	// StateRedisCatchingUp: Redis answers again and the writes kept in the fallback are
	// being written to it; then the state is ok again.
	StateRedisCatchingUp State = "redis_catching_up"
)

// States lists every State, for metrics that report each.
func States() []State {
	return []State{StateOK, StateDiskFull, StateMemory, StateRedisDown, StateRedisCatchingUp}
}

// Refusal reasons, the keys of Stats.Refused.
const (
	// ReasonDiskFull counts writes refused with ErrDiskFull.
	ReasonDiskFull = "disk_full"
	// ReasonCapacity counts writes refused with ErrFull: the capacity_mb cap, or in the
	// memory state the in-memory store's bound.
	ReasonCapacity = "capacity"
	// ReasonRedisUnavailable counts writes refused while Redis was unavailable because the
	// local fallback was full (or off, redis_fallback_mb = 0).
	ReasonRedisUnavailable = "redis_unavailable"
)

// Stats is a snapshot of the cache, for /v1/stats, apmkit monitor and /metrics.
type Stats struct {
	// Backend is "badger" or "redis".
	Backend string `json:"backend"`
	State   State  `json:"state"`
	// Problem says what is wrong and what happens next; empty in StateOK.
	Problem string `json:"problem,omitempty"`
	// Since is when the cache entered State.
	Since time.Time `json:"since"`
	// SizeBytes is what the capacity cap is checked against (Backend.SizeBytes).
	SizeBytes int64 `json:"size_bytes"`
	// FreeBytes is the data dir's file system's free space at the last measurement; -1 when
	// it cannot be measured (then no reserve is enforced), and with Redis.
	FreeBytes int64 `json:"free_bytes"`
	// ReserveBytes is the free space the cache leaves (MinFreeMB plus its tables, see
	// diskSpace); FreeBytes below it is StateDiskFull.
	ReserveBytes int64 `json:"reserve_bytes"`
	// Refused counts the writes refused, by reason (ReasonDiskFull, ReasonCapacity,
	// ReasonRedisUnavailable): each backend reports its own.
	Refused map[string]int64 `json:"refused"`
	// GCSkipped counts value-log GC runs skipped because the free space could not take
	// the rewrite of a value-log file.
	GCSkipped int64 `json:"gc_skipped"`
	// Redis is the Redis backend's own part; nil with badger.
	Redis *RedisStats `json:"redis,omitempty"`
}

// diskSpace keeps badger's writes within the free space of the data dir's file system, less
// a reserve.
//
// Why: badger creates its memtable logs (.mem) and value-log files (.vlog) as sparse files
// (ftruncate to twice their nominal size) and writes them, and its tables (.sst), through
// memory maps. When a write touches a page that has no disk block behind it and the file
// system has none left, the kernel raises SIGBUS and the Go runtime dies with "fatal error:
// fault": no error reaches badger or apmkit. So writes are refused (ErrDiskFull) while the
// free space is below the reserve, which is sized for the work badger does on its own after
// the last admitted write: flushing its memtables (minReserve), compacting its tables (the
// tables' size, up to maxCompactionReserve). Value-log GC, which rewrites up to half a
// value-log file, runs only with that much free above the reserve (gcRoom).
//
// The free space is measured (statfs, half a microsecond) before every write, less the
// writes admitted and not done yet: a measurement even a second old would let a write
// through after another writer of the file system (the io spill, another program) took the
// last of the space, and that write would crash apmkit. The reserve protects badger from
// its own writes, not from others': if another writer takes the reserve's space while
// badger flushes or compacts on its own, that write faults. That residual risk is in the
// README.
type diskSpace struct {
	dir    string
	statfs FreeSpaceFunc
	floor  int64 // the configured reserve, at least minReserve

	free   atomic.Int64 // bytes free at the last measurement; -1 = unknown
	tables atomic.Int64 // bytes of badger's tables (.sst), for the reserve
	logs   atomic.Int64 // bytes of badger's memtable logs (.mem): what a flush writes
	full   atomic.Bool  // free < reserve (StateDiskFull when badger is open)

	// onChange is called, with mu held, when full changes.
	onChange func(full bool, free, reserve int64)

	mu        sync.Mutex // one measurement at a time
	inflight  int64      // bytes admitted whose write is not done; guarded by mu
	tablesAt  time.Time  // when tables was measured; guarded by mu
	fullSince time.Time  // guarded by mu
}

func newDiskSpace(dir string, minFreeMB int, statfs FreeSpaceFunc) *diskSpace {
	floor := max(int64(minFreeMB)<<20, minReserve)
	s := &diskSpace{dir: dir, statfs: statfs, floor: floor}
	s.free.Store(-1)
	return s
}

// reserve is the free space writes must leave.
func (s *diskSpace) reserve() int64 {
	return s.floor + min(s.tables.Load(), maxCompactionReserve)
}

// measure reads the free space (and, at most once per tablesEvery, the size of badger's
// files) and updates the full state. It returns the free space, -1 if unknown.
func (s *diskSpace) measure() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.measureLocked(time.Now(), false)
}

// measureLocked does the measurement; forceTables lists the dir whatever its age. The caller
// holds mu.
func (s *diskSpace) measureLocked(now time.Time, forceTables bool) int64 {
	if forceTables || now.Sub(s.tablesAt) >= tablesEvery {
		sz := dirBytes(s.dir)
		s.tables.Store(sz.tables)
		s.logs.Store(sz.logs)
		s.tablesAt = now
	}
	free, err := s.statfs(s.dir)
	if err != nil || free < 0 {
		free = -1
	}
	s.free.Store(free)
	reserve := s.reserve()
	switch full := s.full.Load(); {
	case free < 0:
		// Unknown: enforce nothing rather than stop the cache on a measurement problem.
		if full {
			s.setFull(false, now, free, reserve)
		}
	case !full && free < reserve:
		s.setFull(true, now, free, reserve)
	case full && free >= reserve+hysteresis:
		s.setFull(false, now, free, reserve)
	}
	return free
}

func (s *diskSpace) setFull(full bool, now time.Time, free, reserve int64) {
	s.full.Store(full)
	s.fullSince = now
	if s.onChange != nil {
		s.onChange(full, free, reserve)
	}
}

// changedAt returns when full last changed (zero if never).
func (s *diskSpace) changedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fullSince
}

// admit measures the free space and reports whether a write of n bytes leaves the reserve
// free (and the state is not disk_full). If so, the caller must call done(n) once the
// write returned.
func (s *diskSpace) admit(n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	free := s.measureLocked(time.Now(), false)
	if free >= 0 && (s.full.Load() || free-s.inflight-n < s.reserve()) {
		return false
	}
	s.inflight += n
	return true
}

// admitDelete is admit for a delete: a tombstone of a few dozen bytes, which must work as
// long as possible (deleting is how the cache frees space), so it may use half the reserve.
func (s *diskSpace) admitDelete(n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	free := s.measureLocked(time.Now(), false)
	if free >= 0 && free-s.inflight-n < s.reserve()/2 {
		return false
	}
	s.inflight += n
	return true
}

// done ends what admit or admitDelete let through: the bytes are on the file system now
// (or were never written), the next measurement sees them.
func (s *diskSpace) done(n int64) {
	s.mu.Lock()
	s.inflight -= n
	s.mu.Unlock()
}

// hasRoom measures now and reports whether extra bytes fit above the reserve and the
// hysteresis: the condition to start something that writes in bulk behind admit's back
// (value-log GC, reopening badger). Unknown free space counts as room.
func (s *diskSpace) hasRoom(extra int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	free := s.measureLocked(time.Now(), true)
	return free < 0 || free-s.inflight >= s.reserve()+hysteresis+extra
}
