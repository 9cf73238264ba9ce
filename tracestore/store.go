// Package tracestore is the explorer's local trace store: a badger database in
// DATA_DIR/explorer that keeps the spans, transactions, service-map counts, stat samples
// and agents apmkit wrote, for the embedded explorer's searches, within a retention by age
// and by size.
//
// Data is kept in partitions by the time apmkit stored it (not by the data's own time, so
// replayed or late data is kept as long as fresh data). A partition is one key range;
// retention drops whole partitions, oldest first: once their newest data is older than
// retention, or while the store is larger than max_mb. Within a partition, indexes answer
// the searches: transactions by start time, by application and failed ones, a trace's
// spans by trace id, service-map counts and stat samples by time. Queries merge the
// partitions in key order, so their memory does not grow with the data.
package tracestore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/apmkit/apmkit/cache"
)

// Options configure a Store; zero values take the defaults.
type Options struct {
	// Retention is how long data is kept after apmkit stored it.
	Retention time.Duration
	// MaxBytes bounds the store's disk usage: beyond it the oldest partitions are dropped.
	MaxBytes int64
	Log      *slog.Logger

	// Tests replace these.
	Now         func() time.Time
	FreeSpace   cache.FreeSpaceFunc
	CheckEvery  time.Duration // how often retention runs in the background
	ReopenEvery time.Duration // how often a store closed by a full disk checks for room
}

// Defaults.
const (
	DefaultRetention = 72 * time.Hour
	DefaultMaxBytes  = 1 << 30
	defaultCheck     = time.Minute
	defaultReopen    = 5 * time.Second // a closed store checks the disk for room
	// partitionsPerRetention: a partition covers an eighth of the retention and of max_mb,
	// so data is kept at most an eighth longer than retention, and size retention drops
	// about an eighth of the store at a time.
	partitionsPerRetention = 8
	minPartitionAge        = time.Minute
)

// Badger tuning: a store of up to a few GiB written in batches, read by a person. Values
// stay small (see maxString) and under the value threshold, so the value log holds nothing
// and a dropped partition's tables are deleted whole.
const (
	memTableSize   = 8 << 20
	numMemtables   = 2
	blockCacheSize = 16 << 20
	indexCacheSize = 16 << 20 // table indexes and bloom filters: bounded, not one per table in RAM
	valueThreshold = 512 << 10
	numCompactors  = 2
)

// Store is the local trace store. Write is safe for concurrent use with the queries and
// with itself; Close stops the background work and closes the database.
//
// On a disk already full when it opens, the store stays closed rather than open badger
// (which writes through memory maps: a crash on a full disk): writes are refused with
// ErrDiskFull, queries answer ErrUnavailable, and the background loop opens badger once
// the disk has room.
type Store struct {
	dir   string
	opts  Options
	log   *slog.Logger
	bdb   atomic.Pointer[badger.DB] // nil while closed (full disk at start)
	space *spaceGuard

	mu    sync.Mutex  // the partitions and the writer's state
	parts []partition // ascending ids; the last is the one being written
	// sealed: the last partition takes no more writes (size retention could not drop
	// anything else); the next write opens a new one.
	sealed  bool
	seen    map[string]int64 // agents' last-seen times already written to the current partition
	ordinal atomic.Uint64

	counters counters

	closeOnce sync.Once
	closeErr  error
	stop      chan struct{}
	done      chan struct{}
}

// ErrDiskFull is returned by Write while the data dir's file system has less free space
// than the store needs to write safely (badger writes through memory maps, where a full
// disk is a crash, not an error).
var ErrDiskFull = errors.New("tracestore: disk full, write refused")

// ErrUnavailable is returned by queries while the store is closed: the disk was full when
// apmkit started, and the store opens by itself once there is room.
var ErrUnavailable = errors.New("the explorer's store is not open: the disk was full when apmkit started; it opens by itself once there is room")

// ErrMalformed wraps line protocol that does not parse.
var ErrMalformed = errors.New("tracestore: malformed line protocol")

// Open opens (creating it) the store in dir and starts its background retention. It fails
// only for what a restart would not cure (a locked or unreadable directory), not for a
// full disk (see Store).
func Open(dir string, opts Options) (*Store, error) {
	opts = withDefaults(opts)
	s := &Store{
		dir:   dir,
		opts:  opts,
		log:   opts.Log,
		space: newSpaceGuard(dir, opts.FreeSpace),
		seen:  map[string]int64{},
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	s.ordinal.Store(uint64(opts.Now().UnixNano()))
	if err := s.tryOpen(); err != nil {
		return nil, err
	}
	go s.loop()
	return s, nil
}

// tryOpen opens badger and reads the partitions, unless the disk is full.
func (s *Store) tryOpen() error {
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return nil
		}
		return fmt.Errorf("tracestore: %w", err)
	}
	if !s.space.room(true) {
		return nil
	}
	db, err := badger.Open(badgerOptions(s.dir, s.log))
	if err != nil {
		return fmt.Errorf("tracestore: open badger at %q: %w", s.dir, err)
	}
	if err := s.loadPartitions(db); err != nil {
		_ = db.Close()
		return err
	}
	s.bdb.Store(db)
	return nil
}

// db is badger, nil while the store is closed.
func (s *Store) db() *badger.DB { return s.bdb.Load() }

func withDefaults(o Options) Options {
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FreeSpace == nil {
		o.FreeSpace = cache.FreeSpace
	}
	if o.CheckEvery <= 0 {
		o.CheckEvery = defaultCheck
	}
	if o.ReopenEvery <= 0 {
		o.ReopenEvery = defaultReopen
	}
	return o
}

func badgerOptions(dir string, log *slog.Logger) badger.Options {
	return badger.DefaultOptions(dir).
		WithLogger(cache.BadgerLogger(log.With("component", "tracestore"))).
		WithMemTableSize(memTableSize).
		WithNumMemtables(numMemtables).
		WithBlockCacheSize(blockCacheSize).
		WithIndexCacheSize(indexCacheSize).
		WithValueThreshold(valueThreshold).
		WithNumCompactors(numCompactors).
		WithDetectConflicts(false).
		WithMetricsEnabled(false)
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// loop runs retention and badger's value-log GC until Close; while the store is closed,
// it opens it once the disk has room.
func (s *Store) loop() {
	defer close(s.done)
	if s.db() == nil {
		s.log.Error("tracestore: DEGRADED: the disk is full; the explorer's store stays closed (writes refused, the explorer answers 503) and opens by itself once there is room", "dir", s.dir)
	}
	for {
		wait := s.opts.CheckEvery
		if s.db() == nil {
			wait = s.opts.ReopenEvery
		}
		t := time.NewTimer(wait)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if s.db() == nil {
			if err := s.tryOpen(); err != nil {
				s.log.Warn("tracestore: open", "err", err)
			} else if s.db() != nil {
				s.log.Info("tracestore: the disk has room again: the explorer's store is open", "dir", s.dir)
			}
			continue
		}
		s.enforce()
		// Values stay in the LSM tree; this only reclaims what a future format puts in the
		// value log.
		for s.db().RunValueLogGC(0.5) == nil {
		}
	}
}

// Close stops the background work and closes the database. On a full disk badger is left
// unclosed: its final flush writes through memory maps and would crash apmkit; it replays
// its log at the next open instead. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		db := s.db()
		if db == nil {
			return
		}
		if !s.space.room(true) {
			s.log.Warn("tracestore: disk full at stop: the store is left for badger to recover at the next start", "dir", s.dir)
			return
		}
		if err := db.Close(); err != nil {
			s.closeErr = fmt.Errorf("tracestore: close: %w", err)
		}
	})
	return s.closeErr
}
