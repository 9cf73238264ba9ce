package cache_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/cache/storetest"
)

// fakeDisk is a file system whose free space the test sets: the FreeSpaceFunc of the DBs
// under test.
type fakeDisk struct{ free atomic.Int64 }

func newFakeDisk(free int64) *fakeDisk {
	d := &fakeDisk{}
	d.free.Store(free)
	return d
}

func (d *fakeDisk) Free(string) (int64, error) { return d.free.Load(), nil }

const plenty = 100 << 30

// openOnDisk opens a DB in dir whose free space is disk's, measured every 10 ms.
func openOnDisk(t testing.TB, dir string, cfg cache.Config, disk *fakeDisk, opts ...cache.Option) *cache.DB {
	t.Helper()
	opts = append([]cache.Option{cache.WithFreeSpace(disk.Free), cache.WithCheckEvery(10 * time.Millisecond)}, opts...)
	db, err := cache.OpenBadger(dir, cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// waitState waits (bounded) until db is in want.
func waitState(t *testing.T, db interface{ Stats() cache.Stats }, want cache.State) cache.Stats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := db.Stats()
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache did not reach state %s; it is %s: %s", want, st.State, st.Problem)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDiskFullRefusesAndCountsWrites: below the reserve, writes fail with ErrDiskFull and are
// counted while reads go on; deletes work down to half the reserve; the state ends on its
// own once the free space is back above the reserve plus the hysteresis.
func TestDiskFullRefusesAndCountsWrites(t *testing.T) {
	disk := newFakeDisk(plenty)
	db := openOnDisk(t, t.TempDir(), cache.Config{}, disk)
	defer closeDB(t, db)
	ns := db.Namespace("meta")
	mustSet(t, ns, "a", "1", 0)
	mustSet(t, ns, "b", "2", 0)
	st := db.Stats()
	if st.State != cache.StateOK || st.Problem != "" || st.ReserveBytes < cache.MinReserve || st.FreeBytes != plenty {
		t.Fatalf("a cache on an empty disk: %+v", st)
	}
	reserve := st.ReserveBytes

	disk.free.Store(reserve - 1)
	db.MeasureSpace()
	st = db.Stats()
	if st.State != cache.StateDiskFull || !strings.Contains(st.Problem, "disk full") {
		t.Fatalf("free space below the reserve: state %s (%q), want disk_full", st.State, st.Problem)
	}
	for i := range 3 {
		if err := ns.Set(fmt.Appendf(nil, "new%d", i), []byte("v"), 0); !errors.Is(err, cache.ErrDiskFull) {
			t.Fatalf("Set on a full disk = %v, want ErrDiskFull", err)
		}
	}
	wantValue(t, ns, "a", "1")
	if err := ns.Delete([]byte("a")); err != nil {
		t.Fatalf("Delete just below the reserve: %v", err)
	}
	wantAbsent(t, ns, "a")
	disk.free.Store(reserve / 4)
	db.MeasureSpace()
	if err := ns.Delete([]byte("b")); !errors.Is(err, cache.ErrDiskFull) {
		t.Fatalf("Delete with a quarter of the reserve free = %v, want ErrDiskFull", err)
	}
	if got := db.Stats().Refused[cache.ReasonDiskFull]; got != 4 {
		t.Errorf("refused disk_full = %d, want 4 (3 sets, 1 delete)", got)
	}

	// Back above the reserve, but within the hysteresis: still full.
	disk.free.Store(reserve + cache.Hysteresis/2)
	db.MeasureSpace()
	if st := db.Stats(); st.State != cache.StateDiskFull {
		t.Fatalf("free space within the hysteresis: state %s, want disk_full", st.State)
	}
	// Above it: the background check ends the state without any write.
	disk.free.Store(reserve + 2*cache.Hysteresis)
	waitState(t, db, cache.StateOK)
	mustSet(t, ns, "new", "v", 0)
	wantValue(t, ns, "new", "v")
}

// TestDiskFullBigWrite: a write that would eat into the reserve is refused even while smaller
// ones still fit; it does not make the state disk_full.
func TestDiskFullBigWrite(t *testing.T) {
	disk := newFakeDisk(plenty)
	db := openOnDisk(t, t.TempDir(), cache.Config{}, disk)
	defer closeDB(t, db)
	disk.free.Store(db.Stats().ReserveBytes + 1<<20)
	db.MeasureSpace()
	if err := db.Set([]byte("big"), make([]byte, 2<<20), 0); !errors.Is(err, cache.ErrDiskFull) {
		t.Fatalf("a 2 MiB write with 1 MiB above the reserve = %v, want ErrDiskFull", err)
	}
	mustSet(t, db, "small", "v", 0)
	if st := db.Stats(); st.State != cache.StateOK || st.Refused[cache.ReasonDiskFull] != 1 {
		t.Fatalf("after one refused big write: %+v", st)
	}
}

// TestCapacityRefusalCounted: ErrFull (capacity_mb) is counted apart from ErrDiskFull.
func TestCapacityRefusalCounted(t *testing.T) {
	db := openOnDisk(t, t.TempDir(), cache.Config{CapacityMB: 1}, newFakeDisk(plenty))
	defer closeDB(t, db)
	var err error
	for i := 0; err == nil && i < 100; i++ {
		err = db.Set(fmt.Appendf(nil, "k%d", i), make([]byte, 64<<10), 0)
	}
	if !errors.Is(err, cache.ErrFull) {
		t.Fatalf("filling a 1 MiB cache: %v, want ErrFull", err)
	}
	if st := db.Stats(); st.Refused[cache.ReasonCapacity] != 1 || st.Refused[cache.ReasonDiskFull] != 0 {
		t.Fatalf("refused %v, want one capacity refusal", st.Refused)
	}
}

// TestStartOnFullDisk: opened on a full disk, the DB runs in memory (badger's files are not
// touched, so the data of the earlier run is not visible), then opens badger by itself once
// the disk has room, with what it took meanwhile: its sets, and its deletes of keys that were
// on disk.
func TestStartOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	db := openBadger(t, dir, cache.Config{})
	mustSet(t, db.Namespace("meta"), "old", "from the last run", 0)
	mustSet(t, db.Namespace("meta"), "deleted", "deleted while in memory", 0)
	mustSet(t, db.Namespace("meta"), "kept", "kept", 0)
	closeDB(t, db)

	disk := newFakeDisk(1 << 20)
	db = openOnDisk(t, dir, cache.Config{}, disk)
	st := db.Stats()
	if st.State != cache.StateMemory || !strings.Contains(st.Problem, "disk is full") {
		t.Fatalf("opened on a full disk: state %s (%q), want memory", st.State, st.Problem)
	}
	ns := db.Namespace("meta")
	wantAbsent(t, ns, "old") // on disk, not visible in memory
	mustSet(t, ns, "new", "taken in memory", 0)
	mustSet(t, ns, "ttl", "expires", time.Hour)
	if err := ns.Delete([]byte("deleted")); err != nil {
		t.Fatal(err)
	}
	wantValue(t, ns, "new", "taken in memory")
	// Still full: nothing changes.
	time.Sleep(50 * time.Millisecond) // several background checks; not a wait for an event
	if st := db.Stats(); st.State != cache.StateMemory {
		t.Fatalf("state %s on a disk still full", st.State)
	}

	disk.free.Store(plenty)
	waitState(t, db, cache.StateOK)
	wantValue(t, ns, "new", "taken in memory")
	wantValue(t, ns, "ttl", "expires")
	wantValue(t, ns, "old", "from the last run")
	wantValue(t, ns, "kept", "kept")
	wantAbsent(t, ns, "deleted")

	// And it is on disk now: a restart keeps it.
	closeDB(t, db)
	db = openOnDisk(t, dir, cache.Config{}, disk)
	defer closeDB(t, db)
	wantValue(t, db.Namespace("meta"), "new", "taken in memory")
	wantAbsent(t, db.Namespace("meta"), "deleted")
}

// TestMemoryStateConformance: in the memory state the DB is still a Backend with the same
// semantics (the suite runs against a DB opened on a full disk).
func TestMemoryStateConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T, cfg cache.Config) storetest.Instance {
			db := openOnDisk(t, t.TempDir(), cfg, newFakeDisk(0))
			if st := db.Stats(); st.State != cache.StateMemory {
				t.Fatalf("state %s on a full disk", st.State)
			}
			return storetest.Instance{Backend: db}
		},
		FreesOnDelete: true,
	})
}

// TestOpenFailureFallsBackToMemory: badger failing to open for another reason than space
// (here a corrupt manifest) also leaves apmkit running in memory; the DB keeps trying, and
// opens badger once the cause is gone.
func TestOpenFailureFallsBackToMemory(t *testing.T) {
	dir := t.TempDir()
	manifest := filepath.Join(dir, "MANIFEST")
	if err := os.WriteFile(manifest, []byte("not a badger manifest"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := openOnDisk(t, dir, cache.Config{}, newFakeDisk(plenty), cache.WithRetry(20*time.Millisecond, 50*time.Millisecond))
	defer closeDB(t, db)
	st := db.Stats()
	if st.State != cache.StateMemory || !strings.Contains(st.Problem, "manifest") {
		t.Fatalf("badger failing to open: state %s (%q), want memory naming the cause", st.State, st.Problem)
	}
	mustSet(t, db, "k", "v", 0)
	if err := os.Remove(manifest); err != nil {
		t.Fatal(err)
	}
	waitState(t, db, cache.StateOK)
	wantValue(t, db, "k", "v")
}

// TestCloseOnFullDisk: badger's Close flushes the memtable through a memory map, which on a
// full disk crashes the process; Close leaves badger open instead, returns nil, and the data
// is there at the next open (replayed from badger's log).
func TestCloseOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	disk := newFakeDisk(plenty)
	db := openOnDisk(t, dir, cache.Config{}, disk)
	mustSet(t, db, "k", "written before the disk filled", 0)
	disk.free.Store(0)
	if err := db.Close(); err != nil {
		t.Fatalf("Close on a full disk: %v", err)
	}
	left, err := db.CloseAbandoned()
	if !left {
		t.Fatal("Close on a full disk closed badger (its flush could crash the process)")
	}
	// The test process goes on, so it closes what a stopping apmkit leaves to the end of the
	// process (the fake disk has no real shortage). The fault test TestDiskFull ends a real
	// apmkit this way and starts it again.
	if err != nil {
		t.Fatal(err)
	}
	disk.free.Store(plenty)
	db = openOnDisk(t, dir, cache.Config{}, disk)
	defer closeDB(t, db)
	wantValue(t, db, "k", "written before the disk filled")
}

// TestGCSkippedOnShortDisk: value-log GC, which rewrites up to half a value-log file behind
// the writers' backs, does not run unless that much is free above the reserve.
func TestGCSkippedOnShortDisk(t *testing.T) {
	disk := newFakeDisk(plenty)
	db := openOnDisk(t, t.TempDir(), cache.Config{GCInterval: 5 * time.Millisecond}, disk)
	defer closeDB(t, db)
	disk.free.Store(db.Stats().ReserveBytes + 4<<20)
	deadline := time.Now().Add(20 * time.Second)
	for db.Stats().GCSkipped == 0 {
		if time.Now().After(deadline) {
			t.Fatal("value-log GC was never skipped with 4 MiB free above the reserve")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := db.Stats(); st.State != cache.StateOK {
		t.Fatalf("state %s: 4 MiB above the reserve is not disk_full", st.State)
	}
}

// TestReopenWaitsForCallsInProgress: the switch from memory to badger waits for the calls in
// progress, including a Scan whose callback writes to the store (the switch cannot tell that
// write from a new call: it must give up waiting, let it in, and try again), and loses
// nothing written meanwhile.
func TestReopenWaitsForCallsInProgress(t *testing.T) {
	disk := newFakeDisk(0)
	db := openOnDisk(t, t.TempDir(), cache.Config{}, disk)
	defer closeDB(t, db)
	mustSet(t, db, "scan/1", "v", 0)
	inside, release := make(chan struct{}), make(chan struct{})
	scanDone := make(chan error, 1)
	go func() {
		scanDone <- db.Scan([]byte("scan/"), func(key, _ []byte) error {
			close(inside)
			<-release
			return db.Set([]byte("from-callback"), []byte("v"), 0)
		})
	}()
	<-inside
	disk.free.Store(plenty)
	time.Sleep(300 * time.Millisecond) // lets the switch try (and give up) while the Scan runs
	if st := db.Stats(); st.State != cache.StateMemory {
		t.Fatalf("the cache switched to badger during a Scan: %s", st.State)
	}
	close(release)
	if err := <-scanDone; err != nil {
		t.Fatalf("Scan: %v", err)
	}
	waitState(t, db, cache.StateOK)
	wantValue(t, db, "from-callback", "v")
	wantValue(t, db, "scan/1", "v")
}
