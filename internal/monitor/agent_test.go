package monitor

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	_ "github.com/apmkit/apmkit/inputs/all"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/internal/agent/agenttest"
)

// startAgent runs a real apmkit in-process: the Pinpoint input on three loopback ports and
// the HTTP API, configured through the environment as a container would be.
func startAgent(t *testing.T) (api string) {
	t.Helper()
	return agenttest.Start(t,
		"ENV_INPUT_PINPOINT_STAT_ADDRESS=127.0.0.1:0",
		"ENV_INPUT_PINPOINT_SPAN_ADDRESS=127.0.0.1:0",
		"ENV_HOSTNAME=monitor-test",
	).APIAddr()
}

func fetch(t *testing.T, client *http.Client, api string) *Snapshot {
	t.Helper()
	s, err := Fetch(context.Background(), client, api)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func render(t *testing.T, cur, prev *Snapshot, once bool) string {
	t.Helper()
	var b bytes.Buffer
	if err := Render(&b, cur, prev, RenderOptions{Once: once}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestMonitorShowsReplayedAgents replays a real Go agent recording into a running apmkit in
// two parts, metadata and stats first, then the spans, and reads the monitor's view after
// each: the agents appear with the manifest's numbers, and between the two snapshots only
// the span rate moves.
func TestMonitorShowsReplayedAgents(t *testing.T) {
	dir, err := replay.FixturesDir()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := replay.Load(filepath.Join(dir, "go-agent-stream-100.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	api := startAgent(t)
	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()

	before := fetch(t, client, api)
	if len(before.Inputs) != 1 || before.Inputs[0].Pinpoint == nil {
		t.Fatalf("inputs: %+v", before.Inputs)
	}
	listeners := before.Inputs[0].Pinpoint.Listeners
	if len(listeners) != 3 {
		t.Fatalf("listeners %v", listeners)
	}
	// The recording used one port for everything; any of the three serves every service.
	targets := replay.Targets{Agent: listeners[0], Stat: listeners[1], Span: listeners[2]}
	replayPart(t, rec.Only(
		"/v1.Agent/RequestAgentInfo", "/v1.Agent/PingSession",
		"/v1.Metadata/RequestApiMetaData", "/v1.Metadata/RequestSqlMetaData", "/v1.Metadata/RequestSqlUidMetaData",
		"/v1.Metadata/RequestStringMetaData", "/v1.Metadata/RequestExceptionMetaData",
		"/v1.Stat/SendAgentStat", "/v1.ProfilerCommandService/HandleCommandV2",
	), targets)
	first := fetch(t, client, api)
	replayPart(t, rec.Only("/v1.Span/SendSpan", "/v1.Span/SendSpanBatch"), targets)
	second := fetch(t, client, api)

	spans := rec.Manifest.Ints("traces.spans_by_agentid")
	agents, _ := rec.Manifest.Get("agents")
	once := render(t, second, nil, true)
	live := render(t, second, first, false)
	for _, a := range agents.([]any) {
		m := a.(map[string]any)
		id, app := m["agentid"].(string), m["applicationname"].(string)

		row := agentRow(t, render(t, first, nil, true), app, id)
		if row[5] != "0" || row[7] == "0" {
			t.Errorf("%s after metadata and stats: %v, want 0 spans and some stats", id, row)
		}
		row = agentRow(t, once, app, id)
		if row[5] != strconv.FormatInt(spans[id], 10) {
			t.Errorf("%s: %v, want %d spans (manifest)", id, row, spans[id])
		}
		row = agentRow(t, live, app, id)
		rate, err := strconv.ParseFloat(row[5], 64)
		if err != nil || rate <= 0 || row[7] != "0.0" {
			t.Errorf("%s rates %v: want spans/s > 0 and stats/s 0.0", id, row)
		}
	}
	metric := second.IO.Categories[0]
	if metric.Category != "metric" || metric.PointsIn == 0 {
		t.Errorf("the stats became no metric points: %+v", metric)
	}
	if len(second.IO.Outputs) != 2 || second.IO.Outputs[0].Type != "file" || second.IO.Outputs[1].Type != "local" {
		t.Errorf("outputs: %+v", second.IO.Outputs)
	}
	if testing.Verbose() {
		t.Logf("live view:\n%s", live)
	}
}

func replayPart(t *testing.T, rec *replay.Recording, targets replay.Targets) {
	t.Helper()
	if len(rec.Events) == 0 {
		t.Fatal("nothing to replay: the recording's method names changed?")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := rec.Replay(ctx, targets)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed) > 0 {
		t.Fatalf("%d calls failed, first: %s", len(res.Failed), res.Failed[0])
	}
}
