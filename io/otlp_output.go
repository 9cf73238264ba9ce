package io

import (
	"context"
	"errors"
	"fmt"

	"github.com/apmkit/apmkit/internal/secret"
	"github.com/apmkit/apmkit/io/lprecord"
	"github.com/apmkit/apmkit/io/otlp"
	"github.com/apmkit/apmkit/point"
	"google.golang.org/protobuf/proto"
)

// otlpSender sends batches to an OpenTelemetry backend (Jaeger, Tempo, an OTel Collector).
// Batches stay line protocol up to here, like every output's, so retries and the disk
// spill work the same; send reads the batch's rows back (io/lprecord), maps them
// (io/otlp) and exports them over gRPC or HTTP. Rows it cannot map, and data the server
// rejects in a request it accepts (OTLP partial success), are counted as dropped.
type otlpSender struct {
	masked string // the endpoint, secrets masked
	proto  string // grpc or http/protobuf
	export otlpExporter
}

// otlpExporter is one protocol's transport: it sends one request.
type otlpExporter interface {
	exportTraces(ctx context.Context, req proto.Message) (exported, error)
	exportMetrics(ctx context.Context, req proto.Message) (exported, error)
	close() error
}

// exported is a request's outcome: its size on the wire, and the items (spans or data
// points) the server rejected in a partial success, with its message.
type exported struct {
	bytes    int
	rejected int64
	msg      string
}

func newOTLPSender(cfg OutputConfig, codec *gzipCodec) (*otlpSender, error) {
	s := &otlpSender{masked: secret.Endpoint(cfg.Endpoint), proto: cfg.Protocol}
	var err error
	if cfg.Protocol == ProtocolHTTP {
		s.export, err = newOTLPHTTP(cfg, codec)
	} else {
		s.export, err = newOTLPGRPC(cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp: %w", err)
	}
	return s, nil
}

// send maps and exports a batch. A batch none of whose rows could be mapped is
// delivered by dropping them (there is nothing to send).
func (s *otlpSender) send(ctx context.Context, b *batch) (sendResult, error) {
	raw, err := b.rawBytes()
	if err != nil {
		return sendResult{}, &sendError{msg: err.Error()}
	}
	req, items, lost := mapBatch(b.cat, raw)
	if items == 0 {
		return sendResult{lost: lost}, nil
	}
	ex, err := s.exportOne(ctx, b.cat, req)
	if err != nil {
		return sendResult{}, err
	}
	if ex.rejected > 0 {
		// Metrics: the rejected data points, counted as points up to the rows sent.
		lost = append(lost, loss{points: int(min(ex.rejected, int64(items))), reason: dropRejected,
			err: fmt.Errorf("otlp partial success: %d rejected: %s", ex.rejected, ex.msg)})
	}
	return sendResult{bytes: ex.bytes, lost: lost}, nil
}

// mapBatch reads a batch's rows back and maps them to an export request; items is the
// rows the request holds, lost the rows that could not be mapped.
func mapBatch(cat point.Category, raw []byte) (req proto.Message, items int, lost []loss) {
	switch cat {
	case point.Tracing:
		spans, drops := lprecord.DecodeSpans(raw)
		return otlp.Traces(spans), len(spans), unmapped(drops.Total(), drops.Err())
	case point.Metric:
		rows, drops := lprecord.DecodeMetrics(raw)
		m, empty := otlp.Metrics(rows)
		lost = unmapped(drops.Total(), drops.Err())
		lost = append(lost, unmapped(empty, errNoMetric)...)
		return m, len(rows) - empty, lost
	}
	return nil, 0, unmapped(lineCount(raw), fmt.Errorf("otlp takes no %s points", cat))
}

var errNoMetric = errors.New("metric rows with no field that maps to an OTLP metric")

func (s *otlpSender) exportOne(ctx context.Context, cat point.Category, req proto.Message) (exported, error) {
	if cat == point.Tracing {
		return s.export.exportTraces(ctx, req)
	}
	return s.export.exportMetrics(ctx, req)
}

// unmapped is the loss of n rows the output could not map; none when n is 0.
func unmapped(n int, err error) []loss {
	if n == 0 {
		return nil
	}
	return []loss{{points: n, reason: dropUnmapped, err: fmt.Errorf("otlp: %w", err)}}
}

func (s *otlpSender) describe() string { return "otlp " + s.proto + ": " + s.masked }

func (s *otlpSender) location() string { return s.masked }

func (s *otlpSender) close() error { return s.export.close() }

// Hints for the configuration errors an OTLP backend answers.
const (
	hintOTLPSignal = `the endpoint does not take this signal: for a traces-only backend (Jaeger, Tempo) set categories = ["tracing"]; check the endpoint (http/protobuf: the base URL, without /v1/traces)`
	hintOTLPAuth   = "check the headers the backend wants (e.g. Authorization)"
)
