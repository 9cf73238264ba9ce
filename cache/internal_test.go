package cache

import (
	"bytes"
	"context"
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
	got := dirBytes(dir)
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
