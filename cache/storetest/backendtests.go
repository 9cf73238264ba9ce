package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/apmkit/apmkit/cache"
)

func testNamespaces(t *testing.T, h Harness) {
	b := h.open(t, cache.Config{}).Backend
	a, ab := b.Namespace("a"), b.Namespace("ab")
	mustSet(t, b, "k", "root", 0)
	mustSet(t, a, "k", "in a", 0)
	mustSet(t, ab, "k", "in ab", 0)
	// With a naive prefix+key scheme, "a"+"bx" and "ab"+"x" would be the same key.
	mustSet(t, a, "bx", "a's bx", 0)
	mustSet(t, ab, "x", "ab's x", 0)

	wantValue(t, b, "k", "root")
	wantValue(t, a, "k", "in a")
	wantValue(t, ab, "k", "in ab")
	wantScan(t, b, "", []kv{{"k", "root"}})
	wantScan(t, a, "", []kv{{"bx", "a's bx"}, {"k", "in a"}})
	wantScan(t, ab, "", []kv{{"k", "in ab"}, {"x", "ab's x"}})
	wantScan(t, ab, "b", nil)
	wantAbsent(t, ab, "bx")

	// Namespace("") is the backend's own keyspace; a second handle on a name shares its data.
	wantValue(t, b.Namespace(""), "k", "root")
	wantValue(t, b.Namespace("a"), "bx", "a's bx")

	mustDelete(t, a, "k")
	wantAbsent(t, a, "k")
	wantValue(t, ab, "k", "in ab")
	wantValue(t, b, "k", "root")

	// Closing a namespace is a no-op: it and the backend keep working.
	if err := a.Close(); err != nil {
		t.Fatalf("namespace Close: %v", err)
	}
	mustSet(t, a, "after-close", "still works", 0)
	wantValue(t, a, "after-close", "still works")
	wantValue(t, b, "k", "root")
}

// testMoveNamespace moves a namespace with keys with and without TTLs onto one that has
// keys of its own: every key arrives once, overwriting its namespace, TTLs keep running,
// and the source is left empty while its neighbours are untouched.
func testMoveNamespace(t *testing.T, h Harness) {
	inst := h.open(t, cache.Config{})
	b := inst.Backend
	from, to, near := b.Namespace("old"), b.Namespace("old@new"), b.Namespace("ol")
	mustSet(t, from, "a", "from a", 0)
	mustSet(t, from, "b", "from b", time.Hour)
	mustSet(t, from, "short", "expires", time.Second)
	mustSet(t, to, "a", "to a", 0)
	mustSet(t, to, "c", "to c", 0)
	mustSet(t, near, "dx", "neighbour", 0)

	moved, err := b.MoveNamespace("old", "old@new")
	if err != nil || moved != 3 {
		t.Fatalf("MoveNamespace = %d, %v; want 3 keys moved", moved, err)
	}
	wantScan(t, from, "", nil)
	wantScan(t, near, "", []kv{{"dx", "neighbour"}})
	wantScan(t, to, "", []kv{{"a", "from a"}, {"b", "from b"}, {"c", "to c"}, {"short", "expires"}})
	if inst.Advance != nil {
		inst.Advance(time.Second)
		wantAbsent(t, to, "short")
	} else {
		waitAbsent(t, to, "short") // its TTL moved with it
	}
	wantValue(t, to, "b", "from b")
	if moved, err := b.MoveNamespace("old", "old@new"); err != nil || moved != 0 {
		t.Fatalf("second MoveNamespace = %d, %v; want nothing left to move", moved, err)
	}
}

// capacityTestValue is the size of each value written to fill a 1 MiB cache.
const capacityTestValue = 4 << 10

func testCapacity(t *testing.T, h Harness) {
	const capacity = 1 << 20
	b := h.open(t, cache.Config{CapacityMB: 1}).Backend
	ns := b.Namespace("chunks")
	keys, stored := fill(t, ns, capacity)
	if len(keys) == 0 {
		t.Fatal("an empty 1 MiB cache refused the first 4 KiB value")
	}
	// Enforced, not advisory: what was accepted fits in the cap.
	if stored > capacity {
		t.Fatalf("accepted %d bytes of keys and values into a %d byte cache", stored, capacity)
	}
	if size := b.SizeBytes(); size < int64(stored) {
		t.Fatalf("SizeBytes() = %d after storing %d bytes", size, stored)
	}
	// The cap is the backend's, shared by all its namespaces.
	if err := b.Namespace("other").Set([]byte("k"), value(0, capacityTestValue), 0); !errors.Is(err, cache.ErrFull) {
		t.Fatalf("Set in another namespace of a full backend: %v, want ErrFull", err)
	}
	// A full cache still reads, and deletes, which is how it gets room back.
	wantValue(t, ns, keys[len(keys)-1], string(value(len(keys)-1, capacityTestValue)))
	mustDelete(t, ns, "never-set")
	for _, k := range keys {
		mustDelete(t, ns, k)
	}
	wantAbsent(t, ns, keys[0])
	wantScan(t, ns, "", nil)
	if h.FreesOnDelete {
		mustSet(t, ns, "after-delete", string(value(0, capacityTestValue)), 0)
	}
}

// fill sets distinct 4 KiB values until the store returns ErrFull, failing if it still has not
// after four times its capacity. It returns the keys set and their bytes (keys + values).
func fill(t *testing.T, s cache.Store, capacity int) (keys []string, stored int) {
	t.Helper()
	for i := range 4 * capacity / capacityTestValue {
		key := fmt.Sprintf("chunk/%05d", i)
		err := s.Set([]byte(key), value(i, capacityTestValue), 0)
		if errors.Is(err, cache.ErrFull) {
			return keys, stored
		}
		if err != nil {
			t.Fatalf("Set(%q) while filling: %v", key, err)
		}
		keys = append(keys, key)
		stored += len(key) + capacityTestValue
	}
	t.Fatalf("a %d byte cache accepted %d bytes without returning ErrFull", capacity, stored)
	return nil, 0
}

// testConcurrent hammers one backend from many goroutines (run it with -race), then checks
// every goroutine's keys ended up as it left them.
func testConcurrent(t *testing.T, h Harness) {
	const workers, rounds = 8, 100
	b := h.open(t, cache.Config{}).Backend
	var wg sync.WaitGroup
	for w := range workers {
		s := b.Namespace(fmt.Sprintf("w%d", w%2)) // two workers per namespace
		wg.Go(func() { worker(t, s, b, fmt.Sprintf("g%d/", w), rounds) })
	}
	wg.Wait()
	for w := range workers {
		s := b.Namespace(fmt.Sprintf("w%d", w%2))
		prefix := fmt.Sprintf("g%d/", w)
		// worker deletes its odd keys; the even ones stay with their last value.
		if got := scanKeys(t, s, prefix); len(got) != rounds/2 {
			t.Errorf("worker %d left %d keys, want %d", w, len(got), rounds/2)
		}
		wantValue(t, s, prefix+"0000", "0:final")
	}
	if got, err := b.Get([]byte("shared")); err != nil || len(got) == 0 {
		t.Errorf("Get(shared) = %s, %v; want a value some worker set", show(got), err)
	}
}

// worker sets, reads back, scans and deletes its own keys, and writes a key shared with the
// others. It reports with t.Errorf, which is safe from goroutines.
func worker(t *testing.T, s, shared cache.Store, prefix string, rounds int) {
	for i := range rounds {
		key := []byte(fmt.Sprintf("%s%04d", prefix, i))
		want := fmt.Sprintf("%d:final", i)
		if err := s.Set(key, []byte(want), 0); err != nil {
			t.Errorf("Set(%q): %v", key, err)
			return
		}
		if got, err := s.Get(key); err != nil || string(got) != want {
			t.Errorf("Get(%q) = %s, %v; want %q", key, show(got), err, want)
			return
		}
		if i%2 == 1 {
			if err := s.Delete(key); err != nil {
				t.Errorf("Delete(%q): %v", key, err)
				return
			}
		}
		if err := shared.Set([]byte("shared"), key, time.Hour); err != nil {
			t.Errorf("Set(shared): %v", err)
			return
		}
		if err := s.Scan([]byte(prefix), func(_, _ []byte) error { return nil }); err != nil {
			t.Errorf("Scan(%q): %v", prefix, err)
			return
		}
	}
}

func testClosed(t *testing.T, h Harness) {
	b := h.open(t, cache.Config{}).Backend
	ns := b.Namespace("ns")
	mustSet(t, b, "k", "v", 0)
	mustSet(t, ns, "k", "v", 0)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for name, s := range map[string]cache.Store{
		"backend": b, "namespace": ns, "namespace opened after Close": b.Namespace("late"),
	} {
		if _, err := s.Get([]byte("k")); !isClosed(err) {
			t.Errorf("%s: Get after Close: %v, want ErrClosed", name, err)
		}
		if err := s.Set([]byte("k"), []byte("v"), 0); !isClosed(err) {
			t.Errorf("%s: Set after Close: %v, want ErrClosed", name, err)
		}
		if err := s.Delete([]byte("k")); !isClosed(err) {
			t.Errorf("%s: Delete after Close: %v, want ErrClosed", name, err)
		}
		called := false
		err := s.Scan(nil, func(_, _ []byte) error { called = true; return nil })
		if !isClosed(err) || called {
			t.Errorf("%s: Scan after Close: %v (callback called: %v), want ErrClosed", name, err, called)
		}
		if err := s.Close(); !isClosed(err) {
			t.Errorf("%s: Close after Close: %v, want ErrClosed", name, err)
		}
	}
}

// testCloseWhileBusy closes the backend while goroutines are using it: every call must either
// work or return ErrClosed (no panic, no other error, no deadlock), including calls a Scan
// callback makes while Close waits for that Scan.
func testCloseWhileBusy(t *testing.T, h Harness) {
	const workers = 4
	b := h.open(t, cache.Config{}).Backend
	mustSet(t, b, "seed", "v", 0)
	started := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for w := range workers {
		s := b.Namespace(fmt.Sprintf("w%d", w))
		wg.Go(func() { busyUntilClosed(t, s, started) })
	}
	for range workers {
		<-started // each worker has done a round of calls that succeeded
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close while busy: %v", err)
	}
	wg.Wait()
}

// busyUntilClosed calls s in a loop until a call returns ErrClosed, failing on any other error.
// It signals started once after its first successful round.
func busyUntilClosed(t *testing.T, s cache.Store, started chan<- struct{}) {
	for i := 0; ; i++ {
		key := []byte(fmt.Sprintf("k%d", i%64))
		err := s.Set(key, []byte("v"), 0)
		if err == nil {
			_, err = s.Get(key)
		}
		if err == nil {
			err = s.Scan(nil, func(k, _ []byte) error {
				return s.Set(append([]byte("seen/"), k...), nil, 0)
			})
		}
		if isClosed(err) {
			return
		}
		if err != nil {
			t.Errorf("call while closing: %v, want nil or ErrClosed", err)
			return
		}
		if i == 0 {
			started <- struct{}{}
		}
	}
}
