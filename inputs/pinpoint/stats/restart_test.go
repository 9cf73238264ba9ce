package stats

import (
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// openBadgerStore opens the on-disk cache in dir and a fresh meta.Store over it, as apmkit
// does at start-up.
func openBadgerStore(t *testing.T, dir string) (*cache.DB, *meta.Store) {
	t.Helper()
	db, err := cache.OpenBadger(dir, cache.DefaultConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	store, err := meta.NewStore(db.Namespace("pinpoint"), meta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db, store
}

// Agents send PAgentInfo once per process. Stats that arrive after an apmkit restart must
// still be tagged from the info persisted before it.
func TestStatsAfterRestartKeepAgentTags(t *testing.T) {
	dir := t.TempDir()

	db, store := openBadgerStore(t, dir)
	if err := store.PutAgent(*goSender, goAgentInfo()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, store = openBadgerStore(t, dir) // a new process: empty LRU, only the disk remembers
	defer db.Close()
	pts, skipped := NewConverter(store, nil).Stat(goSender, batchMessage(goSamples()[0]))
	assertNothingSkipped(t, skipped)
	if len(pts) != 1 {
		t.Fatalf("got %d points, want 1", len(pts))
	}
	for key, want := range map[string]string{
		"agent_id": "backend-01", "agent_name": "backend-01", "service": "backend",
		"hostname": "vm", "host": "vm", "ip": "192.0.2.2", "pid": "4480",
		"agentVersion": "1.5.0", "container": "true", "jvm_gc_type": "CMS",
	} {
		if got, ok := pts[0].Tag(key); got != want {
			t.Errorf("tag %s = %q (present %v), want %q", key, got, ok, want)
		}
	}

	// And URI stats of the same run get the host too.
	pts, _ = NewConverter(store, nil).Stat(goSender, uriMessage(goURIEntry()))
	if len(pts) != 1 {
		t.Fatalf("got %d uri points, want 1", len(pts))
	}
	if host, _ := pts[0].Tag("host"); host != "vm" {
		t.Errorf("uri point host = %q, want vm", host)
	}
}

// One Converter serves every stat stream: concurrent conversions over a shared store must
// not race (run with -race) and must give each caller its own points.
func TestConcurrentConversions(t *testing.T) {
	c := converterKnowing(t, map[*meta.Sender]*pb.PAgentInfo{goSender: goAgentInfo(), javaSender: javaAgentInfo()})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				pts, _ := c.Stat(javaSender, javaBatch())
				if len(pts) != 18 {
					t.Errorf("got %d points, want 6 jvm + 12 datasource", len(pts))
					return
				}
				pts[0].SetTag("extra", "x") // callers own their points
				goPts, _ := c.Stat(goSender, goBatch())
				if host, _ := goPts[0].Tag("host"); host != "vm" {
					t.Errorf("host %q", host)
					return
				}
			}
		}()
	}
	wg.Wait()
}
