//go:build linux || darwin || freebsd

package cache

import (
	"errors"
	"path/filepath"
	"syscall"
)

// statfsFree is the default FreeSpaceFunc: statfs's blocks available to unprivileged users
// (f_bavail; root may also use the file system's reserved blocks, which is then a margin)
// times the block size. A dir that does not exist yet (the cache dir before its first open)
// is measured at its nearest existing parent, on the same file system as a rule.
func statfsFree(dir string) (int64, error) {
	for {
		var st syscall.Statfs_t
		err := syscall.Statfs(dir, &st)
		if err == nil {
			return int64(st.Bavail) * int64(st.Bsize), nil //nolint:unconvert // field types differ by OS
		}
		parent := filepath.Dir(dir)
		if !errors.Is(err, syscall.ENOENT) || parent == dir {
			return 0, err
		}
		dir = parent
	}
}
