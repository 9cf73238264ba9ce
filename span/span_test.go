package span

import (
	"bytes"
	"strings"
	"testing"

	"github.com/apmkit/apmkit/point"
)

// testSpan builds a span the way the converter does: tag values cleaned, strings valid
// UTF-8, keys fixed or annotation names.
func testSpan(vals []string, extra []point.Tag) *Span {
	v := func(i int) string { return strings.ToValidUTF8(vals[i%len(vals)], "\uFFFD") }
	t := func(i int) string { return point.CleanTagValue(vals[i%len(vals)]) }
	s := New(2, 256)
	s.TraceID, s.Service, s.AgentID, s.AgentName, s.Host = v(0), t(1), t(2), t(3), t(4)
	s.Partial = len(vals[0])%2 == 1
	s.Tags = extra
	s.Events = append(s.Events, Event{
		Time: 1700000001000579487, Start: 1700000001000000, Duration: 5000, SpanID: 7001, Kind: Entry,
		Operation: s.Add(t(5)), ServiceType: s.Add("TOMCAT"), SourceType: s.Add("web"),
		HTTPMethod: s.Add(t(6)), HTTPStatus: s.Add("200"), HTTPURL: s.Add(t(7)),
		Resource: s.Add(v(8)), Message: s.Add(v(9)),
	})
	s.AddAttr(s.Add("remote_addr"), s.Add(v(10)))
	s.Events = append(s.Events, Event{
		Time: 1700000001001579488, Start: 1700000001001000, Duration: 2000, SpanID: -5491193716282761676, ParentID: 7001,
		Kind: Exit, Error: true, Operation: s.Add(t(11)), ServiceType: s.Add("MYSQL_EXECUTE_QUERY"), SourceType: s.Add("db"),
		Endpoint: s.Add(t(12)), Resource: s.Add(v(13)), ErrorType: s.Add(v(14)), ErrorMessage: s.Add(v(15)), ErrorStack: s.Add(v(16)),
	})
	s.AddAttr(s.Add("db_sql_bind_values"), s.Add(v(17)))
	s.AddAttr(s.Add("args_0"), s.Add(v(18)))
	return s
}

// referenceLines encodes the span's points with point.Encoder, that is line-protocol/v2.
func referenceLines(t testing.TB, s *Span) []byte {
	t.Helper()
	enc := point.NewEncoder()
	for _, p := range s.Points() {
		if err := enc.Encode(p); err != nil {
			t.Fatalf("reference encoder: %v", err)
		}
	}
	return enc.Bytes()
}

func checkLines(t testing.TB, s *Span) {
	t.Helper()
	want := referenceLines(t, s)
	if got := s.AppendLines(nil); !bytes.Equal(got, want) {
		t.Fatalf("lines differ from line-protocol/v2:\n got %q\nwant %q", got, want)
	}
}

func TestLinesMatchLineProtocolV2(t *testing.T) {
	plain := []string{"frontend-01^1795417119878^42", "shop", "java-a", "java-a-pod", "web-1", "Servlet.process()", "GET",
		"/items", "/items", `{"spanId":"7001"}`, "10.0.0.9", "Repo.find()", "db:3306", "SELECT 1", "java.lang.Error", "boom", "stack", "1, 'a'", "42"}
	odd := []string{"tr\"ace\\\n\t\r", "with space,comma=eq", "a\\", "\x00ctl\x7f", " lead trail ", "ümlaut ✓", "x=y", `"quoted"`, "line1\nline2", "tab\there"}
	for _, vals := range [][]string{plain, odd} {
		for _, extra := range [][]point.Tag{nil, {{Key: "env", Value: "prod"}}, {{Key: "a k", Value: "v,1"}, {Key: "endpoint", Value: "x"}, {Key: "service", Value: "ignored"}, {Key: "zone", Value: "eu 1"}}} {
			checkLines(t, testSpan(vals, extra))
		}
	}
}

// An extra tag never replaces an event's own tag, and fills one the event does not have.
func TestExtraTagsMerge(t *testing.T) {
	s := testSpan([]string{"t", "svc", "a", "n", "h", "op"}, []point.Tag{{Key: "endpoint", Value: "fill"}, {Key: "service", Value: "other"}})
	pts := s.Points()
	if v, _ := pts[0].Tag("service"); v != "svc" {
		t.Errorf("service = %q, want the span's own", v)
	}
	if v, _ := pts[0].Tag("endpoint"); v != "fill" {
		t.Errorf("entry endpoint = %q, want the extra tag", v)
	}
	if v, _ := pts[1].Tag("endpoint"); v != s.String(s.Events[1].Endpoint) || v == "fill" {
		t.Errorf("exit endpoint = %q, want its own %q", v, s.String(s.Events[1].Endpoint))
	}
}

func TestArenaStringsSurviveGrowth(t *testing.T) {
	s := New(1, 1)
	a := s.Add("first")
	for range 100 {
		s.Add(strings.Repeat("x", 100))
	}
	if got := s.String(a); got != "first" {
		t.Fatalf("String = %q after the arena grew", got)
	}
	m := s.Mark()
	s.SetArena(append(s.Arena(), "in place"...))
	if got := s.String(s.Since(m)); got != "in place" {
		t.Fatalf("Since = %q", got)
	}
}

func FuzzLines(f *testing.F) {
	f.Add("trace", "svc", "a b,c=d", "\"q\"\\", "ü\n\t\r", "x")
	f.Add("", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, a, b, c, d, e, g string) {
		checkLines(t, testSpan([]string{a, b, c, d, e, g}, []point.Tag{{Key: "env", Value: "prod"}}))
	})
}

func BenchmarkAppendLines(b *testing.B) {
	s := testSpan([]string{"frontend-01^1795417119878^42", "shop", "java-a", "java-a-pod", "web-1", "Servlet.process()", "GET", "/items",
		"/items", `{"version":1,"spanId":"7001","parentSpanId":"-1","startTime":"1700000001000","elapsed":5,"apiId":1,"serviceType":1010}`}, nil)
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for range b.N {
			buf = s.AppendLines(buf[:0])
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("line-protocol-v2", func(b *testing.B) {
		pts := s.Points()
		enc := point.NewEncoder()
		b.ReportAllocs()
		for range b.N {
			enc.Reset()
			for _, p := range pts {
				_ = enc.Encode(p)
			}
		}
		b.SetBytes(int64(enc.Len()))
	})
}
