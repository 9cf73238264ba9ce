package agent

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
)

// metricsReceiver is an OTLP/gRPC metrics service on 127.0.0.1 that tallies what it gets
// (Jaeger stores no metrics): data points by metric name (and, for the URI histogram,
// whether they are the failed requests), requests by service.name.
type metricsReceiver struct {
	colmetricspb.UnimplementedMetricsServiceServer

	mu       sync.Mutex
	points   map[string]int64
	requests map[string]int64 // histogram: requests counted, by "all" and "failed"
	services map[string]bool
}

func (r *metricsReceiver) Export(_ context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rm := range req.ResourceMetrics {
		for _, kv := range rm.Resource.Attributes {
			if kv.Key == "service.name" {
				r.services[kv.Value.GetStringValue()] = true
			}
		}
		for _, m := range rm.ScopeMetrics[0].Metrics {
			r.points[m.Name] += int64(len(m.GetGauge().GetDataPoints()) + len(m.GetSum().GetDataPoints()) + len(m.GetHistogram().GetDataPoints()))
			for _, dp := range m.GetHistogram().GetDataPoints() {
				r.requests["all"] += int64(dp.Count)
				for _, kv := range dp.Attributes {
					if kv.Key == "error.type" {
						r.requests["failed"] += int64(dp.Count)
					}
				}
			}
		}
	}
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

func startMetricsReceiver(t *testing.T) (*metricsReceiver, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &metricsReceiver{points: map[string]int64{}, requests: map[string]int64{}, services: map[string]bool{}}
	srv := grpc.NewServer()
	colmetricspb.RegisterMetricsServiceServer(srv, r)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return r, l.Addr().String()
}

// TestRecordingsMetricsOverOTLP replays each recording into apmkit with an otlp output of
// metrics only: every stat sample, URI stat and agent start arrives as the manifest counts
// them.
func TestRecordingsMetricsOverOTLP(t *testing.T) {
	for _, rec := range recordings(t) {
		t.Run(rec.Name, func(t *testing.T) {
			r, addr := startMetricsReceiver(t)
			a, in := startAgentMain(t, t.TempDir(), fmt.Sprintf(`[http_api]
listen = "127.0.0.1:0"
[io]
flush_interval = "100ms"
[[io.outputs]]
type = "otlp"
endpoint = "http://%s"
categories = ["metric"]
`, addr), "")
			replayInto(t, in, rec)
			stopAgent(t, a)

			m := rec.Manifest
			r.mu.Lock()
			defer r.mu.Unlock()
			got := fmt.Sprint(r.points["jvm.memory.used"], r.points["pinpoint.agent.start_time"], r.requests["all"], r.requests["failed"], len(r.services))
			// Each sample has heap and non-heap memory; two agents, each started once.
			want := fmt.Sprint(2*m.Int("messages.PAgentStat_entries_in_batches"), m.Int("messages.top_level_by_type.PAgentInfo"),
				m.Int("messages.PEachUriStat_total_count"), m.Int("messages.PEachUriStat_failed_count"),
				len(m.Ints("traces.spans_by_application")))
			if got != want {
				t.Fatalf("received (memory points, agent starts, URI requests, failed ones, services) %s, want %s", got, want)
			}
		})
	}
}
