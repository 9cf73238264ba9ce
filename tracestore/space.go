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

	mu      sync.Mutex
	checked time.Time
	ok      bool
}

const (
	spaceMargin   = 2 << 20
	maxCompaction = 64 << 20
	spaceEvery    = time.Second // statfs and a directory listing at most this often
)

func newSpaceGuard(dir string, free cache.FreeSpaceFunc) *spaceGuard {
	return &spaceGuard{dir: dir, free: free, ok: true}
}

// reserve is the free space the store leaves, given its tables' size.
func reserve(tables int64) int64 {
	return numMemtables*memTableSize + spaceMargin + min(tables, maxCompaction)
}

// room reports whether writing is safe, measuring again when the last measurement is
// older than spaceEvery (or when force is set). A platform that cannot measure is trusted.
func (g *spaceGuard) room(force bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !force && time.Since(g.checked) < spaceEvery {
		return g.ok
	}
	g.checked = time.Now()
	free, err := g.free(g.dir)
	if err != nil {
		g.ok = true
		return true
	}
	_, tables := cache.DirUsage(g.dir)
	g.ok = free >= reserve(tables)
	return g.ok
}
