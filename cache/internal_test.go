package cache

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestExpiresAtRoundsUp(t *testing.T) {
	base := time.Unix(1000, 0)
	tests := []struct {
		now  time.Time
		ttl  time.Duration
		want uint64
	}{
		{base, time.Second, 1001},
		{base.Add(900 * time.Millisecond), 500 * time.Millisecond, 1002}, // 1001.4 -> 1002, not 1001
		{base.Add(100 * time.Millisecond), 100 * time.Millisecond, 1001}, // sub-second: not expired at once
		{base, time.Hour, 1000 + 3600},
	}
	for _, tc := range tests {
		if got := expiresAt(tc.now, tc.ttl); got != tc.want {
			t.Errorf("expiresAt(%v, %v) = %d, want %d", tc.now.UnixMilli(), tc.ttl, got, tc.want)
		}
	}
}

func TestBadgerLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	l := badgerLogger{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	l.Infof("All %d tables opened\n", 3)
	l.Debugf("noise")
	l.Warningf("disk %s\n", "slow")
	l.Errorf("broken")
	out := buf.String()
	if strings.Contains(out, "tables opened") || strings.Contains(out, "noise") {
		t.Errorf("badger info/debug lines reached an info-level log:\n%s", out)
	}
	if !strings.Contains(out, `level=WARN msg="disk slow" lib=badger`) ||
		!strings.Contains(out, "level=ERROR msg=broken lib=badger") {
		t.Errorf("badger warnings/errors missing or malformed:\n%s", out)
	}
	if !l.log.Enabled(context.Background(), slog.LevelWarn) {
		t.Fatal("test logger misconfigured")
	}
}

// TestDirBytesCountsAllocatedSpace: badger preallocates its logs as sparse files; counting
// their apparent size would make a fresh cache look full.
func TestDirBytesCountsAllocatedSpace(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "000001.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil { // what badger does to a new log
		t.Fatal(err)
	}
	got := dirBytes(dir).total
	if got < 64<<10 {
		t.Fatalf("dirBytes = %d, less than the 64 KiB written", got)
	}
	// Linux file systems (ext4, xfs, btrfs, tmpfs, overlayfs) all keep truncated files sparse.
	if runtime.GOOS == "linux" && got >= 1<<30 {
		t.Fatalf("dirBytes = %d: counted the sparse file's apparent size", got)
	}
}

func TestDiskUsageEstimate(t *testing.T) {
	u := newDiskUsage(t.TempDir(), 10_000)
	if err := u.admit(9_000); err != nil {
		t.Fatalf("admit within the cap: %v", err)
	}
	u.wrote(9_000)
	// The dir is still empty, but it was just measured, so the estimate stands.
	if err := u.admit(2_000); err != ErrFull {
		t.Fatalf("admit past the estimated usage = %v, want ErrFull", err)
	}
	u.measures = time.Time{} // as if the measurement were old
	if err := u.admit(2_000); err != nil {
		t.Fatalf("admit after a measurement found the dir empty = %v, want nil", err)
	}
	if u.pending.Load() != 0 {
		t.Fatalf("pending = %d after a measurement, want 0", u.pending.Load())
	}
}

// TestDiskSpaceCountsWritesInFlight: the writes admitted and not done yet are subtracted
// from the free space measured, which does not show them yet, so concurrent writes cannot
// together run through the reserve.
func TestDiskSpaceCountsWritesInFlight(t *testing.T) {
	free := int64(minReserve + 100_000)
	s := newDiskSpace(t.TempDir(), 0, func(string) (int64, error) { return free, nil })
	admitted := 0
	for s.admit(10_000) {
		admitted++
	}
	if admitted != 10 {
		t.Fatalf("admitted %d writes of 10 kB in flight with 100 kB above the reserve, want 10", admitted)
	}
	if s.full.Load() {
		t.Fatal("refusing one write is not the full state")
	}
	if !s.admitDelete(100) {
		t.Fatal("a delete was refused with the whole reserve free")
	}
	s.done(100)
	s.done(10_000)
	if !s.admit(10_000) {
		t.Fatal("refused once a write in flight was done")
	}
	// Another writer takes the space: the very next write sees it.
	free = minReserve - 1
	if s.admit(1) || !s.full.Load() {
		t.Fatal("a write was admitted after the free space fell below the reserve")
	}
}

// TestDiskSpaceUnknown: when the free space cannot be measured, nothing is refused.
func TestDiskSpaceUnknown(t *testing.T) {
	s := newDiskSpace(t.TempDir(), 0, func(string) (int64, error) { return 0, os.ErrPermission })
	s.measure()
	if !s.admit(1<<30) || s.full.Load() || s.free.Load() != -1 {
		t.Fatal("an unmeasurable file system refused a write")
	}
}

// TestDiskSpaceReserve: the reserve is min_free_mb (at least minReserve) plus the size of
// badger's tables, up to maxCompactionReserve.
func TestDiskSpaceReserve(t *testing.T) {
	dir := t.TempDir()
	free := func(string) (int64, error) { return 1 << 40, nil }
	if got := newDiskSpace(dir, 1, free).reserve(); got != minReserve {
		t.Errorf("min_free_mb 1: reserve %d, want the minimum %d", got, minReserve)
	}
	if got := newDiskSpace(dir, 100, free).reserve(); got != 100<<20 {
		t.Errorf("min_free_mb 100: reserve %d, want %d", got, 100<<20)
	}
	if err := os.WriteFile(filepath.Join(dir, "000001.sst"), make([]byte, 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newDiskSpace(dir, 0, free)
	s.measure()
	if got := s.reserve(); got < minReserve+3<<20 || got > minReserve+3<<20+64<<10 {
		t.Errorf("with 3 MiB of tables: reserve %d, want about %d", got, minReserve+3<<20)
	}
}

// TestOpGatePause: a pause waits for the calls inside and holds new ones back until resume;
// with a call that does not leave in time (a Scan callback calling in, say) it gives up and
// lets the held calls in.
func TestOpGatePause(t *testing.T) {
	g := newOpGate()
	if !g.pause(time.Second) {
		t.Fatal("pause of an idle gate failed")
	}
	entered := make(chan struct{})
	go func() {
		if g.enter() {
			g.leave()
		}
		close(entered)
	}()
	select {
	case <-entered:
		t.Fatal("a call entered a paused gate")
	case <-time.After(20 * time.Millisecond): // the call had time to get in, and did not
	}
	g.resume()
	<-entered

	if !g.enter() {
		t.Fatal("enter failed")
	}
	// The call inside makes another (re-entrant) call while a pause waits.
	inner := make(chan bool)
	paused := make(chan bool)
	go func() { paused <- g.pause(50 * time.Millisecond) }()
	time.Sleep(10 * time.Millisecond) // let the pause begin; either order must work
	go func() { inner <- g.enter() }()
	if ok := <-paused; ok {
		t.Fatal("pause succeeded with a call inside")
	}
	if !<-inner {
		t.Fatal("the inner call was refused")
	}
	g.leave()
	g.leave()
	if !g.pause(time.Second) {
		t.Fatal("pause failed once the calls left")
	}
	g.resume()
	if !g.close() || g.pause(time.Second) {
		t.Fatal("a closed gate paused")
	}
}

// TestFallbackReplayKeepsNewerWrites: a key written again while its older value is being
// replayed stays in the fallback with the newer value, to be replayed after; deletes
// supersede sets and the other way round.
func TestFallbackReplayKeepsNewerWrites(t *testing.T) {
	f := newFallback(1)
	defer f.close()
	if handled, _ := f.set([]byte("k"), []byte("v"), 0); handled {
		t.Fatal("the fallback took a write while Redis was ok")
	}
	f.degrade(errors.New("connection refused"))
	mustKeep := func(handled bool, err error) {
		t.Helper()
		if !handled || err != nil {
			t.Fatalf("kept: %v, %v; want the write kept", handled, err)
		}
	}
	mustKeep(f.set([]byte("k"), []byte("old"), 0))
	mustKeep(f.set([]byte("gone"), []byte("x"), time.Hour))
	mustKeep(f.delete([]byte("gone")))
	f.catchUp()
	items := f.batch(10)
	mustKeep(f.set([]byte("k"), []byte("new"), 0)) // while "old" is on its way to Redis
	for _, it := range items {
		f.done(it)
	}
	if f.finish() {
		t.Fatal("caught up with a newer write still kept")
	}
	items = f.batch(10)
	if len(items) != 1 || items[0].key != "k" || string(items[0].val) != "new" || items[0].deleted {
		t.Fatalf("left to replay: %+v, want k=new", items)
	}
	if val, hit, err := f.get([]byte("k")); !hit || err != nil || string(val) != "new" {
		t.Fatalf("get(k) = %q, %v, %v; want the newer value", val, hit, err)
	}
	f.done(items[0])
	if !f.finish() || f.active.Load() {
		t.Fatal("did not catch up with nothing left to replay")
	}
	if st := f.status(); st.changes != 0 || st.bytes != 0 || st.tombs != 0 {
		t.Fatalf("after catching up: %+v, want nothing kept", st)
	}
}

// TestLexUpper: the exclusive bound past every key with the prefix, bytewise.
func TestLexUpper(t *testing.T) {
	for prefix, want := range map[string]string{
		"\x08pinpoint": "(\x08pinpoinu",
		"a\xff\xff":    "(b",
		"\xff\xff":     "+",
		"\x00":         "(\x01",
	} {
		if got := lexUpper([]byte(prefix)); got != want {
			t.Errorf("lexUpper(%q) = %q, want %q", prefix, got, want)
		}
	}
}
