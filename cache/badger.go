package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// DB is the badger Backend: one badger database in one directory, split into namespaces by
// key prefix. As a Store, *DB is the root namespace, Namespace(""), isolated from the named
// ones.
//
// Badger stores expiry in whole Unix seconds, so a TTL is rounded up to the next second: an
// entry lives at least ttl and at most about a second longer.
//
// Writes are not fsynced one by one (badger's SyncWrites is off): a crash can lose the last
// writes, which is acceptable for a cache of state that agents resend.
//
// A full disk is an error, not a crash (see diskSpace): while the data dir's file system has
// less free space than the reserve, Set and Delete return ErrDiskFull (StateDiskFull). If the
// disk is full when the DB opens, or badger fails to open, the DB runs degraded on a bounded
// in-memory store (StateMemory) and opens badger by itself once the disk has room, copying
// what the memory holds into it. Stats says which state the DB is in.
type DB struct {
	dir   string
	cfg   Config
	log   *slog.Logger
	opts  options
	root  namespace
	gate  *opGate
	space *diskSpace

	// The store in use: bdb, with usage (the capacity cap), while badger is open; else mem,
	// with tombs (StateMemory). They change only in reopen while the gate is paused, so a
	// call inside the gate reads them without a lock; others read memory.
	bdb    *badger.DB
	usage  *diskUsage
	mem    *Memory
	tombs  *tombstones
	memory atomic.Bool

	stateMu    sync.Mutex
	okSince    time.Time // when badger was opened
	memSince   time.Time // when the memory state began
	memReason  string
	openFailed bool // the memory state is due to badger failing to open, not to space

	lastSize                atomic.Int64 // SizeBytes' last answer, returned after Close
	refusedDisk, refusedCap atomic.Int64
	gcSkipped               atomic.Int64

	// abandoned is badger when Close found too little space to close it (see closeBadger).
	abandoned *badger.DB

	stop chan struct{} // closed by Close to end loop
	done chan struct{} // closed by loop when it returns
}

// Badger tuning for a small agent: the cache holds agent info, metadata and pending chunks,
// megabytes rather than gigabytes, and an idle agent should use little memory. The memtables
// are small also because the free-space reserve must hold their flush (minReserve).
const (
	memTableSize     = 4 << 20  // badger's default is 64 MiB; each memtable is held in RAM
	numMemtables     = 2        // default 5
	blockCacheSize   = 8 << 20  // default 256 MiB; needed because blocks are compressed
	valueThreshold   = 1 << 10  // metadata stays in the LSM tree, span chunks go to the value log
	valueLogFileSize = 32 << 20 // default 1 GiB; small files let value-log GC reclaim space sooner
	numCompactors    = 2        // badger's minimum
	gcDiscardRatio   = 0.5      // rewrite a value-log file once half of it is garbage
)

// The degraded (memory) state.
const (
	// maxMemoryBytes bounds the in-memory store of StateMemory (capacity_mb if lower).
	maxMemoryBytes = 64 << 20
	// maxTombstoneBytes bounds the keys deleted in StateMemory that are remembered, to be
	// deleted from badger's files when it opens again.
	maxTombstoneBytes = 8 << 20
	// closeMargin is the free space Close wants beyond badger's memtable logs, which its
	// final flush turns into a table.
	closeMargin = 1 << 20
	// pauseWait is how long reopen waits for the calls in progress, per attempt.
	pauseWait = 100 * time.Millisecond
)

// options are OpenBadger's Options.
type options struct {
	freeSpace  FreeSpaceFunc
	checkEvery time.Duration // how often loop measures the free space
	retryMin   time.Duration // first wait before opening badger again after it failed to open
	retryMax   time.Duration
}

// Option changes how OpenBadger opens the DB.
type Option func(*options)

// WithFreeSpace replaces the free-space measurement (statfs) with f, for tests.
func WithFreeSpace(f FreeSpaceFunc) Option {
	return func(o *options) { o.freeSpace = f }
}

// OpenBadger opens (creating it if needed) the badger database in dir. Badger's own log goes to
// log: its info and debug lines at slog's debug level, warnings and errors as such. A nil log
// discards them. cfg.GCInterval <= 0 means the default.
//
// If the disk is full (less free space than the reserve) or badger fails to open, OpenBadger
// still returns a DB, in StateMemory, and logs an error saying so. It fails only when dir
// cannot be created for another reason than space, or when another process holds the
// badger directory.
func OpenBadger(dir string, cfg Config, log *slog.Logger, opts ...Option) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "cache", "dir", dir)
	o := options{freeSpace: statfsFree, checkEvery: time.Second, retryMin: 10 * time.Second, retryMax: 5 * time.Minute}
	for _, opt := range opts {
		opt(&o)
	}
	db := &DB{
		dir:   dir,
		cfg:   cfg,
		log:   log,
		opts:  o,
		gate:  newOpGate(),
		space: newDiskSpace(dir, cfg.MinFreeMB, o.freeSpace),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	db.space.onChange = db.spaceChanged
	db.root = newNamespace(db, "")
	reason, openFailed, err := db.openFirst()
	if err != nil {
		return nil, err
	}
	if reason != "" {
		db.degrade(reason, openFailed)
	}
	go db.loop(gcInterval(cfg))
	return db, nil
}

// openFirst opens badger unless the disk is full. It returns why it did not (then the DB
// runs on memory), or an error when apmkit should not start at all.
func (db *DB) openFirst() (reason string, openFailed bool, err error) {
	db.memory.Store(true) // until badger is open: no disk_full log lines (see spaceChanged)
	if err := os.MkdirAll(db.dir, 0o750); err != nil {
		if !isNoSpace(err) {
			return "", false, fmt.Errorf("cache: create badger dir %q: %w", db.dir, err)
		}
		return fmt.Sprintf("the cache dir cannot be created: %v", err), false, nil
	}
	if !db.space.hasRoom(0) {
		return fmt.Sprintf("the disk is full: %s free on the data dir's file system, the cache needs %s (min_free_mb and badger's tables)",
			mib(db.space.free.Load()), mib(db.space.reserve()+hysteresis)), false, nil
	}
	bdb, err := badger.Open(badgerOptions(db.dir, db.log))
	if err != nil {
		err = openError(db.dir, err)
		if isLocked(err) {
			return "", false, err
		}
		return fmt.Sprintf("badger failed to open: %v", err), true, nil
	}
	db.bdb = bdb
	db.usage = newDiskUsage(db.dir, db.cfg.capacityBytes())
	db.okSince = time.Now()
	db.memory.Store(false)
	return "", false, nil
}

// degrade puts the DB on a fresh in-memory store. It runs before loop starts.
func (db *DB) degrade(reason string, openFailed bool) {
	limit := int64(maxMemoryBytes)
	if c := db.cfg.capacityBytes(); c > 0 {
		limit = min(limit, c)
	}
	db.mem = NewMemory(Config{CapacityMB: int(limit >> 20)})
	db.tombs = &tombstones{keys: map[string]struct{}{}}
	db.memory.Store(true)
	db.stateMu.Lock()
	db.memSince, db.memReason, db.openFailed = time.Now(), reason, openFailed
	db.stateMu.Unlock()
	db.log.Error("cache: DEGRADED: "+reason+"; the cache runs in memory (at most "+mib(limit)+
		", lost at restart; what earlier runs stored on disk is not visible) and "+db.recoveryText(openFailed),
		"free_bytes", db.space.free.Load(), "reserve_bytes", db.space.reserve())
}

// recoveryText says how StateMemory ends.
func (db *DB) recoveryText(openFailed bool) string {
	if openFailed {
		return fmt.Sprintf("tries to open badger again (after %s, then less and less often, at least every %s)", db.opts.retryMin, db.opts.retryMax)
	}
	return "opens badger again by itself once the disk has room"
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

func badgerOptions(dir string, log *slog.Logger) badger.Options {
	return badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log: log}).
		WithMemTableSize(memTableSize).
		WithNumMemtables(numMemtables).
		WithBlockCacheSize(blockCacheSize).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(valueLogFileSize).
		WithNumCompactors(numCompactors).
		// Every transaction is a single blind write or a read, so conflict tracking is waste.
		WithDetectConflicts(false).
		// Badger's metrics are process-global expvars; apmkit measures size itself (diskUsage).
		WithMetricsEnabled(false)
}

// lockedHint marks openError's explanation of a locked directory.
const lockedHint = "the directory is locked, another apmkit is probably running on this data dir"

// openError explains the most common failure: badger holds an exclusive lock on its directory,
// and badger reports it only as text, the same on every platform.
func openError(dir string, err error) error {
	if strings.Contains(err.Error(), "Another process is using this Badger database") {
		return fmt.Errorf("cache: open badger at %q: "+lockedHint+": %w", dir, err)
	}
	return fmt.Errorf("cache: open badger at %q: %w", dir, err)
}

func isLocked(err error) bool { return strings.Contains(err.Error(), lockedHint) }

func gcInterval(cfg Config) time.Duration {
	if cfg.GCInterval > 0 {
		return cfg.GCInterval
	}
	return DefaultConfig().GCInterval
}

// Namespace implements Backend.
func (db *DB) Namespace(name string) Store { return newNamespace(db, name) }

// MoveNamespace moves every live key of namespace from into namespace to (see Backend).
func (db *DB) MoveNamespace(from, to string) (int, error) { return moveNamespace(db, from, to) }

// SizeBytes is the database's disk usage as the capacity cap sees it: the last measurement of
// the directory (at most a second old when called often) plus an estimate of what was written
// since. See diskUsage. In StateMemory it is the in-memory store's size.
func (db *DB) SizeBytes() int64 {
	if !db.gate.enter() {
		return db.lastSize.Load()
	}
	defer db.gate.leave()
	var n int64
	if db.mem != nil {
		n = db.mem.SizeBytes()
	} else {
		n = db.usage.current()
	}
	db.lastSize.Store(n)
	return n
}

// State is the DB's state and, unless StateOK, what is wrong, in one sentence. It is cheap
// (no measurement), for health checks.
func (db *DB) State() (State, string) {
	st, problem, _ := db.state()
	return st, problem
}

func (db *DB) state() (State, string, time.Time) {
	db.stateMu.Lock()
	defer db.stateMu.Unlock()
	if db.memory.Load() {
		return StateMemory, "in memory since " + db.memSince.Format(time.RFC3339) + ": " + db.memReason +
			"; it " + db.recoveryText(db.openFailed), db.memSince
	}
	changed := db.space.changedAt()
	if db.space.full.Load() {
		return StateDiskFull, fmt.Sprintf("disk full: %s free on the data dir's file system, below the cache's reserve of %s: cache writes are refused until space returns",
			mib(db.space.free.Load()), mib(db.space.reserve())), changed
	}
	if changed.After(db.okSince) {
		return StateOK, "", changed
	}
	return StateOK, "", db.okSince
}

// Stats snapshots the DB's state and counters.
func (db *DB) Stats() Stats {
	st := Stats{
		Backend:      "badger",
		FreeBytes:    db.space.free.Load(),
		ReserveBytes: db.space.reserve(),
		Refused:      map[string]int64{ReasonDiskFull: db.refusedDisk.Load(), ReasonCapacity: db.refusedCap.Load()},
		GCSkipped:    db.gcSkipped.Load(),
	}
	st.State, st.Problem, st.Since = db.state()
	st.SizeBytes = db.SizeBytes()
	return st
}

// spaceChanged logs the disk_full state's start and end; it is diskSpace's onChange. In
// StateMemory the state is loop's business, not the writers'.
func (db *DB) spaceChanged(full bool, free, reserve int64) {
	if db.memory.Load() {
		return
	}
	if full {
		db.log.Warn("cache: disk full: cache writes are refused (counted) until space returns; apmkit goes on",
			"free_bytes", free, "reserve_bytes", reserve)
		return
	}
	db.log.Info("cache: disk space is back: cache writes are admitted again", "free_bytes", free, "reserve_bytes", reserve)
}

// Get, Set, Delete and Scan work on the root namespace, Namespace("").
func (db *DB) Get(key []byte) ([]byte, error) { return db.root.Get(key) }

func (db *DB) Set(key, val []byte, ttl time.Duration) error { return db.root.Set(key, val, ttl) }

func (db *DB) Delete(key []byte) error { return db.root.Delete(key) }

func (db *DB) Scan(prefix []byte, fn func(key, val []byte) error) error {
	return db.root.Scan(prefix, fn)
}

// Close waits for the calls in progress and the background loop (value-log GC, reopening),
// then closes badger. Every later call, on the DB or any of its namespaces, Close included,
// returns ErrClosed. Close must not be called from a Scan callback (it would wait for that
// Scan). On a disk too full for badger's final flush, Close logs an error and leaves badger
// to the end of the process (see closeBadger); it returns nil then.
func (db *DB) Close() error {
	if !db.gate.close() {
		return ErrClosed
	}
	close(db.stop)
	<-db.done
	if db.bdb == nil {
		_ = db.mem.Close()
		return nil
	}
	return db.closeBadger(db.bdb)
}

// closeBadger closes bdb unless the free space cannot take the flush of its memtables, which
// badger.Close writes through a memory map, as any table: on a full disk, that is a crash
// (SIGBUS) at the very end of a graceful stop. Then it leaves badger open and the process
// ends without closing it, as after kill -9: what badger wrote is in its memtable logs and
// value log (memory-mapped files, which the kernel keeps when the process ends) and badger
// replays the logs at the next open.
func (db *DB) closeBadger(bdb *badger.DB) error {
	db.space.mu.Lock()
	free := db.space.measureLocked(time.Now(), true)
	need := db.space.logs.Load() + closeMargin
	db.space.mu.Unlock()
	if free >= 0 && free < need {
		db.log.Error("cache: the disk is too full for badger's final flush: badger is not closed; it replays its log at the next start, nothing it took is lost",
			"free_bytes", free, "need_bytes", need)
		db.abandoned = bdb
		return nil
	}
	if err := bdb.Close(); err != nil {
		return fmt.Errorf("cache: close badger at %q: %w", db.dir, err)
	}
	return nil
}

func (db *DB) isClosed() bool { return db.gate.isClosed() }

func (db *DB) getFull(key []byte) ([]byte, error) {
	if !db.gate.enter() {
		return nil, ErrClosed
	}
	defer db.gate.leave()
	if db.mem != nil {
		return db.mem.getFull(key)
	}
	var val []byte
	err := db.bdb.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		val, err = item.ValueCopy(nil)
		return err
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("cache: get: %w", err)
	case val == nil:
		return []byte{}, nil // present but empty must differ from absent
	}
	return val, nil
}

func (db *DB) setFull(key, val []byte, ttl time.Duration) error {
	if !db.gate.enter() {
		return ErrClosed
	}
	defer db.gate.leave()
	if db.mem != nil {
		err := db.mem.setFull(key, val, ttl)
		if errors.Is(err, ErrFull) {
			db.refusedCap.Add(1)
		}
		return err
	}
	size := entrySize(key, val)
	if err := db.usage.admit(size); err != nil {
		db.refusedCap.Add(1)
		return err
	}
	if !db.space.admit(size) {
		db.refusedDisk.Add(1)
		return ErrDiskFull
	}
	defer db.space.done(size)
	e := badger.NewEntry(key, val)
	if ttl > 0 {
		e.ExpiresAt = expiresAt(time.Now(), ttl)
	}
	// Update returns after the entry is in the memtable and log, which hold their own copies,
	// so the caller may reuse val at once.
	if err := db.bdb.Update(func(txn *badger.Txn) error { return txn.SetEntry(e) }); err != nil {
		return fmt.Errorf("cache: set: %w", err)
	}
	db.usage.wrote(size)
	return nil
}

// expiresAt is now+ttl in Unix seconds, rounded up: badger drops an entry once the current
// Unix second reaches ExpiresAt, so rounding down (as badger's WithTTL does) could expire a
// sub-second TTL at once.
func expiresAt(now time.Time, ttl time.Duration) uint64 {
	at := now.Add(ttl)
	secs := at.Unix()
	if at.Nanosecond() > 0 {
		secs++
	}
	if secs <= 0 {
		return 1 // already expired; 0 would mean "keep"
	}
	return uint64(secs)
}

// timeLeft is the time an entry expiring at badger's ExpiresAt (Unix seconds; 0 = never)
// has left to live, at least a second: a live entry is not handed on as expired.
func timeLeft(expiresAt uint64) time.Duration {
	if expiresAt == 0 {
		return 0
	}
	return max(time.Until(time.Unix(int64(expiresAt), 0)), time.Second)
}

func (db *DB) deleteFull(key []byte) error {
	if !db.gate.enter() {
		return ErrClosed
	}
	defer db.gate.leave()
	if db.mem != nil {
		db.tombs.add(key)
		return db.mem.deleteFull(key)
	}
	// No capacity check: deleting must work on a full cache, that is how it gets room again.
	// A delete still writes a tombstone to badger's log, so the disk needs some room.
	size := entrySize(key, nil)
	if !db.space.admitDelete(size) {
		db.refusedDisk.Add(1)
		return ErrDiskFull
	}
	defer db.space.done(size)
	if err := db.bdb.Update(func(txn *badger.Txn) error { return txn.Delete(key) }); err != nil {
		return fmt.Errorf("cache: delete: %w", err)
	}
	db.usage.wrote(size)
	return nil
}

func (db *DB) scanFull(prefix []byte, strip int, fn func(key, val []byte, ttl time.Duration) error) error {
	if !db.gate.enter() {
		return ErrClosed
	}
	defer db.gate.leave()
	if db.mem != nil {
		return db.mem.scanFull(prefix, strip, fn)
	}
	return db.bdb.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchValues = false // values are read one by one below, no prefetch goroutines
		it := txn.NewIterator(opts)
		defer it.Close()
		var val []byte
		for it.Seek(prefix); it.Valid(); it.Next() {
			item := it.Item()
			// A copy, not item.Value(fn): that holds a value-log read lock during fn, and a Set
			// from fn that rotates the value log would wait for it forever.
			var err error
			if val, err = item.ValueCopy(val[:0]); err != nil {
				return fmt.Errorf("cache: scan: read value: %w", err)
			}
			if err := fn(item.Key()[strip:], val, timeLeft(item.ExpiresAt())); err != nil {
				return err // the caller's error, unwrapped
			}
		}
		return nil
	})
}

// loop runs until Close: it measures the free space every checkEvery (so the state recovers
// without a write to notice), runs badger's value-log GC every gcEvery, and in StateMemory
// opens badger again once the disk has room.
func (db *DB) loop(gcEvery time.Duration) {
	defer close(db.done)
	gc := time.NewTicker(gcEvery)
	defer gc.Stop()
	check := time.NewTicker(db.opts.checkEvery)
	defer check.Stop()
	retry := db.opts.retryMin
	var next time.Time // no attempt to open badger before
	db.stateMu.Lock()
	if db.openFailed {
		next = time.Now().Add(retry)
	}
	db.stateMu.Unlock()
	for {
		select {
		case <-db.stop:
			return
		case <-check.C:
			if !db.memory.Load() {
				db.space.measure()
				continue
			}
			if time.Now().Before(next) || !db.space.hasRoom(2*db.mem.SizeBytes()) {
				continue
			}
			err := db.reopen()
			if errors.Is(err, errStopping) {
				return
			}
			if err != nil {
				db.log.Warn("cache: badger still fails to open: the cache stays in memory", "err", err, "retry_in", retry)
				next = time.Now().Add(retry)
				retry = min(2*retry, db.opts.retryMax)
			}
		case <-gc.C:
			if !db.memory.Load() {
				db.collectValueLog()
			}
		}
	}
}

// errStopping: Close came while reopen waited.
var errStopping = errors.New("cache: closing")

// reopen opens badger in StateMemory, then, with every call held at the gate, copies the
// memory store into it (deletes first) and switches to it. Only loop calls it.
func (db *DB) reopen() error {
	if err := os.MkdirAll(db.dir, 0o750); err != nil {
		return fmt.Errorf("cache: create badger dir %q: %w", db.dir, err)
	}
	bdb, err := badger.Open(badgerOptions(db.dir, db.log))
	if err != nil {
		return openError(db.dir, err)
	}
	for !db.gate.pause(pauseWait) {
		select {
		case <-db.stop:
			_ = db.closeBadger(bdb)
			return errStopping
		case <-time.After(pauseWait / 10):
		}
	}
	defer db.gate.resume()
	copied, dropped := db.migrate(bdb)
	_ = db.mem.Close()
	lost := db.tombs.lost
	db.bdb, db.usage, db.mem, db.tombs = bdb, newDiskUsage(db.dir, db.cfg.capacityBytes()), nil, nil
	db.stateMu.Lock()
	db.okSince = time.Now()
	db.memory.Store(false)
	db.stateMu.Unlock()
	db.log.Warn("cache: badger is open again, the cache is back on disk", "copied_from_memory", copied,
		"dropped", dropped, "deletes_forgotten", lost, "degraded_for", time.Since(db.memSince).Round(time.Second).String())
	if lost > 0 {
		db.log.Warn("cache: some keys deleted while in memory were too many to remember: they may come back from disk until their TTL ends", "keys", lost)
	}
	if db.space.full.Load() {
		db.spaceChanged(true, db.space.free.Load(), db.space.reserve())
	}
	return nil
}

// migrate writes the memory store's deletes and live entries (with what is left of their
// TTL) into bdb, as far as the free space admits them. The gate is paused.
func (db *DB) migrate(bdb *badger.DB) (copied, dropped int) {
	wb := bdb.NewWriteBatch()
	defer wb.Cancel()
	var firstErr error
	for key := range db.tombs.keys {
		if err := wb.Delete([]byte(key)); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	now := time.Now()
	var admitted int64 // done once the batch is flushed
	defer func() { db.space.done(admitted) }()
	db.mem.each(func(key string, val []byte, expires time.Time) {
		size := entrySize([]byte(key), val)
		if !db.space.admit(size) {
			db.refusedDisk.Add(1)
			dropped++
			return
		}
		admitted += size
		e := badger.NewEntry([]byte(key), val)
		if !expires.IsZero() {
			e.ExpiresAt = expiresAt(now, expires.Sub(now))
		}
		if err := wb.SetEntry(e); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			dropped++
			return
		}
		copied++
	})
	if err := wb.Flush(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		db.log.Error("cache: copying the memory store into badger failed in part", "err", firstErr)
	}
	return copied, dropped
}

// gcRoom is the free space above the reserve that value-log GC needs: it rewrites the live
// values of a file whose garbage is at least gcDiscardRatio, then deletes the file.
const gcRoom = valueLogFileSize - int64(valueLogFileSize*gcDiscardRatio)

// collectValueLog rewrites value-log files while badger finds one worth rewriting (each call
// handles at most one file), stopping early on Close, and skipping the run when the free space
// could not take a rewrite on top of the reserve (gcRoom). Badger never reclaims value-log
// space by itself; without this, deleted and expired span chunks would fill the disk.
func (db *DB) collectValueLog() {
	for {
		select {
		case <-db.stop:
			return
		default:
		}
		if !db.space.hasRoom(gcRoom) {
			db.gcSkipped.Add(1)
			db.log.Debug("cache: value log GC skipped: not enough free space for a rewrite")
			return
		}
		err := db.bdb.RunValueLogGC(gcDiscardRatio)
		if err == nil {
			continue
		}
		// ErrNoRewrite: nothing left to reclaim. ErrRejected: a GC is already running.
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			db.log.Warn("cache: value log GC failed", "err", err)
		}
		return
	}
}

// tombstones are the keys deleted in StateMemory: they may exist in badger's files from an
// earlier run and must be deleted there when badger opens again. Only the DB's calls (inside
// the gate) and reopen (gate paused) use them.
type tombstones struct {
	mu    sync.Mutex
	keys  map[string]struct{}
	bytes int64
	lost  int64 // deletes not remembered, beyond maxTombstoneBytes
}

func (t *tombstones) add(key []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.keys[string(key)]; ok {
		return
	}
	if t.bytes+int64(len(key)) > maxTombstoneBytes {
		t.lost++
		return
	}
	t.keys[string(key)] = struct{}{}
	t.bytes += int64(len(key))
}

// mib formats bytes for messages.
func mib(n int64) string {
	if n < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
