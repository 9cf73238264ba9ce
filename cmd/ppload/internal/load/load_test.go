package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apmkit/apmkit/cmd/ppload/internal/gen"
	"github.com/apmkit/apmkit/inputs/inputstest"
	"github.com/apmkit/apmkit/inputs/pinpoint"
	"github.com/apmkit/apmkit/point"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startInput runs apmkit's Pinpoint input on three loopback ports.
func startInput(t *testing.T) *pinpoint.Input {
	t.Helper()
	cfg := pinpoint.DefaultConfig()
	cfg.Address, cfg.StatAddress, cfg.SpanAddress = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	in := pinpoint.New(cfg)
	if err := in.Start(context.Background(), inputstest.New(t, "")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := in.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return in
}

// TestCollectorCountsWhatPploadSent runs a few hundred spans of every shape against a real
// apmkit Pinpoint input and checks its counters equal what ppload reports, in total and
// per agent, for both transports and both port layouts.
func TestCollectorCountsWhatPploadSent(t *testing.T) {
	for _, tc := range []struct {
		transport  string
		threePorts bool
	}{{TransportBatch, true}, {TransportStream, false}} {
		t.Run(tc.transport, func(t *testing.T) {
			in := startInput(t)
			cfg := testConfig(in.Addrs(), tc.threePorts)
			cfg.Transport = tc.transport
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			sum, err := Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkSummary(t, sum, cfg)
			checkCounters(t, in.Stats().(pinpoint.Stats), sum)
		})
	}
}

// TestStatsFeedEveryMetricMeasurement: by default ppload's stats make apmkit write
// pinpoint_jvm (6 samples a batch), pinpoint_datasource (two pools of one URL, two series by
// pool_id) and pinpoint_uri (two URIs), so a first run without a real agent shows them all.
func TestStatsFeedEveryMetricMeasurement(t *testing.T) {
	host := inputstest.New(t, "")
	cfg := pinpoint.DefaultConfig()
	cfg.Address, cfg.StatAddress, cfg.SpanAddress = "127.0.0.1:0", "", ""
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	in := pinpoint.New(cfg)
	if err := in.Start(context.Background(), host); err != nil {
		t.Fatal(err)
	}
	run := Defaults()
	run.AgentAddr, run.Agents, run.Duration, run.MaxSpans = in.Addrs()[0], 2, 0, 20
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Run(ctx, run); err != nil {
		t.Fatal(err)
	}
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer stopCancel()
	if err := in.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	pools := map[string]bool{}
	for _, p := range host.Points(point.Metric) {
		count[p.Name]++
		if p.Name == "pinpoint_datasource" {
			id, _ := p.Tag("pool_id")
			pools[id] = true
		}
	}
	// Per agent: one stat batch of 6 samples with 2 pools each, one URI stat of 2 URIs.
	want := map[string]int{"pinpoint_jvm": 2 * 6, "pinpoint_datasource": 2 * 6 * 2, "pinpoint_uri": 2 * 2}
	for m, n := range want {
		if count[m] != n {
			t.Errorf("%s: %d points, want %d (all: %v)", m, count[m], n, count)
		}
	}
	if !pools["1"] || !pools["2"] || len(pools) != 2 {
		t.Errorf("pool ids %v, want 1 and 2", pools)
	}
}

func testConfig(addrs []string, threePorts bool) Config {
	cfg := Defaults()
	cfg.AgentAddr = addrs[0]
	if threePorts {
		cfg.StatAddr, cfg.SpanAddr = addrs[1], addrs[2]
	}
	cfg.Agents = 5 // an odd count: the last Web agent has no callee
	cfg.Gen = gen.Options{Events: 25, ChunkFrac: 0.5, AsyncFrac: 0.3, ErrorFrac: 0.2, LinkedFrac: 0.5}
	cfg.Duration, cfg.MaxSpans = 0, 300
	cfg.Stats = true
	cfg.Seed = 42
	return cfg
}

// checkSummary checks the run sent every shape it was asked to, without errors.
func checkSummary(t *testing.T, sum *Summary, cfg Config) {
	t.Helper()
	if len(sum.Errors) > 0 || sum.LostSpans > 0 || sum.Rejected > 0 {
		t.Errorf("errors %v, lost %d, rejected %d", sum.Errors, sum.LostSpans, sum.Rejected)
	}
	if sum.Spans < cfg.MaxSpans || sum.Spans > cfg.MaxSpans+2*int64(cfg.Agents) {
		t.Errorf("%d spans sent, want %d plus at most 2 per agent", sum.Spans, cfg.MaxSpans)
	}
	syncChunks := sum.Chunks - sum.AsyncChunks
	if sum.ChildSpans == 0 || sum.ErrorSpans == 0 || sum.AsyncChunks == 0 || syncChunks == 0 {
		t.Errorf("a shape is missing: %d child spans, %d error spans, %d async chunks, %d sync chunks",
			sum.ChildSpans, sum.ErrorSpans, sum.AsyncChunks, syncChunks)
	}
	if want := sum.Spans*int64(cfg.Gen.Events) + 2*sum.AsyncChunks; sum.Events != want {
		t.Errorf("%d events, want %d (%d per span + 2 per async chunk)", sum.Events, want, cfg.Gen.Events)
	}
}

// checkCounters compares the input's message counters with ppload's, total and per agent.
func checkCounters(t *testing.T, st pinpoint.Stats, sum *Summary) {
	t.Helper()
	if fmt.Sprint(st.Messages) != fmt.Sprint(sum.Messages) {
		t.Errorf("collector counted %v\nppload sent       %v", st.Messages, sum.Messages)
	}
	if len(st.Rejected) > 0 {
		t.Errorf("collector rejected %v", st.Rejected)
	}
	got := map[string][2]int64{}
	for _, a := range st.Agents {
		got[a.AgentID] = [2]int64{a.Messages["PSpan"], a.Messages["PSpanChunk"]}
	}
	for _, a := range sum.PerAgent {
		if want := [2]int64{a.Sent.Spans, a.Sent.Chunks}; got[a.ID] != want {
			t.Errorf("agent %s: collector counted [spans chunks] %v, ppload sent %v", a.ID, got[a.ID], want)
		}
	}
	if len(st.Agents) != sum.Agents {
		t.Errorf("collector saw %d agents, ppload ran %d", len(st.Agents), sum.Agents)
	}
}

func TestRunFailsWithoutCollector(t *testing.T) {
	in := startInput(t)
	addr := in.Addrs()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer stopCancel()
	if err := in.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig([]string{addr}, false)
	cfg.Agents = 1
	if _, err := Run(ctx, cfg); err == nil {
		t.Fatal("Run succeeded with no collector listening")
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []func(*Config){
		func(c *Config) { c.AgentAddr = "" },
		func(c *Config) { c.Agents = 0 },
		func(c *Config) { c.Duration, c.MaxSpans = 0, 0 },
		func(c *Config) { c.Transport = "udp" },
		func(c *Config) { c.BatchSize = 0 },
		func(c *Config) { c.RunID = "has space" },
		func(c *Config) { c.RunID = "toolong123" },
		func(c *Config) { c.Gen.Events = 2 },
		func(c *Config) { c.Rate = -1 },
	}
	for i, mutate := range bad {
		c := Defaults()
		mutate(&c)
		if c.Validate() == nil {
			t.Errorf("case %d: no error", i)
		}
	}
	c := Defaults()
	if err := c.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// TestSummaryJSON pins the keys the bench harness reads.
func TestSummaryJSON(t *testing.T) {
	s := &Summary{Tally: gen.Tally{Spans: 10, Events: 120}, Errors: map[string]int64{"Unavailable": 1}, FirstErrors: map[string]string{}, Messages: map[string]int64{}}
	s.finish(2)
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"spans", "events", "chunks", "async_chunks", "error_spans", "batches", "errors", "duration_s", "spans_per_s", "events_per_s", "transactions", "messages"} {
		if _, ok := m[k]; !ok {
			t.Errorf("summary JSON lacks %q: %s", k, b)
		}
	}
	if m["spans_per_s"] != 5.0 || m["events_per_s"] != 60.0 {
		t.Errorf("rates %v, %v; want 5 and 60", m["spans_per_s"], m["events_per_s"])
	}
}

func TestRecordFailCodes(t *testing.T) {
	r := newRecord()
	r.fail(status.Error(codes.ResourceExhausted, "full"), 20)
	r.fail(io.EOF, 1)
	r.fail(errors.New("plain"), 0)
	want := map[string]int64{"ResourceExhausted": 1, "Unavailable": 1, "Unknown": 1}
	if fmt.Sprint(r.errors) != fmt.Sprint(want) || r.lostSpans != 21 {
		t.Errorf("errors %v lost %d, want %v and 21", r.errors, r.lostSpans, want)
	}
}

func TestLimits(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &limits{deadline: now}
	if !l.done(now) || l.done(now.Add(-time.Nanosecond)) {
		t.Error("deadline: done must turn true exactly at the deadline")
	}
	l = &limits{maxSpans: 3}
	l.produced.Store(2)
	if l.done(now) {
		t.Error("2 of 3 spans: not done")
	}
	l.produced.Store(3)
	if !l.done(now) {
		t.Error("3 of 3 spans: done")
	}
}
