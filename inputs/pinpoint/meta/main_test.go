package meta

import (
	"testing"

	"go.uber.org/goleak"
)

// The lease refresher is a goroutine: none may outlive its Stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
