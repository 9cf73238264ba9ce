package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/internal/jaegertest"
	"github.com/apmkit/apmkit/point"
)

// These tests check what lands in a real Jaeger through the otlp output, queried back
// over Jaeger's HTTP API, against the recordings' manifest facts and against what the
// file output beside it wrote.

// jaegerMain is a main config with a file output and an otlp output of protocol to
// endpoint, traces only (Jaeger stores no metrics).
func jaegerMain(protocol, endpoint string) string {
	return testMainWithFile + fmt.Sprintf(`[[io.outputs]]
type = "otlp"
protocol = %q
endpoint = %q
insecure = true
categories = ["tracing"]
retry_initial = "50ms"
retry_max = "200ms"
`, protocol, endpoint)
}

// TestRecordingsInJaeger replays each recording into apmkit with an OTLP/gRPC output to a
// real Jaeger, and one recording over OTLP/HTTP.
func TestRecordingsInJaeger(t *testing.T) {
	for _, rec := range recordings(t) {
		t.Run(rec.Name+"/grpc", func(t *testing.T) {
			j := jaegertest.Start(t)
			replayToJaeger(t, rec, j, jaegerMain("grpc", j.OTLPGRPC))
		})
		if rec.Name == "go-agent-stream-100" {
			t.Run(rec.Name+"/http", func(t *testing.T) {
				j := jaegertest.Start(t)
				replayToJaeger(t, rec, j, jaegerMain("http/protobuf", j.OTLPHTTP))
			})
		}
	}
}

func replayToJaeger(t *testing.T, rec *replay.Recording, j *jaegertest.Server, main string) {
	t.Helper()
	dataDir := t.TempDir()
	a, in := startAgentMain(t, dataDir, main, "")
	replayInto(t, in, rec)
	stopAgent(t, a) // delivers every batch: Jaeger stores an export before it answers

	m := rec.Manifest
	services := slices.Sorted(maps.Keys(m.Ints("traces.spans_by_application")))
	if got := j.Services(t); !slices.Equal(got, services) {
		t.Fatalf("Jaeger services %v, want %v", got, services)
	}
	traces := jaegerTraces(t, j, services, m)
	if int64(len(traces)) != m.Int("traces.transactions") {
		t.Fatalf("Jaeger holds %d traces, want %d", len(traces), m.Int("traces.transactions"))
	}
	checkJaegerTraces(t, traces, m)
	checkSpansPerTrace(t, traces, readOutput(t, dataDir, point.Tracing))
}

// jaegerTraces is every trace with a span of any of the services in the recording's time
// range, by trace id.
func jaegerTraces(t *testing.T, j *jaegertest.Server, services []string, m replay.Manifest) map[string]jaegertest.Trace {
	t.Helper()
	start := (m.Int("time_range.span_start_time_ms.min") - 1000) * 1000
	end := (m.Int("time_range.span_end_time_ms_max") + 1000) * 1000
	out := map[string]jaegertest.Trace{}
	for _, svc := range services {
		for _, tr := range j.Traces(t, svc, start, end, 100000) {
			out[tr.TraceID] = tr
		}
	}
	return out
}

// jaegerFacts are the manifest's facts as Jaeger shows them.
type jaegerFacts struct {
	spans, roots, links, errorServers, exceptionLogs int64
	serversByService                                 map[string]int64
}

func checkJaegerTraces(t *testing.T, traces map[string]jaegertest.Trace, m replay.Manifest) {
	t.Helper()
	f := jaegerFacts{serversByService: map[string]int64{}}
	for id, tr := range traces {
		f.add(t, id, tr)
	}
	want := jaegerFacts{
		spans:            m.Int("messages.PSpan") + m.Int("traces.span_events.total"),
		roots:            m.Int("traces.root_spans"),
		links:            m.Int("traces.parent_child_links.matching_same_transaction_and_parent"),
		errorServers:     m.Int("traces.error_spans"),
		exceptionLogs:    m.Int("traces.exceptions.exceptionInfo_on_spans_and_events"),
		serversByService: m.Ints("traces.spans_by_application"),
	}
	if fmt.Sprint(f) != fmt.Sprint(want) {
		t.Fatalf("Jaeger holds %+v\nwant         %+v", f, want)
	}
}

// add counts one trace's facts and checks its links: the trace id is the SHA-256 of the
// transaction id, every parent is in the trace.
func (f *jaegerFacts) add(t *testing.T, id string, tr jaegertest.Trace) {
	t.Helper()
	byID := map[string]*jaegertest.Span{}
	for i := range tr.Spans {
		byID[tr.Spans[i].SpanID] = &tr.Spans[i]
	}
	for i := range tr.Spans {
		s := &tr.Spans[i]
		f.spans++
		sum := sha256.Sum256([]byte(s.Tag("pinpoint.transaction_id")))
		if want := hex.EncodeToString(sum[:16]); id != want {
			t.Errorf("trace %s: span %s of transaction %q, whose trace id is %s", id, s.SpanID, s.Tag("pinpoint.transaction_id"), want)
		}
		kind := s.Tag("span.kind")
		if kind == "server" {
			f.serversByService[tr.Processes[s.ProcessID].ServiceName]++
			if s.Tag("error") == "true" {
				f.errorServers++
			}
		}
		for _, l := range s.Logs {
			if slices.ContainsFunc(l.Fields, func(kv jaegertest.KeyValue) bool { return kv.Key == "event" && kv.Value == "exception" }) {
				f.exceptionLogs++
			}
		}
		if len(s.References) == 0 {
			f.roots++
			continue
		}
		parent, ok := byID[s.References[0].SpanID]
		if !ok || s.References[0].RefType != "CHILD_OF" {
			t.Errorf("trace %s: span %s (%s) has no parent %s in the trace", id, s.SpanID, s.OperationName, s.References[0].SpanID)
			continue
		}
		if kind == "server" && parent.Tag("span.kind") == "client" {
			f.links++
		}
	}
}

// checkSpansPerTrace: each trace in Jaeger has exactly the spans the file output wrote
// for its transaction.
func checkSpansPerTrace(t *testing.T, traces map[string]jaegertest.Trace, rows []*point.Point) {
	t.Helper()
	want := map[string]int{}
	for _, p := range rows {
		want[str(p, "trace_id")]++
	}
	got := map[string]int{}
	for _, tr := range traces {
		for i := range tr.Spans {
			got[tr.Spans[i].Tag("pinpoint.transaction_id")]++
		}
	}
	if !maps.Equal(got, want) {
		for tx, n := range want {
			if got[tx] != n {
				t.Fatalf("transaction %s: %d spans in Jaeger, %d in the file output (of %d transactions)", tx, got[tx], n, len(want))
			}
		}
		t.Fatalf("Jaeger holds transactions the file output did not write: %d vs %d", len(got), len(want))
	}
}
