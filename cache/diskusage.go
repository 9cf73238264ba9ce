package cache

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// entryOverhead approximates what badger writes per entry beyond key and value: the entry
// header and checksum in the log, and a value pointer when the value goes to the value log.
const entryOverhead = 64

// minRefresh bounds how often the data dir is measured. Measuring lists the directory (tens of
// files for a small cache), cheap but not free on every Set.
const minRefresh = time.Second

// diskUsage enforces the capacity cap on a badger directory.
//
// Why not badger's DB.Size: badger refreshes it only once a minute, and it adds up apparent
// file sizes, while badger preallocates its logs as sparse files (the active value-log file is
// created at twice ValueLogFileSize, each memtable's log at twice MemTableSize), so a fresh
// database would already "use" tens of MiB it has not written.
//
// Instead the usage is the bytes actually allocated to the files in the directory (on Unix;
// elsewhere the apparent sizes, which overcount by the preallocation), measured at most once a
// second, plus an estimate of the bytes written since (key + value + entryOverhead per
// write). The estimate keeps a burst of writes between two measurements from overshooting the
// cap; because it counts every write and ignores compression and compaction, it errs toward
// full, and the next measurement corrects it. Concurrent Sets are each checked before any of
// them is counted, so the cap can be overshot by at most the writes in flight. The directory is only measured when a write
// would cross the cap or when SizeBytes is called, so an idle agent does no work.
//
// Space freed by Delete and TTL expiry comes back only after badger compacts and the value-log
// GC rewrites files, so a full cache stays full for a while after deletes.
type diskUsage struct {
	dir      string
	capacity int64 // bytes; 0 = no cap

	measured atomic.Int64 // bytes found by the last measurement
	pending  atomic.Int64 // estimated bytes written since

	mu       sync.Mutex // one measurement at a time
	measures time.Time  // when the last measurement started; guarded by mu
}

func newDiskUsage(dir string, capacity int64) *diskUsage {
	u := &diskUsage{dir: dir, capacity: capacity}
	u.mu.Lock()
	u.measure()
	u.mu.Unlock()
	return u
}

// entrySize is the estimate added to pending for one write.
func entrySize(key, val []byte) int64 {
	return int64(len(key) + len(val) + entryOverhead)
}

// admit returns ErrFull if writing n more bytes would go over the cap. Near the cap it
// measures the directory again (if the last measurement is stale) before refusing.
func (u *diskUsage) admit(n int64) error {
	if u.capacity <= 0 || u.estimate()+n <= u.capacity {
		return nil
	}
	u.refresh()
	if u.estimate()+n <= u.capacity {
		return nil
	}
	return ErrFull
}

// wrote records n bytes written since the last measurement.
func (u *diskUsage) wrote(n int64) { u.pending.Add(n) }

func (u *diskUsage) estimate() int64 { return u.measured.Load() + u.pending.Load() }

// current refreshes a stale measurement and returns the estimate.
func (u *diskUsage) current() int64 {
	u.refresh()
	return u.estimate()
}

// refresh measures the directory unless it was measured less than minRefresh ago or another
// goroutine is measuring it now (then the current estimate is good enough).
func (u *diskUsage) refresh() {
	if !u.mu.TryLock() {
		return
	}
	defer u.mu.Unlock()
	if time.Since(u.measures) < minRefresh {
		return
	}
	u.measure()
}

// measure replaces the estimate with the directory's usage. Writes that land during the walk
// stay in pending (they may be counted twice until the next measurement, erring toward full).
// The caller holds u.mu.
func (u *diskUsage) measure() {
	u.measures = time.Now()
	before := u.pending.Load()
	u.measured.Store(dirBytes(u.dir).total)
	u.pending.Add(-before)
}

// dirSizes is the disk usage of a badger directory: in all, and of the files that the
// free-space reserve follows (see diskSpace).
type dirSizes struct {
	total  int64
	tables int64 // .sst: what a compaction may rewrite
	logs   int64 // .mem: memtable logs, what flushes turn into tables
}

// dirBytes adds up the disk usage of the regular files directly in dir (badger keeps all its
// files there). Files that vanish during the walk (compaction deletes tables) are skipped;
// an unreadable dir counts as 0, and badger's own writes will report the real problem.
func dirBytes(dir string) dirSizes {
	var sz dirSizes
	entries, err := os.ReadDir(dir)
	if err != nil {
		return sz
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := os.Lstat(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		n := fileBytes(info)
		sz.total += n
		switch filepath.Ext(e.Name()) {
		case ".sst":
			sz.tables += n
		case ".mem":
			sz.logs += n
		}
	}
	return sz
}
