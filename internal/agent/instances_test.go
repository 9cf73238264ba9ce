package agent

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/point"
)

// twoInstances is a pinpoint.conf with two instances on their own loopback ports, named by
// alias and telling their points apart by a tag.
const twoInstances = `[[inputs.pinpoint]]
  alias = "shop"
  address = "127.0.0.1:0"
  stat_address = "127.0.0.1:0"
  span_address = "127.0.0.1:0"
  [inputs.pinpoint.tags]
    collector = "shop"
[[inputs.pinpoint]]
  alias = "batch"
  address = "127.0.0.1:0"
  stat_address = "127.0.0.1:0"
  span_address = "127.0.0.1:0"
  [inputs.pinpoint.tags]
    collector = "batch"
`

// TestTwoInstancesKeepTheirState runs two Pinpoint instances in one apmkit, each receiving
// its own recording at the same time, stops apmkit in the middle of both (spans waiting for
// metadata, chunks waiting for their spans) and starts it again on the same data dir: each
// instance restores only its own state, so each instance's output is exactly its
// recording's facts, with no span twice and none under the other instance's tag.
func TestTwoInstancesKeepTheirState(t *testing.T) {
	recs := map[string]*replay.Recording{"shop": recording(t, "go-agent-batch-200"), "batch": recording(t, "go-agent-async-heavy")}
	firsts, seconds := map[string]*replay.Recording{}, map[string]*replay.Recording{}
	for alias, rec := range recs {
		firsts[alias], seconds[alias] = splitForRestart(t, rec)
	}
	dataDir := t.TempDir()
	main := testMain

	a := startAgentConf(t, dataDir, main, twoInstances)
	replayEach(t, a, firsts)
	stopAgent(t, a)
	for _, alias := range []string{"shop", "batch"} {
		if n := cacheKeys(t, dataDir, "pinpoint-trace@"+alias); n == 0 {
			t.Fatalf("instance %s left nothing pending at the stop: the restart would test nothing", alias)
		}
	}

	a = startAgentConf(t, dataDir, main, twoInstances)
	replayEach(t, a, seconds)
	stopAgent(t, a)

	spans := byTag(readOutput(t, dataDir, point.Tracing), "collector")
	metrics := byTag(readOutput(t, dataDir, point.Metric), "collector")
	for alias, rec := range recs {
		t.Run(alias, func(t *testing.T) {
			checkSpans(t, spans[alias], rec.Manifest)
			checkMetrics(t, metrics[alias], rec.Manifest)
		})
	}
	if len(spans) != 2 || len(metrics) != 2 {
		t.Errorf("points under tags %v (spans) and %v (metrics), want only shop and batch", keys(spans), keys(metrics))
	}
}

// TestStateOfAnEarlierVersionMoves starts apmkit on a data dir whose cache holds an earlier
// version's state: the namespaces without an alias, as one instance left them in the middle
// of a recording. The (only) instance takes that state over, so the rest of the recording
// completes every transaction.
func TestStateOfAnEarlierVersionMoves(t *testing.T) {
	rec := recording(t, "go-agent-async-heavy")
	first, second := splitForRestart(t, rec)
	dataDir := t.TempDir()
	a, in := startAgent(t, dataDir, "  alias = \"before\"\n")
	replayInto(t, in, first)
	stopAgent(t, a)
	for _, ns := range []string{"pinpoint", "pinpoint-trace"} { // what a version without aliases kept
		moveOffline(t, dataDir, ns+"@before", ns)
	}

	a, in = startAgent(t, dataDir, "") // alias: its address
	replayInto(t, in, second)
	stopAgent(t, a)
	checkSpans(t, readOutput(t, dataDir, point.Tracing), rec.Manifest)
	for _, ns := range []string{"pinpoint", "pinpoint-trace"} {
		if n := cacheKeys(t, dataDir, ns); n != 0 {
			t.Errorf("%d keys left in the old namespace %s", n, ns)
		}
	}
}

// replayEach replays each alias's recording into the instance of that alias, all at once.
func replayEach(t *testing.T, a *Agent, recs map[string]*replay.Recording) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(a.inputs))
	for i, ri := range a.inputs {
		rec, ok := recs[ri.alias]
		if !ok {
			t.Fatalf("no recording for instance %s", ri.alias)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = replayTo(ri.input.(*pinpoint.Input), rec)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// openCache opens a stopped apmkit's cache.
func openCache(t *testing.T, dataDir string) *cache.DB {
	t.Helper()
	db, err := cache.OpenBadger(filepath.Join(dataDir, "cache"), cache.DefaultConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// cacheKeys counts the keys of a namespace of a stopped apmkit's cache.
func cacheKeys(t *testing.T, dataDir, ns string) int {
	t.Helper()
	db := openCache(t, dataDir)
	defer db.Close()
	n := 0
	if err := db.Namespace(ns).Scan(nil, func(_, _ []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// moveOffline renames a namespace of a stopped apmkit's cache.
func moveOffline(t *testing.T, dataDir, from, to string) {
	t.Helper()
	db := openCache(t, dataDir)
	defer db.Close()
	if n, err := db.MoveNamespace(from, to); err != nil || n == 0 {
		t.Fatalf("move %s to %s: %d keys, %v", from, to, n, err)
	}
}

// byTag groups points by a tag's value.
func byTag(pts []*point.Point, key string) map[string][]*point.Point {
	out := map[string][]*point.Point{}
	for _, p := range pts {
		out[tag(p, key)] = append(out[tag(p, key)], p)
	}
	return out
}

func keys(m map[string][]*point.Point) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return strings.Join(ks, ",")
}
