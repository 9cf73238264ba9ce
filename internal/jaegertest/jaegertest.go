// Package jaegertest runs a real Jaeger (v2 all-in-one, bin/jaeger: `make tools`) for tests:
// OTLP receivers and the query API on free loopback ports, in-memory storage, killed when
// the test ends. Tests of the otlp output query it back instead of trusting what was sent.
package jaegertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
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
		OTLPGRPC: freeAddr(t),
		OTLPHTTP: "http://" + freeAddr(t),
		Query:    "http://" + freeAddr(t),
		health:   "http://" + freeAddr(t),
		client:   &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second},
	}
	conf := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(conf, []byte(s.config(freeAddr(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "jaeger.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", conf)
	cmd.Stdout, cmd.Stderr = logFile, logFile // files: no copying goroutines for goleak to find
	if err := cmd.Start(); err != nil {
		t.Fatalf("start jaeger: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = logFile.Close()
		s.client.CloseIdleConnections()
		if t.Failed() {
			logs, _ := os.ReadFile(logPath)
			t.Logf("jaeger log:\n%s", logs[max(0, len(logs)-8<<10):])
		}
	})
	s.waitReady(t, exited)
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
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found: run `make tools` (make test does) to build Jaeger", bin)
		}
		t.Skipf("%s not found (`make tools` builds it); skipping a test against a real Jaeger", bin)
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

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
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

// waitReady polls the health check until Jaeger says it is up; the deadline only bounds a
// broken start.
func (s *Server) waitReady(t testing.TB, exited <-chan error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("jaeger exited early: %v", err)
		default:
		}
		resp, err := s.client.Get(s.health + "/status")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"StatusOK"`)) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
