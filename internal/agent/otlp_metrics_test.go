package agent

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/apmkit/apmkit/internal/otlptest"
)

// TestRecordingsMetricsOverOTLP replays each recording into apmkit with an otlp output of
// metrics only: every stat sample, URI stat and agent start arrives as the manifest counts
// them.
func TestRecordingsMetricsOverOTLP(t *testing.T) {
	for _, rec := range recordings(t) {
		t.Run(rec.Name, func(t *testing.T) {
			r := &otlptest.Receiver{}
			addr := r.StartGRPC(t, otlptest.GRPCOptions{})
			a, in := startAgentMain(t, t.TempDir(), testMain+fmt.Sprintf(`[[io.outputs]]
type = "otlp"
endpoint = "http://%s"
categories = ["metric"]
`, addr), "")
			replayInto(t, in, rec)
			stopAgent(t, a)

			m, got := rec.Manifest, r.Received()
			gotFacts := fmt.Sprint(got.Points["jvm.memory.used"], got.Points["pinpoint.agent.start_time"], got.Requests, got.FailedRequests, got.Services)
			// Each sample has heap and non-heap memory; two agents, each started once.
			want := fmt.Sprint(2*m.Int("messages.PAgentStat_entries_in_batches"), m.Int("messages.top_level_by_type.PAgentInfo"),
				m.Int("messages.PEachUriStat_total_count"), m.Int("messages.PEachUriStat_failed_count"),
				slices.Sorted(maps.Keys(m.Ints("traces.spans_by_application"))))
			if gotFacts != want {
				t.Fatalf("received (memory points, agent starts, URI requests, failed ones, services) %s, want %s", gotFacts, want)
			}
		})
	}
}
