package trace

import (
	"testing"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// The http_url tag is the URL's template by default (a bounded tag), with the URL as it
// came in the http_url_raw field; with RawHTTPURLTag it is the URL as it came, no field.
func TestHTTPURLTag(t *testing.T) {
	for _, raw := range []bool{false, true} {
		h := newHarness(t, func(o *Options) { o.RawHTTPURLTag = raw })
		h.span(javaA, &pb.PSpan{
			Version: 1, TransactionId: txID("", 1700000000000, 1), SpanId: 1, ParentSpanId: -1,
			StartTime: t0, Elapsed: 10, ServiceType: 1010,
			AcceptEvent: &pb.PAcceptEvent{Rpc: "/stock/42"},
			SpanEvent: []*pb.PSpanEvent{
				{Sequence: 0, Depth: 1, EndElapsed: 5, ServiceType: 9055, Annotation: []*pb.PAnnotation{strAnn(annHTTPURL, "http://api:8080/items?page=2")}},
				{Sequence: 1, Depth: 1, EndElapsed: 5, ServiceType: 9055, Annotation: []*pb.PAnnotation{strAnn(annHTTPURL, "/health")}},
			},
		})
		pts := h.sink.points()
		if len(pts) != 3 {
			t.Fatalf("raw=%v: %d points, want 3", raw, len(pts))
		}
		want := []struct{ tag, field string }{
			{"/stock/{id}", "/stock/42"},
			{"http://api:8080/items", "http://api:8080/items?page=2"},
			{"/health", ""}, // no id, no query: the tag is the URL, no field
		}
		if raw {
			want = []struct{ tag, field string }{{"/stock/42", ""}, {"http://api:8080/items?page=2", ""}, {"/health", ""}}
		}
		for i, p := range pts {
			tag, _ := p.Tag("http_url")
			field, _ := p.Field(FieldHTTPURLRaw)
			fs := field.StringValue()
			if tag != want[i].tag || fs != want[i].field {
				line, _ := pointLine(p)
				t.Errorf("raw=%v point %d: http_url=%q http_url_raw=%q, want %q and %q\n%s", raw, i, tag, fs, want[i].tag, want[i].field, line)
			}
		}
	}
}
