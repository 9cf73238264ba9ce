package otlp

import (
	"time"

	"github.com/apmkit/apmkit/io/lprecord"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
)

// uriBounds are Pinpoint's URI histogram bucket bounds, in seconds: <100 ms, 100-300 ms,
// ..., 5000-8000 ms, >= 8000 ms.
var uriBounds = []float64{0.1, 0.3, 0.5, 1, 3, 5, 8}

var uriBuckets = []string{"lt_100ms", "100_300ms", "300_500ms", "500_1000ms", "1000_3000ms", "3000_5000ms", "5000_8000ms", "ge_8000ms"}

// uriWindow is the length of Pinpoint's URI stat window: a PEachUriStat counts the
// requests of the 30 s that start at its timestamp.
const uriWindow = 30 * time.Second

// uri maps a URI stat entry to http.server.request.duration: the requests that did not
// fail as one data point, the failed ones (error.type _OTHER) as another, so summing the
// two gives every request. The max of the successful requests is only known when none
// failed.
func (b *metricSet) uri(m *lprecord.Metric) bool {
	all, failed := uriCounts(m, "bucket_"), uriCounts(m, "failed_bucket_")
	ok := make([]uint64, len(all))
	for i := range all {
		ok[i] = all[i] - min(failed[i], all[i])
	}
	route := m.Tag("uri")
	failedMs, failedMax := intField(m, "failed_elapsed_ms"), intField(m, "failed_max_ms")
	okMax := int64(-1)
	if sum(failed) == 0 {
		okMax = intField(m, "max_ms")
	}
	points := []*metricspb.HistogramDataPoint{
		uriPoint(m.Time, route, "", ok, max(intField(m, "total_elapsed_ms")-failedMs, 0), okMax),
		uriPoint(m.Time, route, "_OTHER", failed, failedMs, failedMax),
	}
	added := false
	for _, p := range points {
		if p.Count == 0 {
			continue
		}
		hist := b.metric("http.server.request.duration", "s", histogram).Data.(*metricspb.Metric_Histogram).Histogram
		hist.DataPoints = append(hist.DataPoints, p)
		added = true
	}
	return added
}

func uriCounts(m *lprecord.Metric, prefix string) []uint64 {
	out := make([]uint64, len(uriBuckets))
	for i, b := range uriBuckets {
		out[i] = uint64(max(intField(m, prefix+b), 0))
	}
	return out
}

// intField is an integer field's value, 0 when absent.
func intField(m *lprecord.Metric, key string) int64 {
	if f, ok := m.Field(key); ok && f.Kind == lprecord.Int {
		return f.Int
	}
	return 0
}

func sum(v []uint64) uint64 {
	var n uint64
	for _, x := range v {
		n += x
	}
	return n
}

// uriPoint is one histogram data point of the window starting at t; maxMs < 0: unknown.
func uriPoint(t int64, route, errorType string, counts []uint64, sumMs, maxMs int64) *metricspb.HistogramDataPoint {
	var a attrs
	a.str("http.route", route)
	a.str("error.type", errorType)
	s := float64(sumMs) / 1000
	p := &metricspb.HistogramDataPoint{
		Attributes:        []*commonpb.KeyValue(a),
		StartTimeUnixNano: uint64(max(t, 0)),
		TimeUnixNano:      uint64(max(t, 0) + int64(uriWindow)),
		Count:             sum(counts),
		Sum:               &s,
		BucketCounts:      counts,
		ExplicitBounds:    uriBounds,
	}
	if maxMs >= 0 {
		mx := float64(maxMs) / 1000
		p.Max = &mx
	}
	return p
}
