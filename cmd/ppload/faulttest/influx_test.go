package faulttest

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/apmkit/apmkit/internal/influxtest"
)

// TestBurstInInfluxDB sends a closed-loop burst of same-shaped spans from ppload (8 agents,
// as fast as apmkit takes them: many spans of one agent start in the same millisecond)
// through apmkit to a real influxd whose database does not exist yet, and counts the rows
// InfluxDB holds: exactly one per point apmkit wrote, one entry row per span ppload got
// acknowledged. Points that shared a series and a timestamp would be fewer rows.
func TestBurstInInfluxDB(t *testing.T) {
	if testing.Short() && !inCI {
		t.Skip("-short: skipping the InfluxDB burst test")
	}
	srv := influxtest.Start(t, influxtest.Options{})
	c := defaultIOConf()
	c.QueueMB, c.BatchPoints, c.StopTimeout = 32, 5000, 60*time.Second
	c.Outputs = fmt.Sprintf(`[[io.outputs]]
  type = "file"
  max_file_mb = 4096
[[io.outputs]]
  type = "influxdb"
  url = %q
  database = "burst"
  retry_initial = "100ms"
  retry_max = "1s"
`, srv.URL)
	ap := startApmkit(t, "", c)
	// No linked calls: every span an agent receives is then of its own transactions, whose
	// consecutive sequences make row times distinct by construction (rowtime.go). Spans of
	// other callers' transactions share a row only by chance, about one in a million per pair
	// of same-shaped points in one millisecond (a linked burst of 158k points once showed one):
	// TestRowTimesOverlappingCallers covers that case deterministically.
	run := startPpload(t, ap.grpcAddr, "-agents", "8", "-spans", "12000", "-rate", "0", "-seed", "11",
		"-run-id", "burst", "-events", "12", "-linked-frac", "0", "-error-frac", "0.05")
	sum := run.wait()
	if sum.Rejected != 0 || sum.Lost != 0 || len(sum.Errors) != 0 {
		t.Fatalf("ppload: %+v", sum)
	}
	if code := ap.terminate(); code != 0 {
		t.Fatalf("apmkit exited %d", code)
	}

	files, err := filepath.Glob(filepath.Join(ap.dataDir, "out", "tracing-*.lp"))
	if err != nil {
		t.Fatal(err)
	}
	written := influxtest.CountFiles(t, files) // fails on two points that would share a row
	if written.SpanTypes["entry"] != sum.Spans {
		t.Fatalf("apmkit wrote %d entry spans, ppload had %d acknowledged", written.SpanTypes["entry"], sum.Spans)
	}
	got := srv.Counts(t, "burst", slices.Sorted(maps.Keys(written.Measurements)))
	if !got.Equal(written) {
		t.Fatalf("influxd holds %s\napmkit wrote %s", got, written)
	}
	t.Logf("%d spans, %d span rows in InfluxDB", sum.Spans, got.Measurements["pinpoint"])
}
