package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apmkit/apmkit/config"
	"github.com/apmkit/apmkit/inputs"
	"github.com/apmkit/apmkit/point"
)

// reloadInput feeds Count metric points tagged gen=Gen at its start, so a test can count
// what each agent generation fed and where it arrived.
type reloadInputConfig struct {
	Gen   string `toml:"gen" doc:"Tag gen of the points."`
	Count int    `toml:"count" doc:"Points fed at start."`
}

func (c *reloadInputConfig) Validate() error {
	if c.Count < 0 {
		return errors.New("count: must be >= 0")
	}
	return nil
}

type reloadInput struct{ cfg *reloadInputConfig }

func (in *reloadInput) Start(ctx context.Context, h inputs.Host) error {
	for i := 0; i < in.cfg.Count; i++ {
		p := point.New("reloadtest", time.Now().UnixNano()+int64(i))
		p.SetTag("gen", in.cfg.Gen)
		p.AddField(point.Int("i", int64(i)))
		if err := h.Feed(ctx, point.Metric, []*point.Point{p}); err != nil {
			return err
		}
	}
	return nil
}

func (in *reloadInput) Stop(context.Context) error { return nil }

func init() {
	inputs.Add(inputs.Plugin{
		Name:      "reloadtest",
		Doc:       "Test input of cmd/apmkit's reload tests.",
		NewConfig: func() inputs.Config { return &reloadInputConfig{} },
		New:       func(c inputs.Config) (inputs.Input, error) { return &reloadInput{cfg: c.(*reloadInputConfig)}, nil },
	})
}

// syncBuffer is a log writer tests read while apmkit writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func writeConf(t *testing.T, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func reloadMainConf(outDir, gen string) string {
	return fmt.Sprintf(`[http_api]
  listen = ""
[io]
  flush_interval = "1h"
[[io.outputs]]
  type = "file"
  dir = %q
[global_tags]
  conf = %q
`, outDir, gen)
}

// countLines counts the lines of the metric files in dir holding want.
func countLines(t *testing.T, dir, want string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "metric-*.lp"))
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, want) {
				n++
			}
		}
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool, logs *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; log:\n%s", what, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReloadKeepsDataAndRefusesInvalidConfig runs the real serve loop: a reload with an
// invalid file is logged as ERROR and changes nothing; a reload with a valid changed file
// (another output folder and tag) stops the agent gracefully, so every point fed before
// (still queued: flush_interval is 1h) reaches the old output, and starts the new config.
func TestReloadKeepsDataAndRefusesInvalidConfig(t *testing.T) {
	confDir, dataDir := t.TempDir(), t.TempDir()
	out1, out2 := filepath.Join(dataDir, "out1"), filepath.Join(dataDir, "out2")
	writeConf(t, confDir, "apmkit.conf", reloadMainConf(out1, "one"))
	writeConf(t, confDir, "r.conf", "[[inputs.reloadtest]]\ngen = \"a\"\ncount = 50\n")
	load := func() (*config.Config, error) {
		return config.Load(config.Options{ConfDir: confDir, DataDir: dataDir, Environ: []string{}})
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	sv := startServe(t, load, cfg)
	reloads, logs := sv.reloads, sv.logs
	running := func(n int) func() bool {
		return func() bool { return strings.Count(logs.String(), "apmkit is running") >= n }
	}
	waitFor(t, "the first agent", running(1), logs)

	// An invalid config: logged, the running agent goes on.
	writeConf(t, confDir, "r.conf", "[[inputs.reloadtest]]\ngen = \"b\"\ncount = -1\n")
	reloads <- struct{}{}
	waitFor(t, "the invalid reload's ERROR", func() bool {
		return strings.Contains(logs.String(), "level=ERROR") && strings.Contains(logs.String(), "invalid configuration, keeping the running one")
	}, logs)
	if !strings.Contains(logs.String(), "count: must be >= 0") || strings.Count(logs.String(), "apmkit is running") != 1 {
		t.Fatalf("invalid reload:\n%s", logs.String())
	}
	if n := countLines(t, out1, "gen=a"); n != 0 {
		t.Fatalf("%d points written before the reload: the test wants them queued", n)
	}

	// A valid changed config: the queued points reach out1, the new agent writes to out2.
	writeConf(t, confDir, "apmkit.conf", reloadMainConf(out2, "two"))
	writeConf(t, confDir, "r.conf", "[[inputs.reloadtest]]\ngen = \"c\"\ncount = 7\n")
	reloads <- struct{}{}
	waitFor(t, "the second agent", running(2), logs)
	if n := countLines(t, out1, "gen=a"); n != 50 {
		t.Fatalf("out1 has %d of the 50 points fed before the reload; log:\n%s", n, logs.String())
	}
	if n := countLines(t, out1, "conf=one"); n != 50 {
		t.Fatalf("out1: %d points tagged conf=one", n)
	}
	sv.stop()
	if n := countLines(t, out2, "gen=c"); n != 7 || countLines(t, out2, "conf=two") != 7 {
		t.Fatalf("out2 has %d of the 7 points of the new config; log:\n%s", n, logs.String())
	}
	if countLines(t, out2, "gen=a") != 0 || countLines(t, out1, "gen=c") != 0 {
		t.Fatal("points went to the wrong generation's output")
	}
}

// A reload whose config is valid but fails to start (here: its data dir cannot be made)
// starts the previous config again.
func TestReloadFailedStartKeepsPrevious(t *testing.T) {
	confDir, dataDir := t.TempDir(), t.TempDir()
	writeConf(t, confDir, "apmkit.conf", reloadMainConf(filepath.Join(dataDir, "out"), "one"))
	writeConf(t, confDir, "r.conf", "[[inputs.reloadtest]]\ngen = \"a\"\ncount = 3\n")
	blocker := filepath.Join(dataDir, "file")
	writeConf(t, dataDir, "file", "x")
	bad := false
	load := func() (*config.Config, error) {
		dd := dataDir
		if bad {
			dd = filepath.Join(blocker, "sub") // MkdirAll fails: a file is in the way
		}
		return config.Load(config.Options{ConfDir: confDir, DataDir: dd, Environ: []string{}})
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	sv := startServe(t, load, cfg)
	reloads, logs := sv.reloads, sv.logs
	waitFor(t, "the first agent", func() bool { return strings.Count(logs.String(), "apmkit is running") == 1 }, logs)
	bad = true
	reloads <- struct{}{}
	waitFor(t, "the previous config again", func() bool { return strings.Count(logs.String(), "apmkit is running") == 2 }, logs)
	if !strings.Contains(logs.String(), "failed to start; starting the previous one again") {
		t.Fatalf("log:\n%s", logs.String())
	}
	sv.stop()
}

// served is serve running in the test's goroutine: reloads, its log, stop.
type served struct {
	t       *testing.T
	reloads chan struct{}
	logs    *syncBuffer
	cancel  context.CancelFunc
	done    chan error
}

func startServe(t *testing.T, load func() (*config.Config, error), cfg *config.Config) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sv := &served{t: t, reloads: make(chan struct{}), logs: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { sv.done <- serve(ctx, sv.reloads, load, cfg, sv.logs) }()
	t.Cleanup(cancel)
	return sv
}

// stop ends serve as SIGTERM does and fails the test on an error.
func (sv *served) stop() {
	sv.t.Helper()
	sv.cancel()
	if err := <-sv.done; err != nil {
		sv.t.Fatalf("serve: %v\n%s", err, sv.logs.String())
	}
}
