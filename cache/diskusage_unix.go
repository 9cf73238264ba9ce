//go:build unix

package cache

import (
	"io/fs"
	"syscall"
)

// fileBytes is the space allocated to the file, not its apparent size: badger's logs are
// sparse files preallocated far beyond what they hold.
func fileBytes(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512 // st_blocks counts 512-byte units on every Unix
	}
	return info.Size()
}
