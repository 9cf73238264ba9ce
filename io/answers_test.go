package io

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
	"github.com/prometheus/client_golang/prometheus"
)

func TestClassifyStatus(t *testing.T) {
	cases := []struct {
		status  int
		message string
		want    errClass
	}{
		{401, "authorization failed", classConfig},
		{403, `"bob" user is not authorized to write to database "apm"`, classConfig},
		{404, `database not found: "apm"`, classConfig},
		{404, `bucket "apm" not found`, classConfig},
		{404, `organization name "shop" not found`, classConfig},
		{500, "retention policy not found: nope", classConfig},
		{404, "404 page not found", classPermanent},
		{400, `partial write: unable to parse 'm v=1u 1': invalid number dropped=0`, classMalformed},
		{400, "unexpected EOF", classMalformed},
		{413, "", classMalformed},
		{422, "failure writing points to database: partial write: points beyond retention policy dropped=1", classMalformed},
		{422, "unprocessable", classPermanent},
		{408, "", classRetry},
		{429, "", classRetry},
		{503, "", classRetry},
		{409, "", classPermanent},
	}
	for _, c := range cases {
		if got := classifyStatus(c.status, c.message); got != c.want {
			t.Errorf("%d %q: class %d, want %d", c.status, c.message, got, c.want)
		}
	}
	if got := quoteIdent(`a "b"\c`); got != `"a \"b\"\\c"` {
		t.Errorf("quoteIdent: %s", got)
	}
}

func TestServerMessage(t *testing.T) {
	h := http.Header{}
	if got := serverMessage([]byte(`{"error":"database not found: \"apm\""}`), h); got != `database not found: "apm"` {
		t.Errorf("influxdb 1.x: %q", got)
	}
	if got := serverMessage([]byte(`{"code":"not found","message":"bucket \"apm\" not found"}`), h); got != `bucket "apm" not found` {
		t.Errorf("influxdb 2.x: %q", got)
	}
	h.Set("X-Influxdb-Error", "from the header")
	if got := serverMessage(nil, h); got != "from the header" {
		t.Errorf("header: %q", got)
	}
	if got := serverMessage([]byte("plain\ntext"), http.Header{}); got != "plain text" {
		t.Errorf("plain: %q", got)
	}
}

// markedPoints are seqPoints whose seqs in bad carry the tag mark=bad.
func markedPoints(n int, bad ...int) []*point.Point {
	pts := seqPoints("m", 0, n)
	for _, i := range bad {
		pts[i].SetTag("mark", "bad")
	}
	return pts
}

// goodSeqs is 0..n-1 without bad, in order.
func goodSeqs(n int, bad ...int) []int64 {
	var out []int64
	for i := range n {
		if !slices.Contains(bad, i) {
			out = append(out, int64(i))
		}
	}
	return out
}

func TestMalformedLinesDroppedAloneOthersDelivered(t *testing.T) {
	var sinkRef *sink
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		if bytes.Contains(sinkRef.requests()[n].Body, []byte("mark=bad")) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"partial write: field type conflict dropped=1"}`))
			return 0
		}
		return http.StatusNoContent
	})
	sinkRef = s
	logs, log := newLogBuffer(t)
	reg := prometheus.NewRegistry()
	bad := []int{3, 4, 11, 19}
	u := startUploaderWith(t, testConfig(datawayOutput(s, "tkn_1")), t.TempDir(), log, reg)
	feed(t, u, point.Metric, markedPoints(20, bad...))
	waitFor(t, "every point delivered or dropped", func() bool {
		st := outputStats(u, "dataway")
		return st.PointsSent+st.Dropped["malformed"] == 20
	})
	if v := gathered(t, reg)["apmkit_io_points_dropped_total{category=metric,output=dataway,reason=malformed}"]; v != 4 {
		t.Errorf("apmkit_io_points_dropped_total{reason=malformed} = %v, want 4", v)
	}
	stopUploader(t, u) // Stop unregisters the metrics: they are read before

	if got, want := seqOf(t, s.delivered("")), goodSeqs(20, bad...); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	st := outputStats(u, "dataway")
	if st.PointsSent != 16 || len(st.Dropped) != 1 || st.Dropped["malformed"] != 4 || st.PermanentErrors != 4 ||
		st.SpillBatches != 0 || st.Retries != 0 || st.State != "ok" {
		t.Fatalf("stats %+v, want 16 sent, 4 dropped as malformed", st)
	}
	// One line at once, the rest summed on a line a minute later or at Stop: the lines add
	// up to the counter.
	if lines := logs.find("ERROR", "reason=malformed", "field type conflict", "url="); len(lines) != 2 || pointsLogged(t, lines) != 4 {
		t.Errorf("ERROR lines about the malformed lines %q: want the first at once and one summary at Stop, 4 points in all", lines)
	}
}

func TestTooLargeSplitUntilItFits(t *testing.T) {
	var sinkRef *sink
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		body := sinkRef.requests()[n].Body
		if bytes.Count(body, []byte{'\n'}) > 3 || bytes.Contains(body, []byte("mark=bad")) {
			return http.StatusRequestEntityTooLarge
		}
		return http.StatusNoContent
	})
	sinkRef = s
	u := startUploader(t, testConfig(datawayOutput(s, "tkn_1")), t.TempDir())
	feed(t, u, point.Tracing, markedPoints(10, 6))
	waitFor(t, "every point delivered or dropped", func() bool {
		st := outputStats(u, "dataway")
		return st.PointsSent+st.Dropped["too_large"] == 10
	})
	stopUploader(t, u)

	if got, want := seqOf(t, s.delivered("")), goodSeqs(10, 6); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	if st := outputStats(u, "dataway"); st.PointsSent != 9 || len(st.Dropped) != 1 || st.Dropped["too_large"] != 1 {
		t.Fatalf("stats %+v, want 9 sent and the one line too large alone dropped", st)
	}
}

func TestConfigErrorsKeepBatchesUntilFixed(t *testing.T) {
	cases := []struct {
		name    string
		out     func(s *sink) OutputConfig
		status  int
		body    string
		logged  []string // in the ERROR line, besides the URL
		urlText string
	}{
		{"dataway 401", func(s *sink) OutputConfig { return datawayOutput(s, "tkn_0123456789abcdef") },
			401, `{"error":"invalid token"}`, []string{"HTTP 401", "invalid token", "check the credentials"}, "tkn_****cdef"},
		{"dataway 403", func(s *sink) OutputConfig { return datawayOutput(s, "tkn_0123456789abcdef") },
			403, `{"error":"forbidden"}`, []string{"HTTP 403", "forbidden"}, "tkn_****cdef"},
		{"influxdb database not found", func(s *sink) OutputConfig {
			return fastRetries(OutputConfig{Type: TypeInfluxDB, URL: s.srv.URL, Database: "apm", SkipDatabaseCreation: true})
		}, 404, `{"error":"database not found: \"apm\""}`, []string{"HTTP 404", `database not found: \"apm\"`, "skip_database_creation"}, ""},
		{"influxdb retention policy not found", func(s *sink) OutputConfig {
			return fastRetries(OutputConfig{Type: TypeInfluxDB, URL: s.srv.URL, Database: "apm", RetentionPolicy: "nope", SkipDatabaseCreation: true})
		}, 500, `{"error":"retention policy not found: nope"}`, []string{"HTTP 500", "retention policy not found", "retention_policy"}, ""},
		{"influxdb2 bucket not found", func(s *sink) OutputConfig {
			return fastRetries(OutputConfig{Type: TypeInfluxDB2, URL: s.srv.URL, Org: "shop", Bucket: "apm", Token: "secret-token-0123"})
		}, 404, `{"code":"not found","message":"bucket \"apm\" not found"}`, []string{"HTTP 404", `bucket \"apm\" not found`, "create the bucket"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var fixed atomic.Bool
			s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
				if fixed.Load() {
					return http.StatusNoContent
				}
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.body))
				return 0
			})
			out := c.out(s)
			logs, log := newLogBuffer(t)
			reg := prometheus.NewRegistry()
			u := startUploaderWith(t, testConfig(out), t.TempDir(), log, reg)
			name := out.Type
			feed(t, u, point.Metric, seqPoints("m", 0, 10))
			waitFor(t, "the batch spilled", func() bool {
				st := outputStats(u, name)
				return st.SpilledBatches == 1 && st.State == "config_error"
			})
			st := outputStats(u, name)
			if len(st.Dropped) != 0 || st.PointsSent != 0 || st.PermanentErrors != 0 {
				t.Fatalf("stats %+v: a configuration error must keep the batch", st)
			}
			urlText := c.urlText
			if urlText == "" {
				urlText = s.srv.URL
			}
			errs := logs.find("ERROR")
			if len(errs) != 1 || len(logs.find("ERROR", append(c.logged, "configuration error", "output="+name, urlText)...)) != 1 {
				t.Fatalf("want one ERROR line naming the output, %s and %q; got %q", urlText, c.logged, errs)
			}
			m := gathered(t, reg)
			if m["apmkit_io_output_state{output="+name+",state=config_error}"] != 1 || m["apmkit_io_output_state{output="+name+",state=ok}"] != 0 {
				t.Errorf("apmkit_io_output_state: %v", m)
			}
			if !hasLastErrorMetric(m, name, fmt.Sprintf("HTTP %d", c.status)) {
				t.Errorf("apmkit_io_output_last_error_timestamp_seconds lacks the error: %v", m)
			}

			fixed.Store(true)
			waitFor(t, "delivery once fixed", func() bool { return outputStats(u, name).PointsSent == 10 })
			stopUploader(t, u)
			wantSeq(t, seqOf(t, s.delivered("")), 0, 10)
			st = outputStats(u, name)
			if st.State != "ok" || st.SpillBatches != 0 || len(st.Dropped) != 0 {
				t.Fatalf("stats %+v after the fix", st)
			}
			if len(logs.find("ERROR")) != 1 || len(logs.find("INFO", "output delivers again", "was=config_error")) != 1 {
				t.Errorf("want the recovery said once and no other ERROR")
			}
		})
	}
}

func hasLastErrorMetric(m map[string]float64, output, text string) bool {
	for k, v := range m {
		if strings.HasPrefix(k, "apmkit_io_output_last_error_timestamp_seconds{") &&
			strings.Contains(k, "output="+output) && strings.Contains(k, text) && v > 0 {
			return true
		}
	}
	return false
}

// gathered maps "name{label=value,...}" to values, like TestStatsAndMetricsAgree.
func gathered(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			values[f.GetName()+labelsOf(m)] += valueOf(m)
		}
	}
	return values
}

// The first failed attempt is logged with its cause at once, not after retry_max_elapsed.
func TestFirstFailureLoggedAtOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // connection refused from now on
	out := fastRetries(OutputConfig{Type: TypeDataway, URL: "http://" + addr + "?token=tkn_0123456789abcdef"})
	out.RetryInitial, out.RetryMax, out.RetryMaxElapsed = time.Hour, time.Hour, 2*time.Hour
	logs, log := newLogBuffer(t)
	dataDir := t.TempDir()
	u := startUploaderWith(t, testConfig(out), dataDir, log, prometheus.NewRegistry())
	feed(t, u, point.Tracing, seqPoints("span", 0, 5))
	waitFor(t, "the failure logged", func() bool { return len(logs.find("", "connection refused")) > 0 })

	lines := logs.find("WARN", "connection refused", "output=dataway", addr, "tkn_****cdef")
	st := outputStats(u, "dataway")
	if len(lines) != 1 || st.SpilledBatches != 0 || st.State != "failing" || !strings.Contains(st.LastError, "connection refused") {
		t.Fatalf("want one WARN naming the output, its masked URL and the cause while the batch is still retried (not spilled); lines %q, stats %+v", logs.find(""), st)
	}
	if len(logs.find("", "0123456789abcdef")) != 0 {
		t.Fatal("the token leaked into the log")
	}
	stopUploader(t, u) // cuts the hour-long retry short: the batch goes to the spill
	wantSeq(t, seqOf(t, spilledPoints(t, dataDir, "dataway")), 0, 5)
}

// When the output fails in the middle of a split batch, the next attempt goes on with the
// pieces not yet delivered: no line is sent twice, none is lost, from memory or the spill.
func TestSplitBatchResumesAfterAFailure(t *testing.T) {
	for _, spillFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("spilled=%v", spillFirst), func(t *testing.T) {
			var down atomic.Bool
			down.Store(spillFirst)
			var delivered atomic.Int32
			var sinkRef *sink
			s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
				switch {
				case down.Load():
					return http.StatusServiceUnavailable
				case bytes.Contains(sinkRef.requests()[n].Body, []byte("mark=bad")):
					return http.StatusBadRequest
				case delivered.Add(1) == 2: // the second good piece fails, once
					return http.StatusServiceUnavailable
				}
				return http.StatusNoContent
			})
			sinkRef = s
			out := datawayOutput(s, "tkn_1")
			out.RetryMaxElapsed = 20 * time.Millisecond
			u := startUploader(t, testConfig(out), t.TempDir())
			bad := []int{3, 4, 11, 19}
			feed(t, u, point.Metric, markedPoints(20, bad...))
			if spillFirst {
				waitFor(t, "the batch spilled", func() bool { return outputStats(u, "dataway").SpillBatches == 1 })
				down.Store(false)
			}
			waitFor(t, "every point delivered or dropped", func() bool {
				st := outputStats(u, "dataway")
				return st.PointsSent+st.Dropped["malformed"] == 20
			})
			stopUploader(t, u)

			if got, want := seqOf(t, s.delivered("")), goodSeqs(20, bad...); !slices.Equal(got, want) {
				t.Fatalf("delivered %v, want %v once each, in order", got, want)
			}
			st := outputStats(u, "dataway")
			if st.PointsSent != 16 || st.Dropped["malformed"] != 4 || len(st.Dropped) != 1 || st.SpillBatches != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}
