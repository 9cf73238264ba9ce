package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/apmkit/apmkit/cache"
)

// kv is one entry as Scan reported it, copied out of the callback.
type kv struct{ key, val string }

func (e kv) String() string { return fmt.Sprintf("%q=%q", e.key, e.val) }

func isClosed(err error) bool { return errors.Is(err, cache.ErrClosed) }

func mustSet(t *testing.T, s cache.Store, key, val string, ttl time.Duration) {
	t.Helper()
	if err := s.Set([]byte(key), []byte(val), ttl); err != nil {
		t.Fatalf("Set(%q, ttl %v): %v", key, ttl, err)
	}
}

func mustDelete(t *testing.T, s cache.Store, key string) {
	t.Helper()
	if err := s.Delete([]byte(key)); err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
}

// wantValue fails unless key holds val.
func wantValue(t *testing.T, s cache.Store, key, val string) {
	t.Helper()
	got, err := s.Get([]byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if got == nil || string(got) != val {
		t.Fatalf("Get(%q) = %s, want %q", key, show(got), val)
	}
}

// wantAbsent fails unless Get(key) is (nil, nil).
func wantAbsent(t *testing.T, s cache.Store, key string) {
	t.Helper()
	got, err := s.Get([]byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if got != nil {
		t.Fatalf("Get(%q) = %s, want nil (absent)", key, show(got))
	}
}

// show tells nil from empty, which the tests care about.
func show(b []byte) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprintf("%q", b)
}

// scanAll returns what Scan(prefix) reports, copied.
func scanAll(t *testing.T, s cache.Store, prefix string) []kv {
	t.Helper()
	var out []kv
	err := s.Scan([]byte(prefix), func(key, val []byte) error {
		out = append(out, kv{string(key), string(val)})
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%q): %v", prefix, err)
	}
	return out
}

// wantScan fails unless Scan(prefix) reports exactly want, in that order.
func wantScan(t *testing.T, s cache.Store, prefix string, want []kv) {
	t.Helper()
	got := scanAll(t, s, prefix)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Scan(%q) =\n  %v\nwant\n  %v", prefix, got, want)
	}
}

// scanKeys returns the keys Scan(prefix) reports.
func scanKeys(t *testing.T, s cache.Store, prefix string) []string {
	t.Helper()
	var keys []string
	for _, e := range scanAll(t, s, prefix) {
		keys = append(keys, e.key)
	}
	return keys
}

// waitAbsent polls until key is gone, failing after ExpiryDeadline. It asserts an upper bound
// on expiry only, never how fast it is.
func waitAbsent(t *testing.T, s cache.Store, key string) {
	t.Helper()
	deadline := time.Now().Add(ExpiryDeadline)
	for {
		got, err := s.Get([]byte(key))
		if err != nil {
			t.Fatalf("Get(%q): %v", key, err)
		}
		if got == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get(%q) = %s after %v, want it expired", key, show(got), ExpiryDeadline)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// value returns n bytes that depend on seed and do not compress, so a backend that compresses
// cannot store more of them than the capacity test expects.
func value(seed, n int) []byte {
	b := make([]byte, n)
	x := uint64(seed)*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}
