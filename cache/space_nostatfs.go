//go:build !(linux || darwin || freebsd)

package cache

import "errors"

// statfsFree cannot measure here: the cache then enforces no free-space reserve.
func statfsFree(string) (int64, error) {
	return 0, errors.New("cache: free space is not measured on this platform")
}
