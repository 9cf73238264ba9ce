package monitor

import (
	"testing"

	"go.uber.org/goleak"
)

// The monitor tests start a whole agent; nothing of it may outlive its Stop.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
