package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
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
type DB struct {
	bdb   *badger.DB
	dir   string
	log   *slog.Logger
	root  namespace
	gate  *opGate
	usage *diskUsage

	stopGC chan struct{} // closed by Close to end gcLoop
	gcDone chan struct{} // closed by gcLoop when it returns
}

// Badger tuning for a small agent: the cache holds agent info, metadata and pending chunks,
// megabytes rather than gigabytes, and an idle agent should use little memory.
const (
	memTableSize     = 8 << 20  // badger's default is 64 MiB; each memtable is held in RAM
	numMemtables     = 2        // default 5
	blockCacheSize   = 8 << 20  // default 256 MiB; needed because blocks are compressed
	valueThreshold   = 1 << 10  // metadata stays in the LSM tree, span chunks go to the value log
	valueLogFileSize = 32 << 20 // default 1 GiB; small files let value-log GC reclaim space sooner
	numCompactors    = 2        // badger's minimum
	gcDiscardRatio   = 0.5      // rewrite a value-log file once half of it is garbage
)

// OpenBadger opens (creating it if needed) the badger database in dir. Badger's own log goes to
// log: its info and debug lines at slog's debug level, warnings and errors as such. A nil log
// discards them. cfg.GCInterval <= 0 means the default.
func OpenBadger(dir string, cfg Config, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "cache", "dir", dir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cache: create badger dir %q: %w", dir, err)
	}
	bdb, err := badger.Open(badgerOptions(dir, log))
	if err != nil {
		return nil, openError(dir, err)
	}
	db := &DB{
		bdb:    bdb,
		dir:    dir,
		log:    log,
		gate:   newOpGate(),
		usage:  newDiskUsage(dir, cfg.capacityBytes()),
		stopGC: make(chan struct{}),
		gcDone: make(chan struct{}),
	}
	db.root = newNamespace(db, "")
	go db.gcLoop(gcInterval(cfg))
	return db, nil
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

// openError explains the most common failure: badger holds an exclusive lock on its directory,
// and badger reports it only as text, the same on every platform.
func openError(dir string, err error) error {
	if strings.Contains(err.Error(), "Another process is using this Badger database") {
		return fmt.Errorf("cache: open badger at %q: the directory is locked, "+
			"another apmkit is probably running on this data dir: %w", dir, err)
	}
	return fmt.Errorf("cache: open badger at %q: %w", dir, err)
}

func gcInterval(cfg Config) time.Duration {
	if cfg.GCInterval > 0 {
		return cfg.GCInterval
	}
	return DefaultConfig().GCInterval
}

// Namespace implements Backend.
func (db *DB) Namespace(name string) Store { return newNamespace(db, name) }

// SizeBytes is the database's disk usage as the capacity cap sees it: the last measurement of
// the directory (at most a second old when called often) plus an estimate of what was written
// since. See diskUsage.
func (db *DB) SizeBytes() int64 {
	if !db.gate.enter() {
		return db.usage.estimate()
	}
	defer db.gate.leave()
	return db.usage.current()
}

// Get, Set, Delete and Scan work on the root namespace, Namespace("").
func (db *DB) Get(key []byte) ([]byte, error) { return db.root.Get(key) }

func (db *DB) Set(key, val []byte, ttl time.Duration) error { return db.root.Set(key, val, ttl) }

func (db *DB) Delete(key []byte) error { return db.root.Delete(key) }

func (db *DB) Scan(prefix []byte, fn func(key, val []byte) error) error {
	return db.root.Scan(prefix, fn)
}

// Close waits for the calls in progress and the value-log GC, then closes badger. Every later
// call, on the DB or any of its namespaces, Close included, returns ErrClosed. Close must not
// be called from a Scan callback (it would wait for that Scan).
func (db *DB) Close() error {
	if !db.gate.close() {
		return ErrClosed
	}
	close(db.stopGC)
	<-db.gcDone
	if err := db.bdb.Close(); err != nil {
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
	size := entrySize(key, val)
	if err := db.usage.admit(size); err != nil {
		return err
	}
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

func (db *DB) deleteFull(key []byte) error {
	if !db.gate.enter() {
		return ErrClosed
	}
	defer db.gate.leave()
	// No admit: deleting must work on a full cache, that is how it gets room again.
	if err := db.bdb.Update(func(txn *badger.Txn) error { return txn.Delete(key) }); err != nil {
		return fmt.Errorf("cache: delete: %w", err)
	}
	db.usage.wrote(entrySize(key, nil))
	return nil
}

func (db *DB) scanFull(prefix []byte, strip int, fn func(key, val []byte) error) error {
	if !db.gate.enter() {
		return ErrClosed
	}
	defer db.gate.leave()
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
			if err := fn(item.Key()[strip:], val); err != nil {
				return err // the caller's error, unwrapped
			}
		}
		return nil
	})
}

// gcLoop runs badger's value-log GC every interval until Close. Badger never reclaims value-log
// space by itself; without this, deleted and expired span chunks would fill the disk.
func (db *DB) gcLoop(interval time.Duration) {
	defer close(db.gcDone)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-db.stopGC:
			return
		case <-tick.C:
			db.collectValueLog()
		}
	}
}

// collectValueLog rewrites value-log files while badger finds one worth rewriting (each call
// handles at most one file), stopping early on Close.
func (db *DB) collectValueLog() {
	for {
		select {
		case <-db.stopGC:
			return
		default:
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

// opGate lets calls in until Close, and lets Close wait for the calls already in, so badger is
// never used after it is closed. Unlike a sync.RWMutex it tolerates a Scan callback calling
// back into the store while Close waits: the inner call gets ErrClosed instead of deadlocking.
type opGate struct {
	mu     sync.Mutex
	idle   *sync.Cond // signalled when active drops to 0
	active int
	closed bool
}

func newOpGate() *opGate {
	g := &opGate{}
	g.idle = sync.NewCond(&g.mu)
	return g
}

// enter reports whether the call may proceed; if so the caller must call leave.
func (g *opGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.active++
	return true
}

func (g *opGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.active == 0 {
		g.idle.Broadcast()
	}
}

// close shuts the gate and waits for the calls inside; it reports false if already closed.
func (g *opGate) close() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.closed = true
	for g.active > 0 {
		g.idle.Wait()
	}
	return true
}

func (g *opGate) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}
