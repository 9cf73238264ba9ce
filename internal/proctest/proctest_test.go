package proctest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestExitedEarly: a program that exits before it is ready is reported with its exit
// status and its output is in the file; Kill after that does not wait forever.
func TestExitedEarly(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.log")
	p := Start(t, "sh", out, "sh", "-c", "echo oops; exit 3")
	err := p.WaitReady(10*time.Second, func() error { return errors.New("not yet") })
	if err == nil || err.Error() != "exited early: exit status 3" {
		t.Fatalf("WaitReady = %v, want exited early: exit status 3", err)
	}
	p.Kill()
	p.Kill()
	if got := Tail(out); got != "oops\n" {
		t.Fatalf("output %q, want oops", got)
	}
}

// TestNotReady: WaitReady gives up after its timeout with ready's last error; Run kills the
// process at cleanup.
func TestNotReady(t *testing.T) {
	p := Run(t, "sh", filepath.Join(t.TempDir(), "out.log"), "sh", "-c", "sleep 60")
	errNo := errors.New("no")
	err := p.WaitReady(50*time.Millisecond, func() error { return errNo })
	if !errors.Is(err, errNo) || !strings.HasPrefix(err.Error(), "not ready after 50ms") {
		t.Fatalf("WaitReady = %v, want not ready after 50ms: no", err)
	}
	if err := p.WaitReady(time.Second, func() error { return nil }); err != nil {
		t.Fatalf("WaitReady of a ready process = %v", err)
	}
}

// TestTail: the last 8 KiB of a file, all of a small one, nothing of a missing one.
func TestTail(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("a", 10<<10)+strings.Repeat("b", 8<<10)), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Tail(big); got != strings.Repeat("b", 8<<10) {
		t.Fatalf("Tail of a big file: %d bytes, %d a", len(got), strings.Count(got, "a"))
	}
	if got := Tail(filepath.Join(dir, "missing")); got != "" {
		t.Fatalf("Tail of a missing file = %q", got)
	}
}
