// Package otlptest runs an OTLP receiver for tests, over gRPC and HTTP/protobuf on
// 127.0.0.1: it tallies what it accepts (span names and trace ids, data points by metric,
// the requests URI histograms count, services), and Answer decides the fate of each export,
// so tests can make it fail, refuse data or reject part of it. Jaeger (jaegertest) is the
// real backend for traces; it stores no metrics, which this receiver takes.
package otlptest

import (
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc/metadata"
)

// Signals, as Answer names them.
const (
	Traces  = "traces"
	Metrics = "metrics"
)

// Receiver is the OTLP receiver. Set Answer before starting it.
type Receiver struct {
	coltracepb.UnimplementedTraceServiceServer
	// Answer decides the n-th export (from 1) of signal, holding the span names (traces):
	// an error refuses it (a gRPC status error; over HTTP an *HTTPError), rejected > 0
	// accepts it as a partial success rejecting its first rejected spans or data points.
	// nil accepts everything.
	Answer func(n int, signal string, spans []string) (rejected int64, err error)

	mu        sync.Mutex
	calls     int
	got       Received
	encodings []string
}

// Received is what the receiver accepted, and how the requests came.
type Received struct {
	Spans, TraceIDs []string         // span names, trace ids in hex
	Points          map[string]int64 // data points by metric name
	Requests        int64            // the requests of http.server.request.duration histograms
	FailedRequests  int64            // ... of their data points with error.type
	Services        []string         // service.name of the resources, sorted
	Metadata        []metadata.MD    // gRPC metadata of each trace export
	Headers         []http.Header    // HTTP headers of each trace export
	Encodings       []string         // grpc-encoding of each gRPC request
}

// HTTPError is an Answer refusing an export over HTTP.
type HTTPError struct {
	Status     int
	RetryAfter string
}

func (e *HTTPError) Error() string { return fmt.Sprint("HTTP ", e.Status) }

// Received returns a copy of what was accepted so far.
func (r *Receiver) Received() Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.got
	g.Spans, g.TraceIDs = slices.Clone(g.Spans), slices.Clone(g.TraceIDs)
	g.Points, g.Services = maps.Clone(g.Points), slices.Clone(g.Services)
	g.Metadata, g.Headers, g.Encodings = slices.Clone(g.Metadata), slices.Clone(g.Headers), slices.Clone(r.encodings)
	return g
}

// answerLocked asks Answer about the next export, under r.mu.
func (r *Receiver) answerLocked(signal string, spans []string) (int64, error) {
	r.calls++
	if r.Answer == nil {
		return 0, nil
	}
	return r.Answer(r.calls, signal, spans)
}

func (r *Receiver) takeTraces(req *coltracepb.ExportTraceServiceRequest, md metadata.MD, h http.Header) (int64, error) {
	var names, ids []string
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				names = append(names, sp.Name)
				ids = append(ids, hex.EncodeToString(sp.TraceId))
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got.Metadata, r.got.Headers = append(r.got.Metadata, md), append(r.got.Headers, h)
	rejected, err := r.answerLocked(Traces, names)
	if err == nil {
		rejected = min(rejected, int64(len(names)))
		r.got.Spans = append(r.got.Spans, names[rejected:]...)
		r.got.TraceIDs = append(r.got.TraceIDs, ids[rejected:]...)
	}
	return rejected, err
}

// takeMetrics tallies an accepted metrics export; one with a partial success is not
// tallied (which points were rejected is the server's secret).
func (r *Receiver) takeMetrics(req *colmetricspb.ExportMetricsServiceRequest) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rejected, err := r.answerLocked(Metrics, nil)
	if err != nil || rejected > 0 {
		return rejected, err
	}
	if r.got.Points == nil {
		r.got.Points = map[string]int64{}
	}
	for _, rm := range req.ResourceMetrics {
		r.noteService(rm.GetResource().GetAttributes())
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				r.tallyMetric(m)
			}
		}
	}
	return 0, nil
}
