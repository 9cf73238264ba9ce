// Package jaegertest runs a real Jaeger (v2 all-in-one, bin/jaeger: `make tools`) for tests:
// OTLP receivers and the query API on free loopback ports, in-memory storage, killed when
// the test ends. Tests of the otlp output query it back instead of trusting what was sent.
package jaegertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/apmkit/apmkit/internal/proctest"
)

// Server is a running Jaeger.
type Server struct {
	OTLPGRPC string // 127.0.0.1:port
	OTLPHTTP string // http://127.0.0.1:port
	Query    string // http://127.0.0.1:port, the HTTP query API (/api/services, /api/traces)
	health   string
	client   *http.Client
}

// Start runs Jaeger for the test. Without bin/jaeger the test is skipped, except in CI
// (CI=true), where a missing backend must fail the build rather than silently skip.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := binary(t)
	dir := t.TempDir()
	s := &Server{
		OTLPGRPC: proctest.FreeAddr(t),
		OTLPHTTP: "http://" + proctest.FreeAddr(t),
		Query:    "http://" + proctest.FreeAddr(t),
		health:   "http://" + proctest.FreeAddr(t),
		client:   &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second},
	}
	conf := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(conf, []byte(s.config(proctest.FreeAddr(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.client.CloseIdleConnections) // after the kill: cleanups run last first
	p := proctest.Run(t, "jaeger", filepath.Join(dir, "jaeger.log"), bin, "--config", conf)
	// The deadline only bounds a broken start.
	if err := p.WaitReady(60*time.Second, s.healthy); err != nil {
		t.Fatalf("jaeger %v", err)
	}
	return s
}

// binary finds Jaeger: $APMKIT_JAEGER, else bin/jaeger in the repository (the folder of
// go.mod above the test's working directory).
func binary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("APMKIT_JAEGER")
	if bin == "" {
		bin = filepath.Join(repoRoot(), "bin", "jaeger")
	}
	if _, err := os.Stat(bin); err != nil {
		proctest.Missing(t,
			fmt.Sprintf("%s not found: run `make tools` (make test does) to build Jaeger", bin),
			fmt.Sprintf("%s not found (`make tools` builds it); skipping a test against a real Jaeger", bin))
	}
	return bin
}

// repoRoot is the nearest folder above the working directory with a go.mod.
func repoRoot() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil || filepath.Dir(dir) == dir {
			return dir
		}
		dir = filepath.Dir(dir)
	}
}

// config is a Jaeger v2 configuration: OTLP gRPC and HTTP receivers straight into an
// in-memory store (no batch processor, so an export is stored when it is answered), the
// query API, the health check; every listener on loopback, Jaeger's own metrics off (their
// default port would collide between tests).
func (s *Server) config(queryGRPC string) string {
	host := func(u string) string { return u[len("http://"):] }
	return fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: []
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  healthcheckv2:
    use_v2: true
    http:
      endpoint: %s
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, host(s.Query), queryGRPC, host(s.health), s.OTLPGRPC, host(s.OTLPHTTP))
}

// healthy is nil once Jaeger's health check says it is up.
func (s *Server) healthy() error {
	resp, err := s.client.Get(s.health + "/status")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"StatusOK"`)) {
		return fmt.Errorf("/status: HTTP %d: %s", resp.StatusCode, body)
	}
	return nil
}

// get fetches a query API path into out; an error or a non-200 answer fails the test.
func (s *Server) get(t testing.TB, path string, q url.Values, out any) {
	t.Helper()
	resp, err := s.client.Get(s.Query + path + "?" + q.Encode())
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d: %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// Services lists the services Jaeger holds spans of, sorted.
func (s *Server) Services(t testing.TB) []string {
	t.Helper()
	var out struct{ Data []string }
	s.get(t, "/api/services", nil, &out)
	slices.Sort(out.Data)
	return out.Data
}

// Trace is a trace as Jaeger's query API returns it.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Span is one span of a Trace.
type Span struct {
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"` // µs
	Duration      int64       `json:"duration"`  // µs
	Tags          []KeyValue  `json:"tags"`
	Logs          []Log       `json:"logs"`
	ProcessID     string      `json:"processID"`
}

// Reference links a span to its parent (CHILD_OF).
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a tag or a log field.
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Log is a span event.
type Log struct {
	Timestamp int64      `json:"timestamp"`
	Fields    []KeyValue `json:"fields"`
}

// Process is the resource of a trace's spans.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// Tag returns a span tag's value as text ("" when absent).
func (s *Span) Tag(key string) string { return value(s.Tags, key) }

// Tag returns a process tag's value as text.
func (p *Process) Tag(key string) string { return value(p.Tags, key) }

func value(kvs []KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return fmt.Sprint(kv.Value)
		}
	}
	return ""
}

// Traces returns the traces with a span of service that started between start and end
// (µs since the epoch), up to limit.
func (s *Server) Traces(t testing.TB, service string, start, end int64, limit int) []Trace {
	t.Helper()
	var out struct{ Data []Trace }
	s.get(t, "/api/traces", url.Values{
		"service": {service},
		"start":   {fmt.Sprint(start)},
		"end":     {fmt.Sprint(end)},
		"limit":   {fmt.Sprint(limit)},
	}, &out)
	return out.Data
}
