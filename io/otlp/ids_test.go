package otlp

import (
	"encoding/hex"
	"testing"
)

// The expected ids were computed outside Go: `printf %s 'frontend-01^1795417119878^2' |
// sha256sum | cut -c1-32`, and Python's format(v & (2**64-1), '016x') for span ids.
func TestIDs(t *testing.T) {
	if got := TraceID("frontend-01^1795417119878^2"); hex.EncodeToString(got[:]) != "de09b22c2a866f82102be693c4e7ec82" {
		t.Errorf("TraceID = %x", got)
	}
	for id, want := range map[int64]string{
		-304823916064687458: "fbc50c436bebba9e",
		1641556045034430087: "16c7fa868f2c1e87",
		1:                   "0000000000000001",
		-1:                  "ffffffffffffffff",
	} {
		if got := SpanID(id); hex.EncodeToString(got[:]) != want {
			t.Errorf("SpanID(%d) = %x, want %s", id, got, want)
		}
	}
}
