package agent

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/internal/influxtest"
	"github.com/apmkit/apmkit/point"
)

// These tests check what lands in a real InfluxDB, not what apmkit sent: rows are counted
// by querying influxd back. The database is never created beforehand: the output must.

// influxMain is a main config with a file output (what apmkit rebuilt, line by line) and an
// influxdb output to db side by side.
func influxMain(url, db string) string {
	return testMainWithFile + fmt.Sprintf(`[[io.outputs]]
type = "influxdb"
url = %q
database = %q
retry_initial = "50ms"
retry_max = "200ms"
`, url, db)
}

// outputCounts counts what the file outputs of dataDir wrote (failing on two points that
// would be one InfluxDB row).
func outputCounts(t *testing.T, dataDir string) influxtest.Counts {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dataDir, "out", "*.lp"))
	if err != nil {
		t.Fatal(err)
	}
	return influxtest.CountFiles(t, files)
}

// TestRecordingsInInfluxDB replays each recording into apmkit with a real influxd: every
// span and metric point apmkit rebuilt is one row, the counts are the recording's facts, and
// the same traffic sent again (an agent re-sending, another replica) adds no row.
func TestRecordingsInInfluxDB(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	for _, rec := range recordings(t) {
		t.Run(rec.Name, func(t *testing.T) {
			db := strings.ReplaceAll(rec.Name, "-", "_")
			dataDir := t.TempDir()
			a, in := startAgentMain(t, dataDir, influxMain(srv.URL, db), "")
			replayInto(t, in, rec)
			stopAgent(t, a)

			spans := readOutput(t, dataDir, point.Tracing)
			checkSpans(t, spans, rec.Manifest) // the file output holds exactly the recording's facts
			want := outputCounts(t, dataDir)
			if want.SpanTypes["entry"] != rec.Manifest.Int("messages.PSpan") ||
				want.SpanTypes["exit"]+want.SpanTypes["local"] != rec.Manifest.Int("traces.span_events.total") {
				t.Fatalf("file output: %s; want %d entry and %d event spans", want,
					rec.Manifest.Int("messages.PSpan"), rec.Manifest.Int("traces.span_events.total"))
			}
			measurements := slices.Sorted(maps.Keys(want.Measurements))
			if !slices.Contains(srv.Databases(t), db) {
				t.Fatalf("database %s was not created; databases: %v", db, srv.Databases(t))
			}
			if got := srv.Counts(t, db, measurements); !got.Equal(want) {
				t.Fatalf("influxd holds %s\nwant %s", got, want)
			}

			// The same traffic again, through a fresh apmkit (another replica, or an agent
			// re-sending): every point lands on its own row again.
			a2, in2 := startAgentMain(t, t.TempDir(), influxMain(srv.URL, db), "")
			replayInto(t, in2, rec)
			stopAgent(t, a2)
			if got := srv.Counts(t, db, measurements); !got.Equal(want) {
				t.Fatalf("after sending the recording twice influxd holds %s\nwant %s", got, want)
			}
		})
	}
}

// TestRestartMidReplayInInfluxDB stops apmkit in the middle of a recording, after spans
// whose metadata had not arrived yet, and starts it again on the same data dir; the agent
// then sends its metadata and the rest. Nothing is missing, nothing doubled, no
// placeholder: in the files and in InfluxDB.
func TestRestartMidReplayInInfluxDB(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{})
	for _, rec := range recordings(t) {
		t.Run(rec.Name, func(t *testing.T) {
			db := strings.ReplaceAll(rec.Name, "-", "_")
			dataDir := t.TempDir()
			first, second := splitForRestart(t, rec)
			a, in := startAgentMain(t, dataDir, influxMain(srv.URL, db), "")
			replayInto(t, in, first)
			stopAgent(t, a)
			a, in = startAgentMain(t, dataDir, influxMain(srv.URL, db), "")
			replayInto(t, in, second)
			stopAgent(t, a)

			checkSpans(t, readOutput(t, dataDir, point.Tracing), rec.Manifest) // counts, links, no placeholders
			want := outputCounts(t, dataDir)                                   // and no point written twice
			if got := srv.Counts(t, db, slices.Sorted(maps.Keys(want.Measurements))); !got.Equal(want) {
				t.Fatalf("influxd holds %s\nwant %s", got, want)
			}
		})
	}
}

// splitForRestart cuts a recording in two runs of one agent: the first sends everything up
// to the middle span call except the metadata, the second (after the restart, as an agent
// that reconnects) re-opens the streams that were open, sends all the metadata, then the
// rest. Spans of the first part wait for metadata across the restart.
func splitForRestart(t *testing.T, rec *replay.Recording) (first, second *replay.Recording) {
	t.Helper()
	isMeta := func(ev replay.Event) bool { return strings.HasPrefix(ev.Method, "/v1.Metadata/") }
	var spanCalls []int
	for i, ev := range rec.Events {
		if strings.HasPrefix(ev.Method, "/v1.Span/") && ev.Event == "msg" {
			spanCalls = append(spanCalls, i)
		}
	}
	if len(spanCalls) < 2 {
		t.Fatalf("%s: %d span messages, too few to split", rec.Name, len(spanCalls))
	}
	cut := spanCalls[len(spanCalls)/2] + 1 // just after the middle span message
	open := map[string]replay.Event{}      // stream -> its open event
	var order []string
	first, second = copyHeader(rec), copyHeader(rec)
	for _, ev := range rec.Events[:cut] {
		if isMeta(ev) {
			continue
		}
		first.Events = append(first.Events, ev)
		switch ev.Event {
		case "open":
			open[ev.Stream] = ev
			order = append(order, ev.Stream)
		case "close":
			delete(open, ev.Stream)
		}
	}
	for _, s := range order { // the old process's streams end with it
		if _, ok := open[s]; ok {
			first.Events = append(first.Events, replay.Event{Stream: s, Method: open[s].Method, Kind: open[s].Kind, Event: "close"})
		}
	}
	for _, s := range order { // the agent reconnects: the same streams, opened anew
		if ev, ok := open[s]; ok {
			second.Events = append(second.Events, ev)
		}
	}
	for _, ev := range rec.Events {
		if isMeta(ev) {
			second.Events = append(second.Events, ev)
		}
	}
	for _, ev := range rec.Events[cut:] {
		if !isMeta(ev) {
			second.Events = append(second.Events, ev)
		}
	}
	return first, second
}

func copyHeader(rec *replay.Recording) *replay.Recording {
	return &replay.Recording{Name: rec.Name, Header: rec.Header, Manifest: rec.Manifest}
}
