package otlp

import (
	"testing"

	"github.com/apmkit/apmkit/io/lprecord"
	"google.golang.org/protobuf/proto"
)

// FuzzMapping: whatever rows a batch read back from disk holds, mapping them never panics
// and gives a request that marshals, with one span per span record.
func FuzzMapping(f *testing.F) {
	f.Add([]byte(`pinpoint,endpoint=db:3306,http_url=/a/1,operation=q,service_type=MYSQL_X,source_type=db,span_type=exit,status=error trace_id="t",span_id="-1",parent_id="2",start=-5i,duration=-1i,acceptor_host="h:x",error_stack="s" 1`))
	f.Add([]byte("pinpoint_uri,uri=/x total_count=3i,failed_count=9i,bucket_lt_100ms=1i,failed_bucket_lt_100ms=5i,max_ms=-1i 1\n" +
		"pinpoint_jvm,jvm_gc_type=G1 CollectInterval=-5i,JvmGcOldCount=1.5,JvmCpuLoad=\"x\" -1\n" +
		"pinpoint_agent,service_type=GO start_time=1i,end_timestamp=2u,pid=\"p\" 1\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		spans, _ := lprecord.DecodeSpans(raw)
		treq := Traces(spans)
		n := 0
		for _, rs := range treq.ResourceSpans {
			n += len(rs.ScopeSpans[0].Spans)
		}
		if n != len(spans) {
			t.Fatalf("%d spans from %d records", n, len(spans))
		}
		rows, _ := lprecord.DecodeMetrics(raw)
		mreq, empty := Metrics(rows)
		if empty > len(rows) {
			t.Fatalf("%d empty of %d rows", empty, len(rows))
		}
		for _, m := range []proto.Message{treq, mreq} {
			if _, err := proto.Marshal(m); err != nil {
				t.Fatal(err)
			}
		}
	})
}
