package io

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/apmkit/apmkit/internal/version"
	"github.com/apmkit/apmkit/point"
)

// richPoints covers every field kind and the characters line protocol must escape.
func richPoints(name string, base int64) []*point.Point {
	a := point.New(name, 1_700_000_000_123_456_789+base)
	a.SetTag("host name", "web 01,eu=west")
	a.SetTag("service", `pay"ment\svc`)
	a.AddField(point.Int("int", -42))
	a.AddField(point.Uint("uint", 18446744073709551615))
	a.AddField(point.Float("float", 3.141592653589793))
	a.AddField(point.String("msg", "say \"hi\", C:\\path\\ with spaces\nand a newline"))
	a.AddField(point.Bool("ok", true))
	b := point.New(name+" with space,comma", 1_700_000_000_000_000_001+base)
	b.AddField(point.Bool("ok", false))
	b.AddField(point.Float("neg", -0.5))
	b.AddField(point.String("empty", ""))
	return []*point.Point{a, b}
}

func TestDatawayWireFormat(t *testing.T) {
	for _, gz := range []bool{true, false} {
		t.Run("gzip="+strconv.FormatBool(gz), func(t *testing.T) {
			s := newSink(t, nil)
			out := OutputConfig{
				Type:    TypeDataway,
				URL:     s.srv.URL + "/?token=tkn_0123456789abcdef&extra=1",
				Gzip:    &gz,
				Headers: map[string]string{"X-Custom": "yes"},
			}
			u := startUploader(t, testConfig(out), t.TempDir())
			metrics, traces := richPoints("jvm", 0), richPoints("span", 10)
			feed(t, u, point.Metric, metrics)
			feed(t, u, point.Tracing, traces)
			stopUploader(t, u)

			if d := diffPoints(s.delivered("/v1/write/metric"), metrics); d != "" {
				t.Fatalf("metric: %s", d)
			}
			if d := diffPoints(s.delivered("/v1/write/tracing"), traces); d != "" {
				t.Fatalf("tracing: %s", d)
			}
			for _, r := range s.requests() {
				checkDatawayRequest(t, r, gz)
			}
		})
	}
}

func checkDatawayRequest(t *testing.T, r capturedRequest, gz bool) {
	t.Helper()
	if r.Method != http.MethodPost {
		t.Errorf("method %s", r.Method)
	}
	if r.Raw != "token=tkn_0123456789abcdef&extra=1" {
		t.Errorf("query %q: the original query (token) must be kept as is", r.Raw)
	}
	want := map[string]string{
		"Content-Type":   "application/line-protocol",
		"X-Points":       strconv.Itoa(len(r.Points)),
		"User-Agent":     "apmkit/" + version.Version + " (",
		"X-Custom":       "yes",
		"X-Datakit-Info": "; " + version.Version,
	}
	for k, v := range want {
		got := r.Header.Get(k)
		ok := got == v || (k == "User-Agent" && strings.HasPrefix(got, v)) || (k == "X-Datakit-Info" && strings.HasSuffix(got, v))
		if !ok {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if got := r.Header.Get("Content-Encoding"); (got == "gzip") != gz {
		t.Errorf("Content-Encoding = %q with gzip=%v", got, gz)
	}
}

func TestInfluxDBWireFormat(t *testing.T) {
	s := newSink(t, nil)
	out := fastRetries(OutputConfig{
		Type: TypeInfluxDB, URL: s.srv.URL + "/influx/", Database: "apm db", RetentionPolicy: "autogen",
		Username: "writer", Password: "s3cret:pw",
	})
	u := startUploader(t, testConfig(out), t.TempDir())
	pts := richPoints("jvm", 0)
	feed(t, u, point.Metric, pts)
	feed(t, u, point.Tracing, richPoints("span", 5))
	stopUploader(t, u)

	reqs := s.requests()
	if len(reqs) < 2 {
		t.Fatalf("%d requests, want CREATE DATABASE then writes", len(reqs))
	}
	checkCreateDatabase(t, reqs[0], `CREATE DATABASE "apm db"`)
	for _, r := range reqs[1:] {
		if r.Method != http.MethodPost || r.Path != "/influx/write" {
			t.Errorf("%s %s, want POST /influx/write", r.Method, r.Path)
		}
		if r.Raw != "db=apm+db&precision=ns&rp=autogen" {
			t.Errorf("query %q", r.Raw)
		}
		wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("writer:s3cret:pw"))
		if got := r.Header.Get("Authorization"); got != wantAuth {
			t.Errorf("Authorization = %q, want %q", got, wantAuth)
		}
		if r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("headers %v", r.Header)
		}
	}
	// InfluxDB has no categories: both land on /write, each batch whole.
	if got := len(s.delivered("")); got != 4 {
		t.Fatalf("delivered %d points, want 4", got)
	}
	var metric []*point.Point
	for _, p := range s.delivered("") {
		if p.Name == "jvm" || strings.HasPrefix(p.Name, "jvm ") {
			metric = append(metric, p)
		}
	}
	if d := diffPoints(metric, pts); d != "" {
		t.Fatal(d)
	}
	if d := u.Outputs()[0]; d != "influxdb: "+s.srv.URL+"/influx/ db=apm db" {
		t.Errorf("Outputs() = %q", d)
	}
}

// checkCreateDatabase checks InfluxDB 1.x's CREATE DATABASE: a form POSTed to /query with
// the writes' basic auth, not gzipped.
func checkCreateDatabase(t *testing.T, r capturedRequest, stmt string) {
	t.Helper()
	form, err := url.ParseQuery(string(r.Body))
	if r.Method != http.MethodPost || r.Path != "/influx/query" || err != nil || form.Get("q") != stmt {
		t.Errorf("%s %s %q (%v), want POST /influx/query q=%s", r.Method, r.Path, r.Body, err, stmt)
	}
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("writer:s3cret:pw"))
	if r.Header.Get("Authorization") != wantAuth || r.Header.Get("Content-Encoding") != "" ||
		r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("CREATE DATABASE headers %v", r.Header)
	}
}

func TestInfluxDB2WireFormat(t *testing.T) {
	s := newSink(t, nil)
	off := false
	out := fastRetries(OutputConfig{
		Type: TypeInfluxDB2, URL: s.srv.URL, Org: "my org", Bucket: "apm", Token: "tok==", Gzip: &off,
	})
	u := startUploader(t, testConfig(out), t.TempDir())
	pts := richPoints("span", 0)
	feed(t, u, point.Tracing, pts)
	stopUploader(t, u)

	reqs := s.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "/api/v2/write" || r.Raw != "bucket=apm&org=my+org&precision=ns" {
		t.Errorf("%s %s?%s", r.Method, r.Path, r.Raw)
	}
	if got := r.Header.Get("Authorization"); got != "Token tok==" {
		t.Errorf("Authorization = %q", got)
	}
	if got := r.Header.Get("Content-Encoding"); got != "" {
		t.Errorf("Content-Encoding = %q with gzip off", got)
	}
	if d := diffPoints(r.Points, pts); d != "" {
		t.Fatal(d)
	}
}

func TestDatawayEndpointsKeepPathPrefix(t *testing.T) {
	s, err := newDatawaySender(OutputConfig{URL: "https://proxy.example/guance/?token=tkn_1&a=b"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	want := map[point.Category]string{
		point.Metric:  "https://proxy.example/guance/v1/write/metric?token=tkn_1&a=b",
		point.Tracing: "https://proxy.example/guance/v1/write/tracing?token=tkn_1&a=b",
		point.Logging: "https://proxy.example/guance/v1/write/logging?token=tkn_1&a=b",
		point.Object:  "https://proxy.example/guance/v1/write/object?token=tkn_1&a=b",
	}
	for c, w := range want {
		if got := s.endpoints[c]; got != w {
			t.Errorf("%s: %s, want %s", c, got, w)
		}
	}
}

func TestSecretsMasked(t *testing.T) {
	cases := map[string]string{
		"https://openway.guance.com?token=tkn_0123456789abcdef": "https://openway.guance.com?token=tkn_****cdef",
		"http://user:pass@127.0.0.1:8086/":                      "http://user:****@127.0.0.1:8086/",
		"https://h?token=short":                                 "https://h?token=****",
	}
	for in, want := range cases {
		if got := maskURL(in); got != want {
			t.Errorf("maskURL(%q) = %q, want %q", in, got, want)
		}
	}
}
