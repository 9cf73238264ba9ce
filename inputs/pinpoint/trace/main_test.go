package trace

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: Stop must end the
// background work.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
