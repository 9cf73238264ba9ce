package lprecord

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// A row as apmkit writes it (span.AppendLine), with an input tag (env) and annotation
// fields; the expected record is written out by hand.
const exitRow = `pinpoint,agent_id=frontend-01,agent_name=fe,endpoint=127.0.0.1:18081,env=prod,host=vm,http_method=GET,http_status_code=200,http_url=http://127.0.0.1:18081/api/users,operation=http/Client.Do(),service=frontend,service_type=GO_HTTP_CLIENT,source_type=http,span_type=exit,status=error trace_id="frontend-01^1795417119878^2",span_id="-304823916064687458",parent_id="-342801597421389719",resource="http/Client.Do()",start=1795417119963000i,duration=6000i,error_type="timeout",error_message="read: \"deadline\"",error_stack="a\nb",http_url_raw="http://127.0.0.1:18081/api/users?id=2",args_0="x",message="{}" 1795417119963435080
`

func TestDecodeSpanRow(t *testing.T) {
	spans, drops := DecodeSpans([]byte(exitRow))
	if drops.Total() != 0 || len(spans) != 1 {
		t.Fatalf("spans %d, drops %v", len(spans), drops.Err())
	}
	want := Span{
		TraceID: "frontend-01^1795417119878^2", SpanID: -304823916064687458, ParentID: -342801597421389719,
		Kind: "exit", Start: 1795417119963000, Duration: 6000, Error: true,
		Service: "frontend", AgentID: "frontend-01", AgentName: "fe", Host: "vm",
		Operation: "http/Client.Do()", Resource: "http/Client.Do()", ServiceType: "GO_HTTP_CLIENT",
		SourceType: "http", Endpoint: "127.0.0.1:18081", HTTPMethod: "GET", HTTPStatusCode: "200",
		HTTPURL: "http://127.0.0.1:18081/api/users", HTTPURLRaw: "http://127.0.0.1:18081/api/users?id=2",
		ErrorType: "timeout", ErrorMessage: `read: "deadline"`, ErrorStack: "a\nb", Message: "{}",
		Tags:  []KV{{"env", "prod"}},
		Attrs: []KV{{"args_0", "x"}},
	}
	if !reflect.DeepEqual(spans[0], want) {
		t.Fatalf("got  %+v\nwant %+v", spans[0], want)
	}
}

func TestDecodeMetricRow(t *testing.T) {
	const row = "pinpoint_jvm,agent_id=a1,host=vm,jvm_gc_type=G1,service=shop JvmMemoryHeapUsed=8536064i,JvmCpuLoad=0.25,big=18446744073709551615u,ok=true,name=\"x\" 1795417124915000000\n"
	ms, drops := DecodeMetrics([]byte(row))
	if drops.Total() != 0 || len(ms) != 1 {
		t.Fatalf("metrics %d, drops %v", len(ms), drops.Err())
	}
	want := Metric{
		Measurement: "pinpoint_jvm", Time: 1795417124915000000,
		Tags: []KV{{"agent_id", "a1"}, {"host", "vm"}, {"jvm_gc_type", "G1"}, {"service", "shop"}},
		Fields: []Field{
			{Key: "JvmMemoryHeapUsed", Kind: Int, Int: 8536064},
			{Key: "JvmCpuLoad", Kind: Float, Float: 0.25},
			{Key: "big", Kind: Float, Float: 18446744073709551615},
			{Key: "ok", Kind: String, Str: "true"},
			{Key: "name", Kind: String, Str: "x"},
		},
	}
	if !reflect.DeepEqual(ms[0], want) {
		t.Fatalf("got  %+v\nwant %+v", ms[0], want)
	}
	if ms[0].Tag("service") != "shop" || ms[0].Tag("nope") != "" {
		t.Fatal("Tag")
	}
}

// Every odd row is dropped with its reason, and the good rows around it are kept.
func TestDecodeDropsOddRows(t *testing.T) {
	good := `pinpoint,span_type=entry,service=s trace_id="t",span_id="1",parent_id="0",start=1i,duration=2i 1`
	rows := []string{
		good,
		`pinpoint,span_type=entry trace_id="t",span_id="x",parent_id="0",start=1i,duration=2i 1`,  // bad_span: id not decimal
		`pinpoint,span_type=entry trace_id="t",span_id="1",parent_id="0",start=1i 1`,              // bad_span: no duration
		`pinpoint,span_type=entry trace_id="t",span_id="0",parent_id="0",start=1i,duration=2i 1`,  // bad_span: zero id
		`pinpoint,span_type=other trace_id="t",span_id="1",parent_id="0",start=1i,duration=2i 1`,  // bad_span: span_type
		`pinpoint,span_type=entry span_id="1",parent_id="0",start=1i,duration=2i 1`,               // bad_span: no trace_id
		`pinpoint,span_type=entry trace_id="t",span_id="1",parent_id="0",start="1",duration=2i 1`, // bad_span: start a string
		`pinpoint,span_type=entry trace_id="t",span_id=1i,parent_id="0",start=1i,duration=2i 1`,   // bad_span: id an integer
		`pinpoint_jvm,service=s JvmCpuLoad=1 1`,                                                   // unknown_measurement in a tracing batch
		`garbage`,                                                                                 // syntax
		good,
		`pinpoint,span_type=entry trace_id="t`, // syntax (last: an open string runs to the end)
	}
	spans, drops := DecodeSpans([]byte(strings.Join(rows, "\n")))
	if len(spans) != 2 {
		t.Fatalf("spans %d, want 2", len(spans))
	}
	want := [NumReasons]int{Syntax: 1, UnknownMeasurement: 2, BadSpan: 7}
	if drops.Counts != want {
		t.Fatalf("drops %v, want %v", drops.Counts, want)
	}
	if got := drops.Err().Error(); !strings.HasPrefix(got, "10 rows not read (syntax 1, unknown_measurement 2, bad_span 7); first: row 2: bad_span: span_id: \"x\"") {
		t.Fatalf("err %q", got)
	}

	ms, mdrops := DecodeMetrics([]byte(good + "\npinpoint_uri,service=s total_count=1i 1\npinpoint_jvm,=x a=1i 1\n"))
	if len(ms) != 1 || mdrops.Counts != [NumReasons]int{Syntax: 1, UnknownMeasurement: 1} {
		t.Fatalf("metrics %d, drops %v", len(ms), mdrops.Counts)
	}
}

// FuzzDecode: batches come back from disk, so any bytes must decode without a panic, and
// every row is either a record or a counted drop.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(exitRow))
	f.Add([]byte("pinpoint_uri,service=s,uri=/a total_count=1i,bucket_lt_100ms=1i 1795417110000000000\n"))
	f.Add([]byte("pinpoint,span_type=entry trace_id=\"t\",span_id=\"1\",parent_id=\"0\",start=1i,duration=2i\n\n#c\nx"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		rows := bytes.Count(raw, []byte{'\n'}) + 1
		spans, sd := DecodeSpans(raw)
		if len(spans)+sd.Total() > rows {
			t.Fatalf("%d spans + %d drops from %d lines", len(spans), sd.Total(), rows)
		}
		for _, s := range spans {
			if s.TraceID == "" || s.SpanID == 0 {
				t.Fatalf("span without ids: %+v", s)
			}
		}
		ms, md := DecodeMetrics(raw)
		if len(ms)+md.Total() > rows {
			t.Fatalf("%d metrics + %d drops from %d lines", len(ms), md.Total(), rows)
		}
		if (sd.Total() == 0) != (sd.Err() == nil) {
			t.Fatal("Err and Total disagree")
		}
	})
}
