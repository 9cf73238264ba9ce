// Package storetest is the conformance suite every cache.Backend must pass, so the in-memory
// store used in tests cannot drift from the badger store used in production.
//
//	func TestBadger(t *testing.T) {
//		storetest.Run(t, storetest.Harness{Open: openBadger})
//	}
package storetest

import (
	"testing"
	"time"

	"github.com/apmkit/apmkit/cache"
)

// Harness describes the implementation under test.
type Harness struct {
	// Open returns a new, empty backend with cfg. The suite closes it.
	Open func(t *testing.T, cfg cache.Config) Instance
	// FreesOnDelete says deleted bytes count against the capacity cap no more, at once. True
	// for the in-memory store; badger frees space only after compaction and value-log GC.
	FreesOnDelete bool
}

// Instance is one open backend.
type Instance struct {
	Backend cache.Backend
	// Advance moves the backend's clock forward by d. Nil when the backend follows the wall
	// clock: TTL tests then set one-second TTLs and poll for expiry, up to ExpiryDeadline.
	Advance func(d time.Duration)
}

// ExpiryDeadline is how long a wall-clock backend may take to expire a one-second TTL before
// the suite fails. Badger rounds expiry to whole seconds, so it needs up to two; the rest is
// slack for slow, loaded CI machines.
const ExpiryDeadline = 10 * time.Second

// Run runs the whole suite: the map semantics on the root keyspace and on a namespace, then
// namespace isolation and moves, capacity, concurrency and Close.
func Run(t *testing.T, h Harness) {
	t.Run("Root", func(t *testing.T) {
		runMap(t, func(t *testing.T) (cache.Store, Instance) {
			inst := h.open(t, cache.Config{})
			return inst.Backend, inst
		})
	})
	t.Run("Namespace", func(t *testing.T) {
		runMap(t, func(t *testing.T) (cache.Store, Instance) {
			inst := h.open(t, cache.Config{})
			return inst.Backend.Namespace("inputs/pinpoint"), inst
		})
	})
	t.Run("NamespacesIsolated", func(t *testing.T) { testNamespaces(t, h) })
	t.Run("MoveNamespace", func(t *testing.T) { testMoveNamespace(t, h) })
	t.Run("Capacity", func(t *testing.T) { testCapacity(t, h) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, h) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, h) })
	t.Run("CloseWhileBusy", func(t *testing.T) { testCloseWhileBusy(t, h) })
}

// open calls h.Open and closes the backend when the test ends, unless the test closed it.
func (h Harness) open(t *testing.T, cfg cache.Config) Instance {
	t.Helper()
	inst := h.Open(t, cfg)
	if inst.Backend == nil {
		t.Fatal("Harness.Open returned no Backend")
	}
	t.Cleanup(func() {
		if err := inst.Backend.Close(); err != nil && !isClosed(err) {
			t.Errorf("Close: %v", err)
		}
	})
	return inst
}

// opener returns a fresh store to test, with the instance it lives in.
type opener func(t *testing.T) (cache.Store, Instance)

// runMap checks the Store contract on the stores open returns.
func runMap(t *testing.T, open opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, opener)
	}{
		{"GetAbsent", testGetAbsent},
		{"SetGetOverwrite", testSetGetOverwrite},
		{"EmptyValue", testEmptyValue},
		{"InvalidArguments", testInvalidArguments},
		{"Delete", testDelete},
		{"CopySemantics", testCopySemantics},
		{"ScanOrderAndPrefix", testScanOrderAndPrefix},
		{"ScanStop", testScanStop},
		{"ScanError", testScanError},
		{"ScanCallbackWrites", testScanCallbackWrites},
		{"TTL", testTTL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}
