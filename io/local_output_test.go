package io

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/tracestore"
)

// rootSpan is a span row of the Pinpoint input's schema: a root entry span.
func rootSpan(trace string, startMs int64) *point.Point {
	p := point.New("pinpoint", startMs*1e6)
	p.SetTag("service", "shop")
	p.SetTag("agent_id", "shop-1")
	p.SetTag("span_type", "entry")
	p.SetTag("status", "ok")
	p.AddField(point.String("trace_id", trace))
	p.AddField(point.String("span_id", "7"))
	p.AddField(point.String("parent_id", "0"))
	p.AddField(point.String("resource", "/cart"))
	p.AddField(point.Int("start", startMs*1000))
	p.AddField(point.Int("duration", 12_000))
	return p
}

// TestExplorerAddsTheLocalOutput: with explorer on (the default) apmkit writes to the
// local trace store beside the outputs the user configured, and beside the implicit file
// output when none is; what it is fed is stored and found.
func TestExplorerAddsTheLocalOutput(t *testing.T) {
	dataDir := t.TempDir()
	cfg := testConfig()
	cfg.Explorer = true
	u := startUploader(t, cfg, dataDir)
	want := []string{"file: " + filepath.Join(dataDir, "out"), "local: " + filepath.Join(dataDir, "explorer")}
	if got := u.Outputs(); !slices.Equal(got, want) {
		t.Fatalf("Outputs() = %v, want %v", got, want)
	}
	feed(t, u, point.Tracing, []*point.Point{rootSpan("shop-1^1^1", 1_800_000_000_000)})
	waitFor(t, "the span in the local output", func() bool { return outputStats(u, "local").PointsSent == 1 })
	got, total, err := u.TraceStore().Transactions(tracestore.Query{ToUs: 1 << 62, MaxUs: -1, Limit: 10})
	if err != nil || total != 1 || got[0].TraceID != "shop-1^1^1" || got[0].URL != "/cart" {
		t.Fatalf("stored transactions: %+v (total %d, err %v)", got, total, err)
	}
	stopUploader(t, u)

	cfg.Outputs = []OutputConfig{fastRetries(OutputConfig{Type: TypeFile, Dir: t.TempDir()})}
	u = startUploader(t, cfg, dataDir)
	if got := u.Outputs(); len(got) != 2 || !strings.HasPrefix(got[1], "local: ") {
		t.Errorf("with a configured output: %v, want it and the local output", got)
	}
}

func TestExplorerOffHasNoLocalOutput(t *testing.T) {
	u := startUploader(t, testConfig(), t.TempDir())
	if got := u.Outputs(); len(got) != 1 || u.TraceStore() != nil {
		t.Errorf("explorer = false: outputs %v, store %v", got, u.TraceStore())
	}
}

// TestConfiguredLocalOutputReplacesTheImplicitOne: one store, the user's settings.
func TestConfiguredLocalOutputReplacesTheImplicitOne(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "traces")
	cfg := testConfig(OutputConfig{Type: TypeLocal, Dir: dir, Retention: time.Hour, MaxMB: 5})
	cfg.Explorer = true
	u := startUploader(t, cfg, t.TempDir())
	if got := u.Outputs(); len(got) != 1 || got[0] != "local: "+dir {
		t.Errorf("Outputs() = %v", got)
	}
	if st := u.TraceStore().Stats(); st.MaxBytes != 5<<20 || st.Dir != dir {
		t.Errorf("store %+v", st)
	}
}

func TestLocalOutputValidation(t *testing.T) {
	cfg := Config{Outputs: []OutputConfig{{Type: TypeLocal}, {Type: TypeLocal, Name: "second"}, {Type: TypeLocal, Name: "third", MaxMB: -1}}}
	err := cfg.Validate()
	for _, want := range []string{
		"io.outputs[1] (second): type local: io.outputs[0] is local already",
		"io.outputs[2] (third): max_mb: must be > 0",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if cfg.Outputs[0].Retention != 72*time.Hour || cfg.Outputs[0].MaxMB != 1024 || cfg.Outputs[0].inFlight() != 1 {
		t.Errorf("local defaults: %+v", cfg.Outputs[0])
	}
}
