package cache_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine (badger's, the GC loop) outlives the tests:
// every test closes what it opens, so a leftover goroutine is a leak in Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
