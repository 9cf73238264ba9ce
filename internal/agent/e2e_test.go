package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/config"
	"github.com/apmkit/apmkit/inputs/pinpoint"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/point"
)

// testMain is the main config of the tests' apmkit: the HTTP API on a loopback port, quick
// flushes to the file output. Without the explorer's local output, which has tests of its
// own (packages explorer and tracestore) and would only slow these down; TestAPI checks
// that it is on by default.
const testMain = "[http_api]\nlisten = \"127.0.0.1:0\"\n[io]\nexplorer = false\nflush_interval = \"100ms\"\n"

// testMainWithFile is testMain with a file output (what apmkit rebuilt, line by line), for
// tests that compare a store with it; outputs added after it go beside it.
const testMainWithFile = testMain + "[[io.outputs]]\ntype = \"file\"\nmax_file_mb = 1024\n"

// startAgent runs a whole apmkit: the Pinpoint input on three loopback ports, the
// pipeline, and the file output in a temp data dir. Reusing dataDir is a restart.
func startAgent(t *testing.T, dataDir string, pinpointConf string) (*Agent, *pinpoint.Input) {
	t.Helper()
	return startAgentMain(t, dataDir, testMain, pinpointConf)
}

// startAgentMain is startAgent with the main config given.
func startAgentMain(t testing.TB, dataDir, main, pinpointConf string) (*Agent, *pinpoint.Input) {
	t.Helper()
	a := startAgentConf(t, dataDir, main, `[[inputs.pinpoint]]
  address = "127.0.0.1:0"
  stat_address = "127.0.0.1:0"
  span_address = "127.0.0.1:0"
`+pinpointConf)
	return a, a.inputs[0].input.(*pinpoint.Input)
}

// startAgentConf runs a whole apmkit with the main config and pinpoint.conf given.
func startAgentConf(t testing.TB, dataDir, main, pinpointConf string) *Agent {
	t.Helper()
	confDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(confDir, "pinpoint.conf"), []byte(pinpointConf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(confDir, "apmkit.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Options{ConfDir: confDir, DataDir: dataDir, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAgent(t, a) })
	return a
}

func stopAgent(t testing.TB, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func replayInto(t *testing.T, in *pinpoint.Input, rec *replay.Recording) {
	t.Helper()
	if err := replayTo(in, rec); err != nil {
		t.Fatal(err)
	}
}

// replayTo replays rec into in's addresses (one or three ports, as recorded); it may run in
// a goroutine of its own.
func replayTo(in *pinpoint.Input, rec *replay.Recording) error {
	addrs := in.Addrs()
	targets := replay.Targets{Agent: addrs[0]}
	if rec.Header.Ports == "three" {
		targets = replay.Targets{Agent: addrs[0], Stat: addrs[1], Span: addrs[2]}
	}
	return replayAt(rec, targets)
}

// replayAt replays rec to targets; a call that failed is an error.
func replayAt(rec *replay.Recording, targets replay.Targets) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := rec.Replay(ctx, targets)
	if err != nil {
		return fmt.Errorf("%s: %w", rec.Name, err)
	}
	if len(res.Failed) > 0 {
		return fmt.Errorf("%s: %d calls failed: %s", rec.Name, len(res.Failed), res.Failed[0])
	}
	return nil
}

// readOutput parses every line-protocol file the file output wrote for a category.
func readOutput(t *testing.T, dataDir string, cat point.Category) []*point.Point {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dataDir, "out", cat.String()+"-*.lp"))
	if err != nil {
		t.Fatal(err)
	}
	var pts []*point.Point
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := point.Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		pts = append(pts, p...)
	}
	return pts
}

func recordings(t testing.TB) []*replay.Recording {
	t.Helper()
	recs, err := replay.All()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func str(p *point.Point, key string) string {
	f, _ := p.Field(key)
	return f.StringValue()
}

func num(p *point.Point, key string) int64 {
	f, _ := p.Field(key)
	return f.IntValue()
}

func tag(p *point.Point, key string) string {
	v, _ := p.Tag(key)
	return v
}

// TestReplayEndToEnd replays each recording into a whole apmkit (gRPC in, line protocol
// out through the file output) and checks the spans against the recording's manifest.
func TestReplayEndToEnd(t *testing.T) {
	for _, rec := range recordings(t) {
		t.Run(rec.Name, func(t *testing.T) {
			dataDir := t.TempDir()
			a, in := startAgent(t, dataDir, "")
			replayInto(t, in, rec)
			stopAgent(t, a) // flushes every queue to the file output
			checkSpans(t, readOutput(t, dataDir, point.Tracing), rec.Manifest)
			checkMetrics(t, readOutput(t, dataDir, point.Metric), rec.Manifest)
		})
	}
}

func checkSpans(t *testing.T, spans []*point.Point, m replay.Manifest) {
	t.Helper()
	byTrace := map[string][]*point.Point{}
	var entries, events, errorEntries int64
	for _, p := range spans {
		if p.Name != "pinpoint" {
			t.Fatalf("measurement %q in the tracing stream", p.Name)
		}
		byTrace[str(p, "trace_id")] = append(byTrace[str(p, "trace_id")], p)
		if tag(p, "span_type") == "entry" {
			entries++
			if tag(p, "status") == "error" {
				errorEntries++
			}
		} else {
			events++
		}
		for _, k := range []string{"operation", "resource"} {
			v := tag(p, k)
			if k == "resource" {
				v = str(p, k)
			}
			if strings.HasPrefix(v, "api:") || strings.HasPrefix(v, "sql:") || strings.HasPrefix(v, "string:") {
				t.Errorf("unresolved %s %q in trace %s", k, v, str(p, "trace_id"))
			}
		}
	}
	if entries != m.Int("messages.PSpan") || events != m.Int("traces.span_events.total") {
		t.Errorf("entry spans %d, event spans %d; want %d and %d", entries, events, m.Int("messages.PSpan"), m.Int("traces.span_events.total"))
	}
	if int64(len(byTrace)) != m.Int("traces.transactions") {
		t.Errorf("traces %d, want %d", len(byTrace), m.Int("traces.transactions"))
	}
	if errorEntries != m.Int("traces.error_spans") {
		t.Errorf("error entry spans %d, want %d", errorEntries, m.Int("traces.error_spans"))
	}
	links := int64(0)
	for id, trace := range byTrace {
		links += checkTrace(t, id, trace)
	}
	if want := m.Int("traces.parent_child_links.matching_same_transaction_and_parent"); links != want {
		t.Errorf("cross-agent links %d, want %d", links, want)
	}
}

// checkTrace checks one trace: unique span ids, every parent present, children inside
// their parent's time (1 ms tolerance). It returns the number of callee entry spans whose
// parent is the caller's exit span.
func checkTrace(t *testing.T, id string, trace []*point.Point) int64 {
	t.Helper()
	byID := map[string]*point.Point{}
	for _, p := range trace {
		sid := str(p, "span_id")
		if _, dup := byID[sid]; dup {
			t.Errorf("trace %s: duplicate span_id %s", id, sid)
		}
		byID[sid] = p
	}
	links := int64(0)
	for _, p := range trace {
		pid := str(p, "parent_id")
		if pid == "0" {
			continue
		}
		parent, ok := byID[pid]
		if !ok {
			t.Errorf("trace %s: %s span %s (%s) has no parent %s", id, tag(p, "span_type"), str(p, "span_id"), tag(p, "operation"), pid)
			continue
		}
		if tag(p, "span_type") == "entry" && tag(parent, "span_type") == "exit" {
			links++
		}
		const tolerance = 1000 // µs
		if num(p, "start") < num(parent, "start")-tolerance ||
			num(p, "start")+num(p, "duration") > num(parent, "start")+num(parent, "duration")+tolerance {
			t.Errorf("trace %s: span %s [%d +%d] outside its parent %s [%d +%d]", id, str(p, "span_id"),
				num(p, "start"), num(p, "duration"), pid, num(parent, "start"), num(parent, "duration"))
		}
	}
	return links
}

func checkMetrics(t *testing.T, pts []*point.Point, m replay.Manifest) {
	t.Helper()
	count := map[string]int64{}
	for _, p := range pts {
		count[p.Name]++
	}
	if count["pinpoint_jvm"] != m.Int("messages.PAgentStat_entries_in_batches") || count["pinpoint_uri"] != m.Int("messages.PEachUriStat_entries") {
		t.Errorf("metric points %v", count)
	}
}
