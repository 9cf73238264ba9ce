package pipeline

import (
	"testing"

	"go.uber.org/goleak"
)

// Start runs a goroutine (the decision loop) that Stop must end; goleak checks it does.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
