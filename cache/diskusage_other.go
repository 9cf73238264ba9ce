//go:build !unix

package cache

import "io/fs"

// fileBytes is the apparent size: there is no portable allocated size here, so preallocated
// logs count in full and the cap errs toward full by up to 2*valueLogFileSize plus
// 2*memTableSize per memtable.
func fileBytes(info fs.FileInfo) int64 { return info.Size() }
