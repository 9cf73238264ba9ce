package otlptest

import (
	"slices"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
)

// noteService records a resource's service.name, under r.mu.
func (r *Receiver) noteService(attrs []*commonpb.KeyValue) {
	for _, kv := range attrs {
		if kv.Key == "service.name" && !slices.Contains(r.got.Services, kv.Value.GetStringValue()) {
			r.got.Services = append(r.got.Services, kv.Value.GetStringValue())
			slices.Sort(r.got.Services)
		}
	}
}

// tallyMetric counts a metric's data points and its histograms' requests, under r.mu.
func (r *Receiver) tallyMetric(m *metricspb.Metric) {
	hist := m.GetHistogram().GetDataPoints()
	r.got.Points[m.Name] += int64(len(m.GetGauge().GetDataPoints()) + len(m.GetSum().GetDataPoints()) + len(hist))
	if m.Name != "http.server.request.duration" {
		return
	}
	for _, dp := range hist {
		r.got.Requests += int64(dp.Count)
		if slices.ContainsFunc(dp.Attributes, func(kv *commonpb.KeyValue) bool { return kv.Key == "error.type" }) {
			r.got.FailedRequests += int64(dp.Count)
		}
	}
}
