package cache

import (
	"log/slog"

	"github.com/dgraph-io/badger/v4"
)

// Helpers for other badger databases apmkit keeps in its data dir (the explorer's trace
// store): the same logging, free-space and disk-usage measurements as the cache's, so both
// stores judge the disk alike.

// BadgerLogger routes badger's log to log as the cache does: info and debug lines at
// slog's debug level, warnings and errors as such.
func BadgerLogger(log *slog.Logger) badger.Logger { return badgerLogger{log: log} }

// FreeSpace is the default FreeSpaceFunc: the bytes apmkit may still write on the file
// system holding dir (an error where the platform cannot tell).
func FreeSpace(dir string) (int64, error) { return statfsFree(dir) }

// DirUsage is the disk usage of the files directly in a badger directory: all of them, and
// its tables (.sst, what a compaction may rewrite). Allocated bytes on Unix, where badger's
// preallocated logs are sparse.
func DirUsage(dir string) (total, tables int64) {
	sz := dirBytes(dir)
	return sz.total, sz.tables
}
