package otlptest

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"
)

// Export is the TraceService.
func (r *Receiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	rejected, err := r.takeTraces(req, md, nil)
	if err != nil {
		return nil, err
	}
	return &coltracepb.ExportTraceServiceResponse{PartialSuccess: partialTraces(rejected)}, nil
}

func partialTraces(rejected int64) *coltracepb.ExportTracePartialSuccess {
	if rejected == 0 {
		return nil
	}
	return &coltracepb.ExportTracePartialSuccess{RejectedSpans: rejected, ErrorMessage: "rejected by the test"}
}

// metricsService is the MetricsService (a type of its own: both services have Export).
type metricsService struct {
	colmetricspb.UnimplementedMetricsServiceServer
	r *Receiver
}

func (m metricsService) Export(_ context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	rejected, err := m.r.takeMetrics(req)
	if err != nil {
		return nil, err
	}
	return &colmetricspb.ExportMetricsServiceResponse{PartialSuccess: &colmetricspb.ExportMetricsPartialSuccess{RejectedDataPoints: rejected}}, nil
}

// GRPCOptions change the gRPC server: TLS credentials, no metrics service (a traces-only
// backend such as Jaeger).
type GRPCOptions struct {
	Creds     credentials.TransportCredentials
	NoMetrics bool
}

// StartGRPC serves OTLP/gRPC until the test ends and returns its host:port.
func (r *Receiver) StartGRPC(t testing.TB, opts GRPCOptions) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sopts := []grpc.ServerOption{grpc.StatsHandler(encodingRecorder{r})}
	if opts.Creds != nil {
		sopts = append(sopts, grpc.Creds(opts.Creds))
	}
	srv := grpc.NewServer(sopts...)
	coltracepb.RegisterTraceServiceServer(srv, r)
	if !opts.NoMetrics {
		colmetricspb.RegisterMetricsServiceServer(srv, metricsService{r: r})
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

// StartHTTP serves OTLP/HTTP (POST /v1/traces, /v1/metrics, binary protobuf, gzip or not)
// until the test ends and returns its base URL.
func (r *Receiver) StartHTTP(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(r.serveHTTP))
	t.Cleanup(srv.Close)
	return srv.URL
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := readBody(req)
	if err != nil || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	var resp proto.Message
	switch req.URL.Path {
	case "/v1/traces":
		var in coltracepb.ExportTraceServiceRequest
		_ = proto.Unmarshal(body, &in)
		var rejected int64
		rejected, err = r.takeTraces(&in, nil, req.Header)
		resp = &coltracepb.ExportTraceServiceResponse{PartialSuccess: partialTraces(rejected)}
	case "/v1/metrics":
		var in colmetricspb.ExportMetricsServiceRequest
		_ = proto.Unmarshal(body, &in)
		_, err = r.takeMetrics(&in)
		resp = &colmetricspb.ExportMetricsServiceResponse{}
	default:
		http.NotFound(w, req)
		return
	}
	if e, ok := err.(*HTTPError); ok {
		if e.RetryAfter != "" {
			w.Header().Set("Retry-After", e.RetryAfter)
		}
		http.Error(w, "refused by the test", e.Status)
		return
	}
	data, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(data)
}

func readBody(req *http.Request) ([]byte, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil || req.Header.Get("Content-Encoding") != "gzip" {
		return body, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// encodingRecorder notes each gRPC request's compression (grpc-encoding).
type encodingRecorder struct{ r *Receiver }

func (e encodingRecorder) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}

func (e encodingRecorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (e encodingRecorder) HandleConn(context.Context, stats.ConnStats) {}

func (e encodingRecorder) HandleRPC(_ context.Context, st stats.RPCStats) {
	if h, ok := st.(*stats.InHeader); ok {
		e.r.mu.Lock()
		defer e.r.mu.Unlock()
		e.r.encodings = append(e.r.encodings, h.Compression)
	}
}
