package otlp

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/apmkit/apmkit/io/lprecord"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// The tests compare a text rendering of what the mapping built with expected text
// written by hand: one line per resource, span, attribute, event and data point.

func kvText(kvs []*commonpb.KeyValue) string {
	var parts []string
	for _, kv := range kvs {
		switch v := kv.Value.Value.(type) {
		case *commonpb.AnyValue_StringValue:
			parts = append(parts, fmt.Sprintf("%s=%q", kv.Key, v.StringValue))
		case *commonpb.AnyValue_IntValue:
			parts = append(parts, fmt.Sprintf("%s=%d", kv.Key, v.IntValue))
		case *commonpb.AnyValue_BoolValue:
			parts = append(parts, fmt.Sprintf("%s=%t", kv.Key, v.BoolValue))
		default:
			parts = append(parts, kv.Key+"=?")
		}
	}
	return strings.Join(parts, " ")
}

func spanText(s *tracepb.Span) string {
	var b strings.Builder
	fmt.Fprintf(&b, "span %q %s trace=%s span=%s parent=%s %d..%d", s.Name, strings.TrimPrefix(s.Kind.String(), "SPAN_KIND_"),
		hex.EncodeToString(s.TraceId), hex.EncodeToString(s.SpanId), hex.EncodeToString(s.ParentSpanId), s.StartTimeUnixNano, s.EndTimeUnixNano)
	if s.Status != nil {
		fmt.Fprintf(&b, " status=%s:%q", strings.TrimPrefix(s.Status.Code.String(), "STATUS_CODE_"), s.Status.Message)
	}
	for _, a := range s.Attributes {
		b.WriteString("\n  " + kvText([]*commonpb.KeyValue{a}))
	}
	for _, e := range s.Events {
		fmt.Fprintf(&b, "\n  event %s @%d %s", e.Name, e.TimeUnixNano, kvText(e.Attributes))
	}
	return b.String()
}

func oneSpan(t *testing.T, row string) string {
	t.Helper()
	spans, drops := lprecord.DecodeSpans([]byte(row))
	if drops.Total() != 0 || len(spans) != 1 {
		t.Fatalf("decode: %d spans, %v", len(spans), drops.Err())
	}
	return spanText(Span(&spans[0]))
}

func numberText(dp *metricspb.NumberDataPoint) string {
	v := ""
	switch x := dp.Value.(type) {
	case *metricspb.NumberDataPoint_AsInt:
		v = fmt.Sprint(x.AsInt)
	case *metricspb.NumberDataPoint_AsDouble:
		v = fmt.Sprint(x.AsDouble)
	}
	s := fmt.Sprintf("%s @%d", v, dp.TimeUnixNano)
	if dp.StartTimeUnixNano != 0 {
		s += fmt.Sprintf(" from %d", dp.StartTimeUnixNano)
	}
	if len(dp.Attributes) > 0 {
		s += " " + kvText(dp.Attributes)
	}
	return s
}

// metricsText renders every resource and data point of a request.
func metricsText(rms []*metricspb.ResourceMetrics) string {
	var lines []string
	for _, rm := range rms {
		lines = append(lines, "resource "+kvText(rm.Resource.Attributes))
		for _, m := range rm.ScopeMetrics[0].Metrics {
			switch d := m.Data.(type) {
			case *metricspb.Metric_Gauge:
				for _, dp := range d.Gauge.DataPoints {
					lines = append(lines, fmt.Sprintf("%s[%s] gauge %s", m.Name, m.Unit, numberText(dp)))
				}
			case *metricspb.Metric_Sum:
				kind := fmt.Sprintf("sum(%s,monotonic=%t)", strings.TrimPrefix(d.Sum.AggregationTemporality.String(), "AGGREGATION_TEMPORALITY_"), d.Sum.IsMonotonic)
				for _, dp := range d.Sum.DataPoints {
					lines = append(lines, fmt.Sprintf("%s[%s] %s %s", m.Name, m.Unit, kind, numberText(dp)))
				}
			case *metricspb.Metric_Histogram:
				for _, dp := range d.Histogram.DataPoints {
					mx := "?"
					if dp.Max != nil {
						mx = fmt.Sprint(*dp.Max)
					}
					lines = append(lines, fmt.Sprintf("%s[%s] histogram(%s) %d..%d count=%d sum=%v max=%s buckets=%v bounds=%v %s",
						m.Name, m.Unit, strings.TrimPrefix(d.Histogram.AggregationTemporality.String(), "AGGREGATION_TEMPORALITY_"),
						dp.StartTimeUnixNano, dp.TimeUnixNano, dp.Count, *dp.Sum, mx, dp.BucketCounts, dp.ExplicitBounds, kvText(dp.Attributes)))
				}
			}
		}
	}
	return strings.Join(lines, "\n")
}

func diff(t *testing.T, got, want string) {
	t.Helper()
	want = strings.TrimSpace(want)
	if got == want {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			t.Fatalf("line %d:\ngot  %s\nwant %s\n\nall got:\n%s", i+1, gl, wl, got)
		}
	}
}
