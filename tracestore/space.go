package tracestore

import (
	"sync"
	"time"

	"github.com/apmkit/apmkit/cache"
)

// spaceGuard keeps the store's writes off a full disk, as the cache does: badger flushes
// memtables into tables and compacts them through memory maps, and a mapped write that
// finds the disk full kills the process (SIGBUS). So writes are refused while the file
// system has less free space than what badger may still write on its own: its memtables'
// flush, a compaction's rewrite (up to maxCompaction) and a margin.
type spaceGuard struct {
	dir  string
	free cache.FreeSpaceFunc

	mu     sync.Mutex
	listed time.Time // when tables was measured
	tables int64
	ok     bool
}

const (
	spaceMargin   = 2 << 20
	maxCompaction = 64 << 20
	spaceEvery    = time.Second // a directory listing for the tables' size at most this often
)

func newSpaceGuard(dir string, free cache.FreeSpaceFunc) *spaceGuard {
	return &spaceGuard{dir: dir, free: free, ok: true}
}

// reserve is the free space the store leaves, given its tables' size.
func reserve(tables int64) int64 {
	return numMemtables*memTableSize + spaceMargin + min(tables, maxCompaction)
}

// room reports whether writing is safe. The free space is measured at every call (a
// statfs, once per batch): another writer may fill the disk within a second, and a write
// admitted on a stale measurement is the one that faults. The tables' size, a directory
// listing, is measured again when older than spaceEvery (or when force is set). A platform
// that cannot measure is trusted.
func (g *spaceGuard) room(force bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	free, err := g.free(g.dir)
	if err != nil {
		g.ok = true
		return true
	}
	if now := time.Now(); force || now.Sub(g.listed) >= spaceEvery {
		g.listed = now
		_, g.tables = cache.DirUsage(g.dir)
	}
	g.ok = free >= reserve(g.tables)
	return g.ok
}
