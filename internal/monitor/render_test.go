package monitor

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/apmkit/apmkit/cache"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current renderer (review the diff by hand)")

// fixedAt is the client clock of the fixtures: "last seen" ages are relative to it.
var fixedAt = time.Date(2026, 11, 23, 9, 0, 3, 0, time.UTC)

func loadSnapshot(t *testing.T, name string) *Snapshot {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Decode(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	s.URL, s.At = "http://127.0.0.1:9529/v1/stats", fixedAt
	return s
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update, then review the file)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the render:\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

// TestRenderGolden renders a fixed pair of snapshots: the live view (rates between them)
// and the --once view (totals of the second). The golden files are reviewed by hand:
// backend-01 sent 200 spans in the 2 s between the snapshots (100.0/s), frontend-02 is new
// (no rate yet), the dataway output is failing and spilling.
func TestRenderGolden(t *testing.T) {
	prev, cur := loadSnapshot(t, "prev.json"), loadSnapshot(t, "cur.json")
	var live bytes.Buffer
	if err := Render(&live, cur, prev, RenderOptions{Interval: time.Second}); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "live.golden", live.Bytes())
	var once bytes.Buffer
	if err := Render(&once, cur, nil, RenderOptions{Once: true}); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "once.golden", once.Bytes())
}

// agentRow returns the fields of an agent's row in a rendered frame.
func agentRow(t *testing.T, frame, app, agentID string) []string {
	t.Helper()
	for _, line := range strings.Split(frame, "\n") {
		f := strings.Fields(line)
		if len(f) == 9 && f[0] == app && f[1] == agentID {
			return f
		}
	}
	t.Fatalf("no row for %s/%s in:\n%s", app, agentID, frame)
	return nil
}

func TestRatesNeedTheSameRunAndAGrowingCounter(t *testing.T) {
	prev, cur := loadSnapshot(t, "prev.json"), loadSnapshot(t, "cur.json")
	var b bytes.Buffer
	if err := Render(&b, cur, prev, RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	if row := agentRow(t, b.String(), "backend", "backend-01"); row[5] != "100.0" || row[6] != "5.0" || row[7] != "0.5" {
		t.Errorf("backend-01 rates %v, want 100.0 spans/s, 5.0 chunks/s, 0.5 stats/s", row)
	}
	if row := agentRow(t, b.String(), "frontend", "frontend-02"); row[5] != "-" {
		t.Errorf("a new agent run has no rate yet: %v", row)
	}

	// apmkit restarted between the snapshots: its uptime went down, every rate is unknown.
	restarted := loadSnapshot(t, "cur.json")
	restarted.UptimeSeconds = 1
	b.Reset()
	if err := Render(&b, restarted, prev, RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	if row := agentRow(t, b.String(), "backend", "backend-01"); row[5] != "-" {
		t.Errorf("rate across a restart: %v", row)
	}

	// A counter that went down (a reset) gives no rate rather than a negative one.
	if _, ok := (rates{dt: 1, ok: true}).per(5, 10, true); ok {
		t.Error("negative rate")
	}
}

func TestMaxAgentsKeepsConnectedAgents(t *testing.T) {
	cur := loadSnapshot(t, "cur.json")
	var b bytes.Buffer
	if err := Render(&b, cur, nil, RenderOptions{Once: true, MaxAgents: 2}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	agentRow(t, out, "backend", "backend-01")
	agentRow(t, out, "frontend", "frontend-02")
	if strings.Contains(out, "frontend-01") || !strings.Contains(out, "+1 more agent runs") {
		t.Errorf("the disconnected agent should be the one left out:\n%s", out)
	}
}

func TestDecodeRejectsWhatIsNotStats(t *testing.T) {
	for _, body := range []string{``, `<html>`, `{}`, `{"version":"x","inputs":[{"input":"pinpoint","stats":{"agents":7}}]}`} {
		if _, err := Decode([]byte(body)); err == nil {
			t.Errorf("Decode(%q) accepted", body)
		}
	}
}

func TestBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9529":            "http://127.0.0.1:9529",
		" http://apmkit:9529/ ":     "http://apmkit:9529",
		"https://proxy/apmkit/api/": "https://proxy/apmkit/api",
	} {
		if got := BaseURL(in); got != want {
			t.Errorf("BaseURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// statsServer serves the fixtures on 127.0.0.1 with a growing uptime, as apmkit would.
func statsServer(t *testing.T, status int) *httptest.Server {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", "cur.json"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/stats" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		w.WriteHeader(status)
		// Each call is one second later and backend-01 sent 10 more spans.
		out := strings.Replace(string(body), `"uptime_seconds": 3725.0`, fmt.Sprintf(`"uptime_seconds": %d`, 3725+n), 1)
		out = strings.Replace(out, `"messages": {"PSpan": 800,`, fmt.Sprintf(`"messages": {"PSpan": %d,`, 800+10*n), 1)
		_, _ = w.Write([]byte(out))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRunOnce(t *testing.T) {
	srv := statsServer(t, http.StatusOK)
	var out bytes.Buffer
	if err := Run(context.Background(), Options{Addr: srv.Listener.Addr().String(), Once: true, Out: &out}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "\x1b[") {
		t.Error("--once output holds terminal escape codes")
	}
	if row := agentRow(t, out.String(), "backend", "backend-01"); row[5] != "810" {
		t.Errorf("--once shows totals: %v", row)
	}
}

func TestRunOnceFailsClearly(t *testing.T) {
	srv := statsServer(t, http.StatusInternalServerError)
	err := Run(context.Background(), Options{Addr: srv.URL, Once: true, Out: &bytes.Buffer{}})
	if err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("HTTP 500: %v", err)
	}
	ln := closedPort(t)
	err = Run(context.Background(), Options{Addr: ln, Once: true, Out: &bytes.Buffer{}})
	if err == nil || !strings.Contains(err.Error(), ln) || !strings.Contains(err.Error(), "--addr") {
		t.Errorf("nothing listening: %v", err)
	}
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close()
	return addr
}

// frameWriter cancels the live view after n frames.
type frameWriter struct {
	frames []string
	n      int
	cancel context.CancelFunc
}

func (w *frameWriter) Write(p []byte) (int, error) {
	w.frames = append(w.frames, string(p))
	if len(w.frames) == w.n {
		w.cancel()
	}
	return len(p), nil
}

// TestRunLive drives the live loop for three frames: each clears the screen, the first has
// no rates, the later ones do; a cancelled context ends it without error. The interval is
// short so the test is quick; nothing depends on how long a frame took.
func TestRunLive(t *testing.T) {
	srv := statsServer(t, http.StatusOK)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &frameWriter{n: 3, cancel: cancel}
	if err := Run(ctx, Options{Addr: srv.URL, Interval: 10 * time.Millisecond, Out: w, Terminal: true}); err != nil {
		t.Fatal(err)
	}
	if len(w.frames) != 3 {
		t.Fatalf("%d frames", len(w.frames))
	}
	for i, f := range w.frames {
		if !strings.HasPrefix(f, clearScreen) {
			t.Errorf("frame %d does not clear the screen", i)
		}
	}
	// Not a terminal (a pipe, a file): plain text, frames separated by a blank line.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	plain := &frameWriter{n: 2, cancel: cancel2}
	if err := Run(ctx2, Options{Addr: srv.URL, Interval: 10 * time.Millisecond, Out: plain}); err != nil {
		t.Fatal(err)
	}
	for i, f := range plain.frames {
		if strings.ContainsRune(f, 0x1b) {
			t.Errorf("plain frame %d has escape codes: %q", i, f)
		}
	}
	if len(plain.frames) != 2 || !strings.HasPrefix(plain.frames[1], "\napmkit ") {
		t.Errorf("plain frames: %q", plain.frames)
	}
	if row := agentRow(t, w.frames[0], "backend", "backend-01"); row[5] != "-" {
		t.Errorf("first frame has a rate: %v", row)
	}
	// 10 spans per second of server uptime, whatever the client's timing.
	if row := agentRow(t, w.frames[2], "backend", "backend-01"); row[5] != "10.0" {
		t.Errorf("third frame: %v, want 10.0 spans/s", row)
	}
}

// TestRunLiveKeepsTryingWhileApmkitIsDown: the live view reports the error and goes on.
func TestRunLiveKeepsTryingWhileApmkitIsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &frameWriter{n: 2, cancel: cancel}
	addr := closedPort(t)
	if err := Run(ctx, Options{Addr: addr, Interval: 10 * time.Millisecond, Out: w}); err != nil {
		t.Fatal(err)
	}
	if len(w.frames) != 2 || !strings.Contains(w.frames[1], "waiting for apmkit at http://"+addr) {
		t.Errorf("frames: %q", w.frames)
	}
}

// TestRenderDegradedCache: a cache that is not ok shows in the header (the /v1/ping text) and
// on the IO line, with its free space, reserve and refused writes.
func TestRenderDegradedCache(t *testing.T) {
	cur := loadSnapshot(t, "cur.json")
	cur.Status = "degraded"
	cur.Degraded = []string{"cache: disk full: 3.0 MiB free on the data dir's file system, below the cache's reserve of 10.0 MiB: cache writes are refused until space returns"}
	cur.CacheState = cache.StateDiskFull
	cur.Cache = &cache.Stats{State: cache.StateDiskFull, SizeBytes: 5 << 20, FreeBytes: 3 << 20, ReserveBytes: 10 << 20,
		Refused: map[string]int64{cache.ReasonDiskFull: 7}}
	var b bytes.Buffer
	if err := Render(&b, cur, nil, RenderOptions{Once: true}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nDEGRADED  cache: disk full: 3.0 MiB free",
		"\nIO  (cache 5.0 MiB on disk, DISK FULL: 3.0 MiB free, reserve 10.0 MiB, writes refused 7 (disk_full:7))\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("frame lacks %q:\n%s", want, b.String())
		}
	}

	cur.Cache = &cache.Stats{State: cache.StateMemory, SizeBytes: 1 << 20, Refused: map[string]int64{}}
	b.Reset()
	if err := Render(&b, cur, nil, RenderOptions{Once: true}); err != nil {
		t.Fatal(err)
	}
	if want := "\nIO  (cache 1.0 MiB IN MEMORY (degraded, lost at restart))\n"; !strings.Contains(b.String(), want) {
		t.Errorf("frame lacks %q:\n%s", want, b.String())
	}

	// An ok cache reads as before.
	cur.Status, cur.Degraded = "ok", nil
	cur.Cache = &cache.Stats{State: cache.StateOK, SizeBytes: 2 << 20, Refused: map[string]int64{}}
	b.Reset()
	if err := Render(&b, cur, nil, RenderOptions{Once: true}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "DEGRADED") || !strings.Contains(b.String(), "\nIO  (cache 2.0 MiB on disk)\n") {
		t.Errorf("an ok cache:\n%s", b.String())
	}
}

// TestRenderRedisCache: a cache in Redis says so, and while Redis is down what it keeps.
func TestRenderRedisCache(t *testing.T) {
	cur := loadSnapshot(t, "cur.json")
	for state, want := range map[cache.State]string{
		cache.StateOK:              "\nIO  (cache 3.0 MiB in redis, writes refused 2 (redis_unavailable:2))\n",
		cache.StateRedisDown:       "\nIO  (cache 3.0 MiB in redis, REDIS DOWN: 12 writes (40.0 KiB) kept in memory, writes refused 2 (redis_unavailable:2))\n",
		cache.StateRedisCatchingUp: "\nIO  (cache 3.0 MiB in redis, catching up: 12 writes (40.0 KiB) kept in memory, writes refused 2 (redis_unavailable:2))\n",
	} {
		cur.Cache = &cache.Stats{Backend: "redis", State: state, SizeBytes: 3 << 20, FreeBytes: -1,
			Refused: map[string]int64{cache.ReasonCapacity: 0, cache.ReasonRedisUnavailable: 2},
			Redis:   &cache.RedisStats{FallbackChanges: 12, FallbackBytes: 40 << 10}}
		var b bytes.Buffer
		if err := Render(&b, cur, nil, RenderOptions{Once: true}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), want) {
			t.Errorf("%s: frame lacks %q:\n%s", state, want, b.String())
		}
	}
}

// TestLiveViewFits80x24: with many agents and long names, the live view stays within 80
// columns and 24 lines, and says how many agent runs it leaves out.
func TestLiveViewFits80x24(t *testing.T) {
	prev, cur := loadSnapshot(t, "prev.json"), loadSnapshot(t, "cur.json")
	st := cur.Inputs[0].Pinpoint
	base := st.Agents[0]
	for i := range 50 {
		a := base
		a.ApplicationName = strings.Repeat("long-application-name-", 3)
		a.AgentID = fmt.Sprintf("agent-with-a-long-identifier-%02d", i)
		st.Agents = append(st.Agents, a)
	}
	var b bytes.Buffer
	if err := Render(&b, cur, prev, RenderOptions{Interval: time.Second}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) > DefaultHeight {
		t.Errorf("%d lines:\n%s", len(lines), b.String())
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > DefaultWidth {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	if !strings.Contains(b.String(), "more agent runs") {
		t.Errorf("no \"+N more\" line:\n%s", b.String())
	}
}
