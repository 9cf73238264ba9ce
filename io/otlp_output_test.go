package io

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apmkit/apmkit/internal/otlptest"
	"github.com/apmkit/apmkit/point"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// spanRows are n entry spans of transactions t<from>..., named op<i>, as line-protocol
// points.
func spanRows(t *testing.T, from, n int) []*point.Point {
	t.Helper()
	var b strings.Builder
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, "pinpoint,operation=op%d,service=shop,span_type=entry trace_id=\"t%d\",span_id=\"%d\",parent_id=\"0\",start=%di,duration=1i %d\n", i, i, i+1, i, i*1000)
	}
	pts, err := point.Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return pts
}

func otlpOutput(protocol, endpoint string) OutputConfig {
	return fastRetries(OutputConfig{Type: TypeOTLP, Protocol: protocol, Endpoint: endpoint, Insecure: true,
		Headers: map[string]string{"Authorization": "Bearer secret-token-1234"}})
}

func TestOTLPGRPCDelivers(t *testing.T) {
	srv := &otlptest.Receiver{}
	addr := srv.StartGRPC(t, otlptest.GRPCOptions{})
	u := startUploader(t, testConfig(otlpOutput(ProtocolGRPC, addr)), t.TempDir())
	feed(t, u, point.Tracing, spanRows(t, 0, 3))
	jvm, _ := point.Parse([]byte("pinpoint_jvm,agent_id=a,service=shop JvmMemoryHeapUsed=1i,TotalThreadCount=8i 1\n"))
	feed(t, u, point.Metric, jvm)
	stopUploader(t, u)

	got := srv.Received()
	if strings.Join(got.Spans, ",") != "op0,op1,op2" || fmt.Sprint(got.Points) != "map[jvm.memory.used:1 jvm.thread.count:1]" {
		t.Fatalf("received spans %v and data points %v", got.Spans, got.Points)
	}
	// sha256("t0")[:16], computed with sha256sum.
	if got.TraceIDs[0] != "512f26ada3c3d634ac3c6b12b7b33cb5" {
		t.Errorf("trace id %s", got.TraceIDs[0])
	}
	if md := got.Metadata[0].Get("authorization"); len(md) != 1 || md[0] != "Bearer secret-token-1234" {
		t.Errorf("authorization metadata %v", md)
	}
	if got.Encodings[0] != "gzip" {
		t.Errorf("grpc-encoding %q, want gzip", got.Encodings[0])
	}
	st := outputStats(u, "otlp")
	if st.PointsSentBy["tracing"] != 3 || st.PointsSentBy["metric"] != 1 || len(st.Dropped) != 0 || st.URL != addr {
		t.Fatalf("stats %+v", st)
	}
}

// A server that is down is retried; a request it refuses as bad data is split until only
// the rows it refuses alone are dropped; a partial success drops the rejected spans; rows
// that are not spans are dropped as unmapped.
func TestOTLPGRPCAnswers(t *testing.T) {
	srv := &otlptest.Receiver{Answer: func(n int, _ string, names []string) (int64, error) {
		switch {
		case n <= 2:
			return 0, status.Error(codes.Unavailable, "starting")
		case slices.Contains(names, "op5"):
			return 0, status.Error(codes.InvalidArgument, "op5 is bad")
		case slices.Contains(names, "op9"):
			return 1, nil // the first span of the request
		}
		return 0, nil
	}}
	addr := srv.StartGRPC(t, otlptest.GRPCOptions{})
	u := startUploader(t, testConfig(otlpOutput(ProtocolGRPC, addr)), t.TempDir())
	rows := spanRows(t, 0, 10)
	other, _ := point.Parse([]byte("other_measurement v=1i 1\n"))
	feed(t, u, point.Tracing, append(rows, other...))
	waitFor(t, "the batch's delivery", func() bool {
		st := outputStats(u, "otlp")
		return st.PointsSentBy["tracing"]+st.Dropped["malformed"]+st.Dropped["rejected"]+st.Dropped["unmapped"] == 11
	})
	stopUploader(t, u)

	st := outputStats(u, "otlp")
	want := map[string]int64{"malformed": 1, "rejected": 1, "unmapped": 1}
	if fmt.Sprint(st.Dropped) != fmt.Sprint(want) || st.PointsSentBy["tracing"] != 8 || st.Retries < 2 {
		t.Fatalf("dropped %v, sent %d, retries %d; want %v, 8, >= 2", st.Dropped, st.PointsSentBy["tracing"], st.Retries, want)
	}
	if spans := srv.Received().Spans; len(spans) != 8 || slices.Contains(spans, "op5") {
		t.Fatalf("received %v", spans)
	}
}

// A backend without a metrics service (Jaeger) is a configuration error: the batch is
// kept in the spill and the log says what to change.
func TestOTLPMetricsUnimplementedIsConfigError(t *testing.T) {
	srv := &otlptest.Receiver{}
	addr := srv.StartGRPC(t, otlptest.GRPCOptions{NoMetrics: true})
	logs, log := newLogBuffer(t)
	u := startUploaderWith(t, testConfig(otlpOutput(ProtocolGRPC, addr)), t.TempDir(), log, nil)
	jvm, _ := point.Parse([]byte("pinpoint_jvm,service=shop TotalThreadCount=8i 1\n"))
	feed(t, u, point.Metric, jvm)
	waitFor(t, "the spill", func() bool { return outputStats(u, "otlp").SpillBatches == 1 })
	st := outputStats(u, "otlp")
	if st.State != "config_error" || !strings.Contains(st.LastError, "Unimplemented") {
		t.Fatalf("state %s, last error %q", st.State, st.LastError)
	}
	if len(logs.find("ERROR", `categories = [\"tracing\"]`)) == 0 {
		t.Fatal("no ERROR line with the categories hint")
	}
}

func TestOTLPHTTP(t *testing.T) {
	srv := &otlptest.Receiver{Answer: func(n int, signal string, names []string) (int64, error) {
		switch {
		case signal == otlptest.Metrics:
			return 0, &otlptest.HTTPError{Status: http.StatusNotFound}
		case n == 1:
			return 0, &otlptest.HTTPError{Status: http.StatusServiceUnavailable, RetryAfter: "0"}
		case slices.Contains(names, "op2"):
			return 0, &otlptest.HTTPError{Status: http.StatusBadRequest}
		}
		return 0, nil
	}}
	base := srv.StartHTTP(t)
	u := startUploader(t, testConfig(otlpOutput(ProtocolHTTP, base+"/")), t.TempDir())
	feed(t, u, point.Tracing, spanRows(t, 0, 4))
	waitFor(t, "the spans", func() bool { return len(srv.Received().Spans) == 3 })
	jvm, _ := point.Parse([]byte("pinpoint_jvm,service=shop TotalThreadCount=8i 1\n"))
	feed(t, u, point.Metric, jvm)
	waitFor(t, "the metric batch in the spill", func() bool { return outputStats(u, "otlp").SpillBatches == 1 })

	st := outputStats(u, "otlp")
	if fmt.Sprint(st.Dropped) != "map[malformed:1]" || st.PointsSentBy["tracing"] != 3 || st.State != "config_error" {
		t.Fatalf("stats %+v", st)
	}
	h := srv.Received().Headers[0]
	if h.Get("Authorization") != "Bearer secret-token-1234" || h.Get("Content-Encoding") != "gzip" || !strings.HasPrefix(h.Get("User-Agent"), "apmkit/") {
		t.Fatalf("headers %v", h)
	}
	if st.URL != base+"/" {
		t.Fatalf("location %q", st.URL)
	}
}

// TLS with tls_ca_file: the server's certificate is trusted through the CA file only, over
// gRPC and HTTP; without the file the same server is refused.
func TestOTLPTLS(t *testing.T) {
	srv := &otlptest.Receiver{}
	https := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(https.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: https.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := srv.StartGRPC(t, otlptest.GRPCOptions{Creds: credentials.NewTLS(&tls.Config{Certificates: https.TLS.Certificates})})

	tlsOut := func(ca string) OutputConfig {
		o := otlpOutput(ProtocolGRPC, addr)
		o.Insecure, o.TLSCAFile, o.Categories = false, ca, []string{"tracing"}
		return o
	}
	u := startUploader(t, testConfig(tlsOut(caFile)), t.TempDir())
	feed(t, u, point.Tracing, spanRows(t, 0, 2))
	stopUploader(t, u)
	if spans := srv.Received().Spans; len(spans) != 2 {
		t.Fatalf("received %v over TLS", spans)
	}

	u = startUploader(t, testConfig(tlsOut("")), t.TempDir())
	feed(t, u, point.Tracing, spanRows(t, 2, 1))
	waitFor(t, "a failed attempt", func() bool { return outputStats(u, "otlp").State == "failing" })
	if st := outputStats(u, "otlp"); !strings.Contains(st.LastError, "certificate") {
		t.Fatalf("without the CA: %q", st.LastError)
	}
	stopUploader(t, u)
}
