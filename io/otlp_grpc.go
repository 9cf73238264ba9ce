package io

import (
	"context"
	"fmt"
	"time"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// otlpGRPC exports over OTLP/gRPC: one client connection per output (gRPC multiplexes the
// requests in flight on it), the configured headers as metadata.
type otlpGRPC struct {
	target  string
	conn    *grpc.ClientConn
	traces  coltracepb.TraceServiceClient
	metrics colmetricspb.MetricsServiceClient
	md      metadata.MD
	calls   []grpc.CallOption
	timeout time.Duration
}

func newOTLPGRPC(cfg OutputConfig) (*otlpGRPC, error) {
	target, plaintext, err := cfg.grpcTarget()
	if err != nil {
		return nil, fmt.Errorf("endpoint: %w", err)
	}
	creds := insecure.NewCredentials()
	if !plaintext {
		tc, err := cfg.tlsConfig()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tc)
	}
	// The connection is made lazily, at the first request: an output that is down at
	// start is retried like any failing output.
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds), grpc.WithUserAgent(userAgent()))
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", target, err)
	}
	g := &otlpGRPC{
		target:  target,
		conn:    conn,
		traces:  coltracepb.NewTraceServiceClient(conn),
		metrics: colmetricspb.NewMetricsServiceClient(conn),
		md:      metadata.New(cfg.Headers),
		timeout: cfg.Timeout,
	}
	if cfg.GzipEnabled() {
		g.calls = append(g.calls, grpc.UseCompressor(gzip.Name))
	}
	return g, nil
}

func (g *otlpGRPC) call(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	return metadata.NewOutgoingContext(ctx, g.md), cancel
}

// The bytes of a gRPC export are the message before compression: gRPC compresses it
// out of sight.

func (g *otlpGRPC) exportTraces(ctx context.Context, req proto.Message) (exported, error) {
	ctx, cancel := g.call(ctx)
	defer cancel()
	resp, err := g.traces.Export(ctx, req.(*coltracepb.ExportTraceServiceRequest), g.calls...)
	if err != nil {
		return exported{}, grpcError(err, g.target)
	}
	ps := resp.GetPartialSuccess()
	return exported{bytes: proto.Size(req), rejected: ps.GetRejectedSpans(), msg: ps.GetErrorMessage()}, nil
}

func (g *otlpGRPC) exportMetrics(ctx context.Context, req proto.Message) (exported, error) {
	ctx, cancel := g.call(ctx)
	defer cancel()
	resp, err := g.metrics.Export(ctx, req.(*colmetricspb.ExportMetricsServiceRequest), g.calls...)
	if err != nil {
		return exported{}, grpcError(err, g.target)
	}
	ps := resp.GetPartialSuccess()
	return exported{bytes: proto.Size(req), rejected: ps.GetRejectedDataPoints(), msg: ps.GetErrorMessage()}, nil
}

func (g *otlpGRPC) close() error { return g.conn.Close() }

// grpcError classifies a failed export as the OTLP specification does: the codes it
// names retryable are retried (RESOURCE_EXHAUSTED only with a RetryInfo delay; without
// one it means a message too large, and the batch is split like HTTP's 413); a rejected
// argument is bad data (split, down to the rows the server refuses alone); refused
// credentials and a service the endpoint does not offer are configuration errors.
func grpcError(err error, target string) *sendError {
	st := status.Convert(err)
	e := &sendError{server: st.Message(), msg: fmt.Sprintf("otlp grpc %s: %s: %s", target, st.Code(), st.Message())}
	delay := retryDelayOf(st)
	switch st.Code() {
	case codes.Unauthenticated, codes.PermissionDenied:
		e.class, e.hint = classConfig, hintOTLPAuth
	case codes.Unimplemented, codes.NotFound:
		e.class, e.hint = classConfig, hintOTLPSignal
	case codes.InvalidArgument:
		e.class = classMalformed
	case codes.ResourceExhausted:
		e.class = classMalformed
		if delay > 0 {
			e.class, e.retryAfter = classRetry, delay
		}
	case codes.FailedPrecondition, codes.AlreadyExists:
		e.class = classPermanent
	default: // Unavailable, DeadlineExceeded, Aborted, OutOfRange, DataLoss, Canceled, Internal, Unknown
		e.class, e.retryAfter = classRetry, delay
	}
	return e
}

// retryDelayOf is the server's RetryInfo delay, 0 when it sent none.
func retryDelayOf(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}
