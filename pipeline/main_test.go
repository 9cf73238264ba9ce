package pipeline

import (
	"testing"

	"go.uber.org/goleak"
)

// The pipeline starts no goroutine; goleak keeps it so (every input start builds one).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
