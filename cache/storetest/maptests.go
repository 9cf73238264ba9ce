package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/apmkit/apmkit/cache"
)

func testGetAbsent(t *testing.T, open opener) {
	s, _ := open(t)
	wantAbsent(t, s, "never-set")
	wantScan(t, s, "", nil)
}

func testSetGetOverwrite(t *testing.T, open opener) {
	s, _ := open(t)
	mustSet(t, s, "agent/1", "v1", 0)
	mustSet(t, s, "agent/2", "other", 0)
	wantValue(t, s, "agent/1", "v1")
	mustSet(t, s, "agent/1", "v2, longer than v1", 0)
	wantValue(t, s, "agent/1", "v2, longer than v1")
	mustSet(t, s, "agent/1", "v3", 0) // shorter again: no stale tail
	wantValue(t, s, "agent/1", "v3")
	wantValue(t, s, "agent/2", "other")
	wantScan(t, s, "agent/", []kv{{"agent/1", "v3"}, {"agent/2", "other"}})
}

// testEmptyValue: a stored empty value is present, so Get must not return nil for it.
func testEmptyValue(t *testing.T, open opener) {
	s, _ := open(t)
	for _, val := range [][]byte{nil, {}} {
		if err := s.Set([]byte("k"), val, 0); err != nil {
			t.Fatalf("Set(k, %s): %v", show(val), err)
		}
		got, err := s.Get([]byte("k"))
		if err != nil || got == nil || len(got) != 0 {
			t.Fatalf("after Set(k, %s): Get(k) = %s, %v; want empty non-nil", show(val), show(got), err)
		}
	}
	wantScan(t, s, "", []kv{{"k", ""}})
}

func testInvalidArguments(t *testing.T, open opener) {
	s, _ := open(t)
	if err := s.Set(nil, []byte("v"), 0); err == nil {
		t.Error("Set(nil key) succeeded, want an error")
	}
	if _, err := s.Get([]byte{}); err == nil {
		t.Error("Get(empty key) succeeded, want an error")
	}
	if err := s.Delete(nil); err == nil {
		t.Error("Delete(nil key) succeeded, want an error")
	}
	if err := s.Set([]byte("k"), []byte("v"), -time.Second); err == nil {
		t.Error("Set with a negative ttl succeeded, want an error")
	}
	long := make([]byte, cache.MaxKeySize)
	if err := s.Set(long, []byte("v"), 0); err == nil {
		t.Error("Set of a MaxKeySize key (too long with its namespace) succeeded, want an error")
	}
	if _, err := s.Get(long); err == nil {
		t.Error("Get of a too long key succeeded, want an error")
	}
	if err := s.Set([]byte("k"), make([]byte, cache.MaxValueSize+1), 0); err == nil {
		t.Error("Set of a value over MaxValueSize succeeded, want an error")
	}
	wantScan(t, s, "", nil) // none of the failed calls stored anything
	if err := s.Set(long[:cache.MaxKeySize-64], make([]byte, cache.MaxValueSize), 0); err != nil {
		t.Fatalf("Set of a key and value within the limits: %v", err)
	}
}

func testDelete(t *testing.T, open opener) {
	s, _ := open(t)
	mustDelete(t, s, "absent") // deleting an absent key is not an error
	mustSet(t, s, "a", "1", 0)
	mustSet(t, s, "b", "2", time.Hour)
	mustDelete(t, s, "a")
	mustDelete(t, s, "b")
	wantAbsent(t, s, "a")
	wantAbsent(t, s, "b")
	wantScan(t, s, "", nil)
	mustSet(t, s, "a", "again", 0) // a deleted key can be set again
	wantValue(t, s, "a", "again")
}

// testCopySemantics: neither the slice given to Set nor the one Get returns aliases the store.
func testCopySemantics(t *testing.T, open opener) {
	s, _ := open(t)
	key, val := []byte("key"), []byte("hello")
	if err := s.Set(key, val, 0); err != nil {
		t.Fatal(err)
	}
	key[0], val[0] = 'X', 'X'
	wantValue(t, s, "key", "hello")
	wantAbsent(t, s, "Xey")
	got, err := s.Get([]byte("key"))
	if err != nil {
		t.Fatal(err)
	}
	got[0] = 'Y'
	_ = append(got[:1], "ZZZZZZZZ"...) // writes past len if the store handed out spare capacity
	wantValue(t, s, "key", "hello")
}

func testScanOrderAndPrefix(t *testing.T, open opener) {
	s, _ := open(t)
	// Inserted out of order; bytes 0x00 and 0xff check the order is bytewise, not by string
	// or number semantics ("b/10" sorts before "b/2").
	keys := []string{"c", "b/2", "b0", "b/\xff", "a", "b/10", "b/1", "b", "\x00"}
	for i, k := range keys {
		mustSet(t, s, k, fmt.Sprintf("v%d", i), 0)
	}
	wantScan(t, s, "b/", []kv{{"b/1", "v6"}, {"b/10", "v5"}, {"b/2", "v1"}, {"b/\xff", "v3"}})
	wantScan(t, s, "b", []kv{
		{"b", "v7"}, {"b/1", "v6"}, {"b/10", "v5"}, {"b/2", "v1"}, {"b/\xff", "v3"}, {"b0", "v2"},
	})
	wantScan(t, s, "b/1", []kv{{"b/1", "v6"}, {"b/10", "v5"}})
	wantScan(t, s, "zzz", nil)
	all := scanKeys(t, s, "")
	want := []string{"\x00", "a", "b", "b/1", "b/10", "b/2", "b/\xff", "b0", "c"}
	if fmt.Sprintf("%q", all) != fmt.Sprintf("%q", want) {
		t.Fatalf("Scan(\"\") keys = %q, want %q", all, want)
	}
}

func testScanStop(t *testing.T, open opener) {
	s, _ := open(t)
	for _, k := range []string{"k1", "k2", "k3", "k4"} {
		mustSet(t, s, k, "v", 0)
	}
	for _, stop := range []error{cache.ErrStopScan, fmt.Errorf("done: %w", cache.ErrStopScan)} {
		var seen []string
		err := s.Scan([]byte("k"), func(key, _ []byte) error {
			seen = append(seen, string(key))
			if len(seen) == 2 {
				return stop
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Scan stopped with %v: returned %v, want nil", stop, err)
		}
		if fmt.Sprint(seen) != "[k1 k2]" {
			t.Fatalf("Scan stopped with %v after 2 keys saw %q, want [k1 k2]", stop, seen)
		}
	}
}

func testScanError(t *testing.T, open opener) {
	s, _ := open(t)
	mustSet(t, s, "k1", "v", 0)
	mustSet(t, s, "k2", "v", 0)
	boom := errors.New("boom")
	calls := 0
	err := s.Scan(nil, func(_, _ []byte) error {
		calls++
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Scan returned %v, want the callback's error", err)
	}
	if calls != 1 {
		t.Fatalf("callback ran %d times after returning an error, want 1", calls)
	}
}

// testScanCallbackWrites: a Scan sees a snapshot and its callback may write to the same store,
// e.g. to delete pending chunks as it flushes them.
func testScanCallbackWrites(t *testing.T, open opener) {
	s, _ := open(t)
	const n = 50
	for i := range n {
		mustSet(t, s, fmt.Sprintf("pending/%03d", i), "chunk", 0)
	}
	visited := 0
	err := s.Scan([]byte("pending/"), func(key, _ []byte) error {
		visited++
		if err := s.Delete(key); err != nil {
			return err
		}
		return s.Set(append([]byte("done/"), key...), []byte("ok"), 0)
	})
	if err != nil {
		t.Fatalf("Scan with a writing callback: %v", err)
	}
	if visited != n {
		t.Fatalf("Scan visited %d keys, want %d", visited, n)
	}
	if left := scanKeys(t, s, "pending/"); len(left) != 0 {
		t.Fatalf("keys left after deleting them during Scan: %q", left)
	}
	if done := scanKeys(t, s, "done/"); len(done) != n {
		t.Fatalf("Scan(done/) found %d keys, want %d", len(done), n)
	}
}

func testTTL(t *testing.T, open opener) {
	s, inst := open(t)
	mustSet(t, s, "keep", "forever", 0)
	mustSet(t, s, "long", "an hour", time.Hour)
	mustSet(t, s, "short", "a second", time.Second)
	mustSet(t, s, "renewed", "first with a ttl", time.Second)
	mustSet(t, s, "renewed", "then without", 0) // overwriting replaces the ttl too
	if inst.Advance != nil {
		// A fake clock allows exact checks: alive until the ttl, gone at it.
		inst.Advance(time.Second - time.Millisecond)
		wantValue(t, s, "short", "a second")
		inst.Advance(time.Millisecond)
		wantAbsent(t, s, "short")
	} else {
		waitAbsent(t, s, "short")
	}
	wantValue(t, s, "keep", "forever")
	wantValue(t, s, "long", "an hour")
	wantValue(t, s, "renewed", "then without")
	wantScan(t, s, "", []kv{{"keep", "forever"}, {"long", "an hour"}, {"renewed", "then without"}})
	mustSet(t, s, "short", "back", 0) // an expired key can be set again
	wantValue(t, s, "short", "back")
}
