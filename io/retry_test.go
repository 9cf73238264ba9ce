package io

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
)

func TestRetry500Then200DeliversOnce(t *testing.T) {
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		if n == 0 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	u := startUploader(t, testConfig(datawayOutput(s, "tkn_1")), t.TempDir())
	feed(t, u, point.Tracing, seqPoints("span", 0, 10))
	waitFor(t, "delivery", func() bool { return s.deliveredCount() >= 10 })
	stopUploader(t, u)

	wantSeq(t, seqOf(t, s.delivered("")), 0, 10)
	st := outputStats(u, "dataway")
	if st.Retries != 1 || st.PointsSent != 10 || st.BatchesSent != 1 || st.PermanentErrors != 0 || st.SpillBatches != 0 {
		t.Fatalf("stats %+v, want 1 retry, 10 points in 1 batch, nothing spilled", st)
	}
	if got := len(s.requests()); got != 2 {
		t.Fatalf("%d requests, want 2 (one 500, one 204)", got)
	}
}

func TestRetry429HonoursRetryAfter(t *testing.T) {
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	out := datawayOutput(s, "tkn_1")
	out.RetryMax = 20 * time.Millisecond // caps the server's 1s so the test stays quick
	u := startUploader(t, testConfig(out), t.TempDir())
	feed(t, u, point.Metric, seqPoints("m", 0, 3))
	waitFor(t, "delivery", func() bool { return s.deliveredCount() >= 3 })
	stopUploader(t, u)
	wantSeq(t, seqOf(t, s.delivered("")), 0, 3)
	if st := outputStats(u, "dataway"); st.Retries != 1 || st.PermanentErrors != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRetryDelay(t *testing.T) {
	w := &outputWorker{cfg: OutputConfig{RetryInitial: time.Millisecond, RetryMax: time.Second}}
	bo := backoff{initial: time.Millisecond, max: time.Second}
	if d := w.retryDelay(&bo, &sendError{retryAfter: 20 * time.Millisecond}); d != 20*time.Millisecond {
		t.Errorf("Retry-After 20ms: delay %v", d)
	}
	if d := w.retryDelay(&bo, &sendError{retryAfter: time.Hour}); d != time.Second {
		t.Errorf("Retry-After 1h: delay %v, want capped at retry_max 1s", d)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"3":                             3 * time.Second,
		"":                              0,
		"-1":                            0,
		"soon":                          0,
		"Fri, 02 Jan 2026 03:04:15 GMT": 10 * time.Second,
		"Fri, 02 Jan 2026 03:04:00 GMT": 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestBackoffGrowsWithJitterWithinBounds(t *testing.T) {
	bo := backoff{initial: 10 * time.Millisecond, max: 80 * time.Millisecond}
	ceilings := []time.Duration{10, 20, 40, 80, 80, 80}
	for i, c := range ceilings {
		c *= time.Millisecond
		d := bo.next()
		if d < c/2 || d > c {
			t.Fatalf("attempt %d: delay %v outside [%v, %v]", i, d, c/2, c)
		}
	}
	bo.reset()
	if d := bo.next(); d > 10*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
}

// A 4xx other than 400, 401, 403, 408, 413, 429 and InfluxDB's "not found" and "partial
// write" answers drops the batch: the same request would fail the same way.
func TestPermanent4xxDroppedNotRetried(t *testing.T) {
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) int {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write([]byte(`{"error":"field type conflict: input field \"seq\" is type float"}`))
		return 0
	})
	cfg := testConfig(datawayOutput(s, "tkn_1"))
	cfg.BatchMaxPoints = 5
	u := startUploader(t, cfg, t.TempDir())
	feed(t, u, point.Metric, seqPoints("m", 0, 10))
	waitFor(t, "two rejected batches", func() bool { return outputStats(u, "dataway").PermanentErrors >= 2 })
	stopUploader(t, u)

	st := outputStats(u, "dataway")
	if st.PermanentErrors != 2 || st.Dropped["permanent"] != 10 || st.Retries != 0 || st.SpillBatches != 0 || st.PointsSent != 0 {
		t.Fatalf("stats %+v, want 2 permanent errors, 10 dropped, no retry, nothing spilled", st)
	}
	if got := len(s.requests()); got != 2 {
		t.Fatalf("%d requests, want 2: a 422 must be neither retried nor split", got)
	}
	if !strings.Contains(st.LastError, "422") || !strings.Contains(st.LastError, "field type conflict") {
		t.Fatalf("last error %q should carry the status and the body", st.LastError)
	}
}

func TestNetworkErrorRetriedThenSpilled(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	url := closed.URL
	closed.Close() // connection refused from now on
	out := fastRetries(OutputConfig{Type: TypeDataway, URL: url + "?token=tkn_0123456789abcdef"})
	out.RetryMaxElapsed = 30 * time.Millisecond
	dataDir := t.TempDir()
	u := startUploader(t, testConfig(out), dataDir)
	feed(t, u, point.Tracing, seqPoints("span", 0, 20))
	waitFor(t, "a spilled batch", func() bool {
		st := outputStats(u, "dataway")
		return st.SpillBatches > 0 && st.Retries > 0
	})
	stopUploader(t, u)

	wantSeq(t, seqOf(t, spilledPoints(t, dataDir, "dataway")), 0, 20)
	st := outputStats(u, "dataway")
	if len(st.Dropped) != 0 || st.PointsSent != 0 {
		t.Fatalf("stats %+v: nothing may be dropped or sent", st)
	}
	if strings.Contains(st.LastError, "0123456789abcdef") || !strings.Contains(st.LastError, "tkn_****cdef") {
		t.Fatalf("last error must mask the token: %q", st.LastError)
	}
}
