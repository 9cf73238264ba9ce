package pipeline

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/apmkit/apmkit/point"
)

// span builds a tracing point as the Pinpoint input writes it.
func span(traceID, service, spanType, resource, status string, durationMs int64) *point.Point {
	p := point.New("pinpoint", 1795417119963000000)
	p.SetTag("service", service)
	p.SetTag("span_type", spanType)
	p.SetTag("status", status)
	p.AddField(point.String("trace_id", traceID))
	p.AddField(point.String("resource", resource))
	p.AddField(point.Int("duration", durationMs*1000))
	p.AddField(point.String("message", `{"spanId":"1"}`))
	return p
}

// pinpointSpan is an entry span with two events of one Pinpoint span.
func pinpointSpan(traceID, service, resource, status string, durationMs int64) []*point.Point {
	return []*point.Point{
		span(traceID, service, "entry", resource, status, durationMs),
		span(traceID, service, "local", "handler", "ok", durationMs-1),
		span(traceID, service, "exit", "SELECT 1", "ok", 1),
	}
}

// chunk is a later chunk of a Pinpoint span: events only.
func chunk(traceID, service string) []*point.Point {
	return []*point.Point{span(traceID, service, "local", "Goroutine Invocation", "ok", 2)}
}

func mustNew(t *testing.T, cfg Config, opts Options) *Pipeline {
	t.Helper()
	p, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func rate(r float64) *float64 { return &r }

func traceID(i int) string { return fmt.Sprintf("frontend-01^1795417119878^%d", i) }

func TestSamplingRateKeepsTheRateOfTraces(t *testing.T) {
	p := mustNew(t, Config{SamplingRate: rate(0.3)}, Options{})
	const n = 100_000
	kept := 0
	for i := 0; i < n; i++ {
		if len(p.Process(point.Tracing, pinpointSpan(traceID(i), "frontend", "/ok", "ok", 5))) > 0 {
			kept++
		}
	}
	if got := float64(kept) / n; math.Abs(got-0.3) > 0.01 {
		t.Fatalf("kept %.4f of traces, want 0.30 +- 0.01", got)
	}
}

// TestTraceConsistency: every part of a trace (entry, events, chunks arriving later, spans
// of other services) gets the same decision, and so does a second pipeline (a replica).
func TestTraceConsistency(t *testing.T) {
	a := mustNew(t, Config{SamplingRate: rate(0.5)}, Options{})
	b := mustNew(t, Config{SamplingRate: rate(0.5)}, Options{})
	keptTraces := 0
	for i := 0; i < 2000; i++ {
		id := traceID(i)
		parts := [][]*point.Point{
			pinpointSpan(id, "frontend", "/ok", "ok", 9),
			pinpointSpan(id, "backend", "/api/users", "ok", 5),
			chunk(id, "frontend"),
		}
		var decisions []int
		for _, part := range parts {
			decisions = append(decisions, len(a.Process(point.Tracing, part)))
		}
		for _, part := range parts { // the replica sees the same trace in another order
			decisions = append(decisions, len(b.Process(point.Tracing, part)))
		}
		all := decisions[0] > 0
		for j, d := range decisions {
			if (d > 0) != all || (d > 0 && d != len(parts[j%3])) {
				t.Fatalf("trace %s split: %v", id, decisions)
			}
		}
		if all {
			keptTraces++
		}
	}
	if keptTraces == 0 || keptTraces == 2000 {
		t.Fatalf("kept %d of 2000: the sampler does not sample", keptTraces)
	}
}

func TestErrorSpansAreAlwaysKept(t *testing.T) {
	p := mustNew(t, Config{SamplingRate: rate(0)}, Options{})
	if got := p.Process(point.Tracing, pinpointSpan(traceID(1), "frontend", "/ok", "ok", 5)); len(got) != 0 {
		t.Fatal("rate 0 kept an ok trace")
	}
	if got := p.Process(point.Tracing, pinpointSpan(traceID(2), "frontend", "/error", "error", 5)); len(got) != 3 {
		t.Fatalf("error span not kept: %d points", len(got))
	}
	// A later chunk of the error span follows it.
	if got := p.Process(point.Tracing, chunk(traceID(2), "frontend")); len(got) != 1 {
		t.Fatal("chunk of an error span dropped")
	}
}

func TestCloseResource(t *testing.T) {
	p := mustNew(t, Config{CloseResource: map[string][]string{
		"frontend": {"^/static/"},
		"*":        {"^/health$"},
	}}, Options{})
	cases := []struct {
		service, resource string
		kept              bool
	}{
		{"frontend", "/static/app.js", false},
		{"backend", "/static/app.js", true}, // the rule names frontend only
		{"frontend", "/health", false},
		{"backend", "/health", false}, // "*"
		{"backend", "/healthz", true},
		{"frontend", "/ok", true},
	}
	for i, c := range cases {
		id := traceID(i)
		got := p.Process(point.Tracing, pinpointSpan(id, c.service, c.resource, "ok", 5))
		if (len(got) == 3) != c.kept || (len(got) != 0 && len(got) != 3) {
			t.Errorf("%s %s: %d points, want kept=%v", c.service, c.resource, len(got), c.kept)
		}
		later := p.Process(point.Tracing, chunk(id, c.service))
		if (len(later) == 1) != c.kept {
			t.Errorf("%s %s: a later chunk got another decision", c.service, c.resource)
		}
	}
	if _, err := New(Config{CloseResource: map[string][]string{"svc": {"(["}}}, Options{}); err == nil || !strings.Contains(err.Error(), `"(["`) {
		t.Fatalf("invalid regexp: %v", err)
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestKeepRareResource(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)}
	reg := prometheus.NewRegistry()
	p := mustNew(t, Config{SamplingRate: rate(0), KeepRareResource: true}, Options{Now: clock.Now, Metrics: reg})
	if got := p.Process(point.Tracing, pinpointSpan(traceID(1), "frontend", "/rare", "ok", 5)); len(got) != 3 {
		t.Fatal("first sight of a resource not kept")
	}
	if got := p.Process(point.Tracing, chunk(traceID(1), "frontend")); len(got) != 1 {
		t.Fatal("chunk of a rare-kept span dropped")
	}
	clock.Add(30 * time.Minute)
	if got := p.Process(point.Tracing, pinpointSpan(traceID(2), "frontend", "/rare", "ok", 5)); len(got) != 0 {
		t.Fatal("a resource seen 30 minutes ago counted as rare")
	}
	if got := p.Process(point.Tracing, pinpointSpan(traceID(3), "backend", "/rare", "ok", 5)); len(got) != 3 {
		t.Fatal("same resource of another service not rare")
	}
	clock.Add(RareWindow) // not seen for a whole window
	if got := p.Process(point.Tracing, pinpointSpan(traceID(4), "frontend", "/rare", "ok", 5)); len(got) != 3 {
		t.Fatal("resource not forgotten after the window")
	}
	if got := testutil.ToFloat64(p.metrics.rareEntries); got != 2 {
		t.Fatalf("rare resources gauge %v, want 2", got)
	}
}

func TestDelMessage(t *testing.T) {
	p := mustNew(t, Config{DelMessage: true}, Options{})
	pts := append(pinpointSpan(traceID(1), "frontend", "/ok", "ok", 5), chunk(traceID(2), "frontend")...)
	for _, pt := range p.Process(point.Tracing, pts) {
		if _, has := pt.Field("message"); has {
			t.Fatalf("message kept on %v", pt.Tags)
		}
	}
	keep := mustNew(t, Config{}, Options{})
	for _, pt := range keep.Process(point.Tracing, pinpointSpan(traceID(1), "frontend", "/ok", "ok", 5)) {
		if _, has := pt.Field("message"); !has {
			t.Fatal("message removed without del_message")
		}
	}
}

func TestTagsReachSpansAndMetricsAndNeverOverrideOwnTags(t *testing.T) {
	p := mustNew(t, Config{
		GlobalTags: map[string]string{"env": "global", "region": "eu"},
		Tags:       map[string]string{"env": "input", "team": "a", "service": "input-svc"},
	}, Options{})
	metric := point.New("pinpoint_jvm", 1)
	metric.SetTag("service", "frontend")
	metric.AddField(point.Int("TotalThreadCount", 10))
	spans := pinpointSpan(traceID(1), "frontend", "/ok", "ok", 5)
	p.Process(point.Metric, []*point.Point{metric})
	p.Process(point.Tracing, spans)
	want := map[string]string{"env": "input", "region": "eu", "team": "a", "service": "frontend"}
	for _, pt := range append(spans, metric) {
		for k, v := range want {
			if got, _ := pt.Tag(k); got != v {
				t.Errorf("%s: tag %s = %q, want %q", pt.Name, k, got, v)
			}
		}
	}
}

type fakeCPU struct {
	mu      sync.Mutex
	percent float64
}

func (c *fakeCPU) Percent() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.percent
}

func (c *fakeCPU) set(p float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.percent = p
}

// keptOf sends n traces of one URL and returns how many were kept.
func keptOf(p *Pipeline, start, n int, service, url, status string, durationMs int64) int {
	kept := 0
	for i := start; i < start+n; i++ {
		if len(p.Process(point.Tracing, pinpointSpan(traceID(i), service, url, status, durationMs))) > 0 {
			kept++
		}
	}
	return kept
}

func TestSmartSamplerQuotas(t *testing.T) {
	for _, tc := range []struct {
		cpu                  float64
		errorQ, slowQ, normQ int
	}{
		{10, 100, 100, 20},
		{45, 50, 50, 10},
		{80, 10, 10, 5},
	} {
		t.Run(fmt.Sprintf("cpu %v%%", tc.cpu), func(t *testing.T) {
			clock := &fakeClock{now: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)}
			cpu := &fakeCPU{}
			p := mustNew(t, Config{SmartSampler: SmartSamplerConfig{Enabled: true, SlowThreshold: 800 * time.Millisecond}},
				Options{Now: clock.Now, CPU: cpu})
			// Minute 1: everything is normal; its statistics class the URLs of minute 2.
			id := 0
			first := 0
			for _, u := range []struct {
				url, status string
				ms          int64
			}{{"/error", "error", 5}, {"/boom", "error", 5}, {"/slow", "ok", 900}, {"/lazy", "ok", 2000}} {
				first += keptOf(p, id, 1, "frontend", u.url, u.status, u.ms)
				id++
			}
			if first != 4 {
				t.Fatalf("minute 1 kept %d of 4", first)
			}
			cpu.set(tc.cpu)
			clock.Add(time.Minute)
			// Minute 2: /error and /boom are error URLs, /slow and /lazy slow, the rest normal.
			send := func(n int, url, status string, ms int64) int {
				k := keptOf(p, id, n, "frontend", url, status, ms)
				id += n
				return k
			}
			gotErr, gotSlow, gotNorm := send(500, "/error", "error", 5), send(500, "/slow", "ok", 5), send(500, "/ok", "ok", 5)
			if gotErr != tc.errorQ || gotSlow != tc.slowQ || gotNorm != tc.normQ {
				t.Fatalf("kept error %d slow %d normal %d, want %d %d %d", gotErr, gotSlow, gotNorm, tc.errorQ, tc.slowQ, tc.normQ)
			}
			// The quotas are used up; each URL still gets its minimum: 2 per error or slow
			// URL, 1 per normal URL.
			if got := send(10, "/boom", "error", 5); got != 2 {
				t.Errorf("error URL got %d traces after its class quota ran out, want 2", got)
			}
			if got := send(10, "/lazy", "ok", 5); got != 2 {
				t.Errorf("slow URL got %d traces after its class quota ran out, want 2", got)
			}
			if got := send(10, "/other", "ok", 5); got != 1 {
				t.Errorf("normal URL got %d traces after its class quota ran out, want 1", got)
			}
		})
	}
}

func TestSmartSamplerDecisionFollowsTheTrace(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)}
	p := mustNew(t, Config{SmartSampler: SmartSamplerConfig{Enabled: true, SlowThreshold: time.Second}}, Options{Now: clock.Now, CPU: &fakeCPU{percent: 90}})
	for i := 0; i < 50; i++ {
		id := traceID(i)
		entry := len(p.Process(point.Tracing, pinpointSpan(id, "frontend", "/ok", "ok", 5))) > 0
		later := len(p.Process(point.Tracing, pinpointSpan(id, "backend", "/api", "ok", 5))) > 0
		ch := len(p.Process(point.Tracing, chunk(id, "frontend"))) > 0
		if entry != later || entry != ch {
			t.Fatalf("trace %s split: entry %v later %v chunk %v", id, entry, later, ch)
		}
	}
}

func TestDecisionMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := mustNew(t, Config{CloseResource: map[string][]string{"*": {"^/health$"}}}, Options{Metrics: reg})
	p.Process(point.Tracing, pinpointSpan(traceID(1), "a", "/health", "ok", 1))
	p.Process(point.Tracing, pinpointSpan(traceID(2), "a", "/ok", "ok", 1))
	if got := testutil.ToFloat64(p.metrics.points.WithLabelValues("dropped", reasonCloseResource)); got != 3 {
		t.Fatalf("dropped by close_resource %v", got)
	}
	if st := p.Stats(); st.Kept != 3 || st.Dropped != 3 {
		t.Fatalf("stats %+v", st)
	}
}
