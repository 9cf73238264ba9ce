// Package all registers every input apmkit ships; the binary imports it for side effects.
package all

import (
	_ "github.com/apmkit/apmkit/inputs/pinpoint" // Pinpoint agents' gRPC collector
)
