package cache_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/cache/storetest"
)

func openBadger(t testing.TB, dir string, cfg cache.Config) *cache.DB {
	t.Helper()
	db, err := cache.OpenBadger(dir, cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// testWriter sends badger's warnings to the test log, where a failing test shows them.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestBadgerConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T, cfg cache.Config) storetest.Instance {
			return storetest.Instance{Backend: openBadger(t, t.TempDir(), cfg)}
		},
	})
}

func TestBadgerReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	db := openBadger(t, dir, cache.Config{})
	mustSet(t, db, "root-key", "root", 0)
	mustSet(t, db.Namespace("meta"), "api/1", "getUser", 0)
	mustSet(t, db.Namespace("meta"), "ttl", "an hour", time.Hour)
	big := strings.Repeat("x", 64<<10) // above the value threshold: lives in the value log
	mustSet(t, db.Namespace("chunks"), "c1", big, 0)
	mustSet(t, db.Namespace("meta"), "gone", "deleted", 0)
	if err := db.Namespace("meta").Delete([]byte("gone")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db = openBadger(t, dir, cache.Config{})
	defer closeDB(t, db)
	wantValue(t, db, "root-key", "root")
	wantValue(t, db.Namespace("meta"), "api/1", "getUser")
	wantValue(t, db.Namespace("meta"), "ttl", "an hour")
	wantValue(t, db.Namespace("chunks"), "c1", big)
	wantAbsent(t, db.Namespace("meta"), "gone")
}

func TestBadgerLockedDir(t *testing.T) {
	dir := t.TempDir()
	db := openBadger(t, dir, cache.Config{})
	defer closeDB(t, db)
	second, err := cache.OpenBadger(dir, cache.Config{}, nil)
	if err == nil {
		second.Close()
		t.Fatal("opened the same dir twice")
	}
	if !strings.Contains(err.Error(), "another apmkit is probably running") ||
		!strings.Contains(err.Error(), dir) {
		t.Fatalf("error %q should name the dir and say another apmkit is probably using it", err)
	}
}

func TestBadgerOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(file, "sub")} {
		db, err := cache.OpenBadger(dir, cache.Config{}, nil)
		if err == nil {
			db.Close()
			t.Fatalf("OpenBadger(%q) under a regular file succeeded", dir)
		}
		if !strings.HasPrefix(err.Error(), "cache: ") || !strings.Contains(err.Error(), dir) {
			t.Errorf("OpenBadger(%q) error %q should start with \"cache: \" and name the dir", dir, err)
		}
	}
}

// TestBadgerOverCapacityAfterReopen: the cap applies to data already on disk, not only to what
// this process wrote.
func TestBadgerOverCapacityAfterReopen(t *testing.T) {
	dir := t.TempDir()
	db := openBadger(t, dir, cache.Config{})
	for i := range 40 { // 40 x 64 KiB: well over 1 MiB
		mustSet(t, db, fmt.Sprintf("k%02d", i), strings.Repeat("v", 64<<10), 0)
	}
	closeDB(t, db)

	db = openBadger(t, dir, cache.Config{CapacityMB: 1})
	defer closeDB(t, db)
	if size := db.SizeBytes(); size < 40*64<<10 {
		t.Fatalf("SizeBytes() = %d after reopening 2.5 MiB of data", size)
	}
	if err := db.Set([]byte("new"), []byte("v"), 0); !errors.Is(err, cache.ErrFull) {
		t.Fatalf("Set on a reopened over-capacity cache = %v, want ErrFull", err)
	}
	if err := db.Delete([]byte("k00")); err != nil {
		t.Fatalf("Delete on a full cache: %v", err)
	}
	wantValue(t, db, "k01", strings.Repeat("v", 64<<10))
}

// TestBadgerGCLoop runs the value-log GC loop often while data is overwritten and deleted,
// then closes: Close must wait for the loop (goleak in TestMain fails the package otherwise)
// and the data must be intact.
func TestBadgerGCLoop(t *testing.T) {
	db := openBadger(t, t.TempDir(), cache.Config{GCInterval: time.Millisecond})
	for round := range 20 {
		for i := range 20 {
			key := fmt.Sprintf("k%02d", i)
			mustSet(t, db, key, fmt.Sprintf("%d:%s", round, strings.Repeat("v", 8<<10)), 0)
			if i%3 == 0 {
				if err := db.Delete([]byte(key)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	wantValue(t, db, "k01", "19:"+strings.Repeat("v", 8<<10))
	wantAbsent(t, db, "k03")
	closeDB(t, db)
}

func closeDB(t testing.TB, db *cache.DB) {
	t.Helper()
	if err := db.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func mustSet(t testing.TB, s cache.Store, key, val string, ttl time.Duration) {
	t.Helper()
	if err := s.Set([]byte(key), []byte(val), ttl); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func wantValue(t testing.TB, s cache.Store, key, want string) {
	t.Helper()
	got, err := s.Get([]byte(key))
	if err != nil || got == nil || string(got) != want {
		t.Fatalf("Get(%q) = %.40q (nil: %v), %v; want %.40q", key, got, got == nil, err, want)
	}
}

func wantAbsent(t testing.TB, s cache.Store, key string) {
	t.Helper()
	if got, err := s.Get([]byte(key)); got != nil || err != nil {
		t.Fatalf("Get(%q) = %.40q, %v; want nil, nil", key, got, err)
	}
}

// benchConfig has no capacity cap: a long -benchtime writes gigabytes, which a cap would turn
// into ErrFull. The cap's cost on the write path is two atomic loads either way.
func benchConfig() cache.Config { return cache.Config{GCInterval: time.Minute} }

func BenchmarkBadgerSet(b *testing.B) {
	for _, size := range []int{100, 4 << 10} {
		b.Run(fmt.Sprintf("value=%dB", size), func(b *testing.B) {
			db := openBadger(b, b.TempDir(), benchConfig())
			defer closeDB(b, db)
			s, val := db.Namespace("bench"), make([]byte, size)
			keys := benchKeys(1024)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				if err := s.Set(keys[i%len(keys)], val, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBadgerGet(b *testing.B) {
	for _, size := range []int{100, 4 << 10} {
		b.Run(fmt.Sprintf("value=%dB", size), func(b *testing.B) {
			db := openBadger(b, b.TempDir(), benchConfig())
			defer closeDB(b, db)
			s, keys := db.Namespace("bench"), benchKeys(1024)
			for _, k := range keys {
				if err := s.Set(k, make([]byte, size), 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				if v, err := s.Get(keys[i%len(keys)]); err != nil || len(v) != size {
					b.Fatalf("Get: %d bytes, %v", len(v), err)
				}
			}
		})
	}
}

func BenchmarkBadgerSetParallel(b *testing.B) {
	db := openBadger(b, b.TempDir(), benchConfig())
	defer closeDB(b, db)
	s, val, keys := db.Namespace("bench"), make([]byte, 512), benchKeys(1024)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if err := s.Set(keys[i%len(keys)], val, 0); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func benchKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "agent-%04d/span-%08d", i%16, i)
	}
	return keys
}
