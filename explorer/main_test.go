package explorer_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain shares one browser between the browser tests, closes it, then fails the
// package when a test left a goroutine behind.
func TestMain(m *testing.M) {
	code := m.Run()
	closeBrowser()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
