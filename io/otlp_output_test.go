package io

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	stdio "io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/apmkit/apmkit/point"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// otlpServer is an OTLP receiver for tests, over gRPC and HTTP on 127.0.0.1: it keeps the
// spans and data points it accepts, and answer decides each export's fate: an error (a
// gRPC status, or an HTTP status for the HTTP side) or the number of items to reject as a
// partial success.
type otlpServer struct {
	coltracepb.UnimplementedTraceServiceServer
	colmetricspb.UnimplementedMetricsServiceServer
	answer func(n int, signal string, names []string) (rejected int64, err error)

	mu        sync.Mutex
	calls     int
	spans     []string // span names
	traceIDs  []string // hex
	points    int
	md        []metadata.MD
	headers   []http.Header
	encodings []string // grpc-encoding of each gRPC request
}

func (s *otlpServer) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	rejected, err := s.takeTraces(req, md, nil)
	if err != nil {
		return nil, err
	}
	return &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: rejected, ErrorMessage: msgIf(rejected)}}, nil
}

func msgIf(rejected int64) string {
	if rejected > 0 {
		return "too old"
	}
	return ""
}

func (s *otlpServer) takeTraces(req *coltracepb.ExportTraceServiceRequest, md metadata.MD, h http.Header) (int64, error) {
	var names, ids []string
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				names = append(names, sp.Name)
				ids = append(ids, hex.EncodeToString(sp.TraceId))
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.md, s.headers = append(s.md, md), append(s.headers, h)
	rejected, err := s.answer(s.calls, "traces", names)
	if err == nil {
		s.spans, s.traceIDs = append(s.spans, names[rejected:]...), append(s.traceIDs, ids[rejected:]...)
	}
	return rejected, err
}

// metricsServer is the MetricsService side (a type of its own: both services have Export).
type metricsServer struct{ *otlpServer }

func (m metricsServer) Export(_ context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	rejected, err := m.takeMetrics(req)
	if err != nil {
		return nil, err
	}
	return &colmetricspb.ExportMetricsServiceResponse{PartialSuccess: &colmetricspb.ExportMetricsPartialSuccess{RejectedDataPoints: rejected}}, nil
}

func (s *otlpServer) takeMetrics(req *colmetricspb.ExportMetricsServiceRequest) (int64, error) {
	n := 0
	for _, rm := range req.ResourceMetrics {
		for _, m := range rm.ScopeMetrics[0].Metrics {
			n += len(m.GetGauge().GetDataPoints()) + len(m.GetSum().GetDataPoints()) + len(m.GetHistogram().GetDataPoints())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	rejected, err := s.answer(s.calls, "metrics", nil)
	if err == nil {
		s.points += n - int(rejected)
	}
	return rejected, err
}

func (s *otlpServer) received() (spans []string, points int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.spans...), s.points
}

// startGRPC serves the trace service, and the metrics service when metrics is true.
func (s *otlpServer) startGRPC(t *testing.T, metrics bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.StatsHandler(encodingRecorder{s}))
	coltracepb.RegisterTraceServiceServer(srv, s)
	if metrics {
		colmetricspb.RegisterMetricsServiceServer(srv, metricsServer{s})
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

// startHTTP serves POST /v1/traces and /v1/metrics with binary protobuf; an error from
// answer is an *httpAnswer.
func (s *otlpServer) startHTTP(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := stdio.ReadAll(r.Body)
		if err == nil && r.Header.Get("Content-Encoding") == "gzip" {
			var zr *gzip.Reader
			if zr, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
				body, err = stdio.ReadAll(zr)
			}
		}
		if err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		var resp proto.Message
		var aerr error
		switch r.URL.Path {
		case "/v1/traces":
			var req coltracepb.ExportTraceServiceRequest
			_ = proto.Unmarshal(body, &req)
			var rejected int64
			rejected, aerr = s.takeTraces(&req, nil, r.Header)
			resp = &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: rejected}}
		case "/v1/metrics":
			var req colmetricspb.ExportMetricsServiceRequest
			_ = proto.Unmarshal(body, &req)
			_, aerr = s.takeMetrics(&req)
			resp = &colmetricspb.ExportMetricsServiceResponse{}
		default:
			http.NotFound(w, r)
			return
		}
		if a, ok := aerr.(*httpAnswer); ok {
			if a.retryAfter != "" {
				w.Header().Set("Retry-After", a.retryAfter)
			}
			http.Error(w, "refused", a.status)
			return
		}
		data, _ := proto.Marshal(resp)
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// encodingRecorder notes each request's compression (grpc-encoding).
type encodingRecorder struct{ s *otlpServer }

func (r encodingRecorder) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}
func (r encodingRecorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (r encodingRecorder) HandleConn(context.Context, stats.ConnStats) {}
func (r encodingRecorder) HandleRPC(_ context.Context, st stats.RPCStats) {
	if h, ok := st.(*stats.InHeader); ok {
		r.s.mu.Lock()
		defer r.s.mu.Unlock()
		r.s.encodings = append(r.s.encodings, h.Compression)
	}
}

type httpAnswer struct {
	status     int
	retryAfter string
}

func (a *httpAnswer) Error() string { return fmt.Sprint(a.status) }

// spanRows are n entry spans of transactions t<from>..., named op<i>, as line-protocol
// points.
func spanRows(t *testing.T, from, n int) []*point.Point {
	t.Helper()
	var b strings.Builder
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, "pinpoint,operation=op%d,service=shop,span_type=entry trace_id=\"t%d\",span_id=\"%d\",parent_id=\"0\",start=%di,duration=1i %d\n", i, i, i+1, i, i*1000)
	}
	pts, err := point.Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return pts
}

func otlpOutput(protocol, endpoint string) OutputConfig {
	return fastRetries(OutputConfig{Type: TypeOTLP, Protocol: protocol, Endpoint: endpoint, Insecure: true,
		Headers: map[string]string{"Authorization": "Bearer secret-token-1234"}})
}

func TestOTLPGRPCDelivers(t *testing.T) {
	srv := &otlpServer{answer: func(int, string, []string) (int64, error) { return 0, nil }}
	addr := srv.startGRPC(t, true)
	u := startUploader(t, testConfig(otlpOutput(ProtocolGRPC, addr)), t.TempDir())
	feed(t, u, point.Tracing, spanRows(t, 0, 3))
	jvm, _ := point.Parse([]byte("pinpoint_jvm,agent_id=a,service=shop JvmMemoryHeapUsed=1i,TotalThreadCount=8i 1\n"))
	feed(t, u, point.Metric, jvm)
	stopUploader(t, u)

	spans, points := srv.received()
	if strings.Join(spans, ",") != "op0,op1,op2" || points != 2 {
		t.Fatalf("received spans %v and %d data points; want op0,op1,op2 and 2", spans, points)
	}
	// sha256("t0")[:16], computed with sha256sum.
	if srv.traceIDs[0] != "512f26ada3c3d634ac3c6b12b7b33cb5" {
		t.Errorf("trace id %s", srv.traceIDs[0])
	}
	md := srv.md[0]
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer secret-token-1234" {
		t.Errorf("authorization metadata %v", got)
	}
	if got := srv.encodings[0]; got != "gzip" {
		t.Errorf("grpc-encoding %q, want gzip", got)
	}
	st := outputStats(u, "otlp")
	if st.PointsSentBy["tracing"] != 3 || st.PointsSentBy["metric"] != 1 || len(st.Dropped) != 0 || st.URL != addr {
		t.Fatalf("stats %+v", st)
	}
}

// A server that is down is retried; a request it refuses as bad data is split until only
// the rows it refuses alone are dropped; a partial success drops the rejected spans; rows
// that are not spans are dropped as unmapped.
func TestOTLPGRPCAnswers(t *testing.T) {
	srv := &otlpServer{answer: func(n int, _ string, names []string) (int64, error) {
		switch {
		case n <= 2:
			return 0, status.Error(codes.Unavailable, "starting")
		case containsName(names, "op5"):
			return 0, status.Error(codes.InvalidArgument, "op5 is bad")
		case containsName(names, "op9"):
			return 1, nil // the first span of the request
		}
		return 0, nil
	}}
	addr := srv.startGRPC(t, true)
	u := startUploader(t, testConfig(otlpOutput(ProtocolGRPC, addr)), t.TempDir())
	rows := spanRows(t, 0, 10)
	other, _ := point.Parse([]byte("other_measurement v=1i 1\n"))
	feed(t, u, point.Tracing, append(rows, other...))
	waitFor(t, "the batch's delivery", func() bool {
		st := outputStats(u, "otlp")
		return st.PointsSentBy["tracing"]+st.Dropped["malformed"]+st.Dropped["rejected"]+st.Dropped["unmapped"] == 11
	})
	stopUploader(t, u)

	st := outputStats(u, "otlp")
	want := map[string]int64{"malformed": 1, "rejected": 1, "unmapped": 1}
	if fmt.Sprint(st.Dropped) != fmt.Sprint(want) || st.PointsSentBy["tracing"] != 8 || st.Retries < 2 {
		t.Fatalf("dropped %v, sent %d, retries %d; want %v, 8, >= 2", st.Dropped, st.PointsSentBy["tracing"], st.Retries, want)
	}
	spans, _ := srv.received()
	if len(spans) != 8 || containsName(spans, "op5") {
		t.Fatalf("received %v", spans)
	}
}

func containsName(names []string, n string) bool {
	for _, x := range names {
		if x == n {
			return true
		}
	}
	return false
}

// A backend without a metrics service (Jaeger) is a configuration error: the batch is
// kept in the spill and the log says what to change.
func TestOTLPMetricsUnimplementedIsConfigError(t *testing.T) {
	srv := &otlpServer{answer: func(int, string, []string) (int64, error) { return 0, nil }}
	addr := srv.startGRPC(t, false)
	logs, log := newLogBuffer(t)
	u := startUploaderWith(t, testConfig(otlpOutput(ProtocolGRPC, addr)), t.TempDir(), log, nil)
	jvm, _ := point.Parse([]byte("pinpoint_jvm,service=shop TotalThreadCount=8i 1\n"))
	feed(t, u, point.Metric, jvm)
	waitFor(t, "the spill", func() bool { return outputStats(u, "otlp").SpillBatches == 1 })
	st := outputStats(u, "otlp")
	if st.State != "config_error" || !strings.Contains(st.LastError, "Unimplemented") {
		t.Fatalf("state %s, last error %q", st.State, st.LastError)
	}
	if len(logs.find("ERROR", `categories = [\"tracing\"]`)) == 0 {
		t.Fatal("no ERROR line with the categories hint")
	}
}

func TestOTLPHTTP(t *testing.T) {
	srv := &otlpServer{answer: func(n int, signal string, names []string) (int64, error) {
		switch {
		case signal == "metrics":
			return 0, &httpAnswer{status: http.StatusNotFound}
		case n == 1:
			return 0, &httpAnswer{status: http.StatusServiceUnavailable, retryAfter: "0"}
		case containsName(names, "op2"):
			return 0, &httpAnswer{status: http.StatusBadRequest}
		}
		return 0, nil
	}}
	base := srv.startHTTP(t)
	u := startUploader(t, testConfig(otlpOutput(ProtocolHTTP, base+"/")), t.TempDir())
	feed(t, u, point.Tracing, spanRows(t, 0, 4))
	waitFor(t, "the spans", func() bool { s, _ := srv.received(); return len(s) == 3 })
	jvm, _ := point.Parse([]byte("pinpoint_jvm,service=shop TotalThreadCount=8i 1\n"))
	feed(t, u, point.Metric, jvm)
	waitFor(t, "the metric batch in the spill", func() bool { return outputStats(u, "otlp").SpillBatches == 1 })

	st := outputStats(u, "otlp")
	if fmt.Sprint(st.Dropped) != "map[malformed:1]" || st.PointsSentBy["tracing"] != 3 || st.State != "config_error" {
		t.Fatalf("stats %+v", st)
	}
	h := srv.headers[0]
	if h.Get("Authorization") != "Bearer secret-token-1234" || h.Get("Content-Encoding") != "gzip" || !strings.HasPrefix(h.Get("User-Agent"), "apmkit/") {
		t.Fatalf("headers %v", h)
	}
	if st.URL != base+"/" {
		t.Fatalf("location %q", st.URL)
	}
}

// TLS with tls_ca_file: the server's certificate is trusted through the CA file only, over
// gRPC and HTTP; without the file the same server is refused.
func TestOTLPTLS(t *testing.T) {
	srv := &otlpServer{answer: func(int, string, []string) (int64, error) { return 0, nil }}
	https := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(https.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: https.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: https.TLS.Certificates})))
	coltracepb.RegisterTraceServiceServer(gs, srv)
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)

	tlsOut := func(ca string) OutputConfig {
		o := otlpOutput(ProtocolGRPC, l.Addr().String())
		o.Insecure, o.TLSCAFile, o.Categories = false, ca, []string{"tracing"}
		return o
	}
	u := startUploader(t, testConfig(tlsOut(caFile)), t.TempDir())
	feed(t, u, point.Tracing, spanRows(t, 0, 2))
	stopUploader(t, u)
	if spans, _ := srv.received(); len(spans) != 2 {
		t.Fatalf("received %v over TLS", spans)
	}

	u = startUploader(t, testConfig(tlsOut("")), t.TempDir())
	feed(t, u, point.Tracing, spanRows(t, 2, 1))
	waitFor(t, "a failed attempt", func() bool { return outputStats(u, "otlp").State == "failing" })
	if st := outputStats(u, "otlp"); !strings.Contains(st.LastError, "certificate") {
		t.Fatalf("without the CA: %q", st.LastError)
	}
	stopUploader(t, u)
}
