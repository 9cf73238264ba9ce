package main

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
)

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses; utime and stime are fields 14, 15.
	stat := "4242 (apm kit (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 57 0 0 20 0 9 0 100 200000 300\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if got != 3.07 {
		t.Errorf("cpu %v s, want 3.07 (307 ticks of 1/100 s)", got)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("short stat: no error")
	}
}

func TestParseVmHWM(t *testing.T) {
	status := "Name:\tapmkit\nVmPeak:\t 900000 kB\nVmHWM:\t  153600 kB\nVmRSS:\t 100000 kB\n"
	got, err := parseVmHWM([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if got != 150 {
		t.Errorf("peak RSS %v MiB, want 150", got)
	}
	if _, err := parseVmHWM([]byte("Name:\tx\n")); err == nil {
		t.Error("no VmHWM: no error")
	}
}

func TestParseBusyCPU(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	stat := "cpu  100 5 50 9000 30 1 4 10 7 0\ncpu0 50 2 25 4500 15 0 2 5 3 0\n"
	got, err := parseBusyCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 1.70; got != want { // 100+5+50+1+4+10 ticks: idle, iowait and guest left out
		t.Errorf("busy %v s, want %v", got, want)
	}
	if _, err := parseBusyCPU([]byte("intr 1 2 3")); err == nil {
		t.Error("no cpu line: no error")
	}
}

// lpSpan is one line of apmkit's span schema.
func lpSpan(t *testing.T, spanType, traceID, spanID, status string) []byte {
	t.Helper()
	p := point.New("pinpoint", time.Unix(1700000000, 0).UnixNano())
	p.SetTag("span_type", spanType)
	p.SetTag("status", status)
	p.AddField(point.String("trace_id", traceID))
	p.AddField(point.String("span_id", spanID))
	p.AddField(point.String("message", `{"note":"span_type=entry inside a field must not count"}`))
	b, err := point.AppendLine(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSinkCountsEntriesAndDuplicates(t *testing.T) {
	s, err := startSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var body bytes.Buffer
	for _, l := range [][]byte{
		lpSpan(t, "entry", "a^1^1", "10", "ok"),
		lpSpan(t, "local", "a^1^1", "11", "ok"),
		lpSpan(t, "entry", "a^1^1", "20", "error"), // the child span of the same trace
		lpSpan(t, "exit", "a^1^1", "21", "ok"),
		lpSpan(t, "entry", "a^1^2", "30", "ok"),
		lpSpan(t, "entry", "a^1^1", "10", "ok"), // sent twice
	} {
		body.Write(l)
	}
	post(t, s.url+"/v1/write/tracing?token=x", body.Bytes())
	post(t, s.url+"/v1/write/metric?token=x", []byte("pinpoint_jvm,agent_id=a x=1i 1\n"))
	c := s.counts()
	want := sinkCounts{Requests: 2, Points: map[string]int64{"tracing": 6, "metric": 1}, Entries: 4, EntryErrors: 1, Dups: 1, Traces: 2}
	if c.Requests != want.Requests || c.Entries != want.Entries || c.EntryErrors != want.EntryErrors ||
		c.Dups != want.Dups || c.Traces != want.Traces || c.BadLines != 0 ||
		c.Points["tracing"] != 6 || c.Points["metric"] != 1 {
		t.Errorf("counts %+v, want %+v", c, want)
	}
	s.reset()
	if c := s.counts(); c.Entries != 0 || c.Requests != 0 || len(c.Points) != 0 {
		t.Errorf("after reset %+v", c)
	}
}

func post(t *testing.T, url string, lp []byte) {
	t.Helper()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(lp)
	zw.Close()
	req, err := http.NewRequest(http.MethodPost, url, &gz)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Encoding", "gzip")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("sink answered %s", res.Status)
	}
}

func TestParseAPIStats(t *testing.T) {
	stats := `{"inputs":[{"input":"pinpoint","stats":{"messages":{"PSpan":7,"PSpanMessage":9},"rejected":{"consumer_error":2}}}],
		"io":{"categories":[{"category":"tracing","dropped":{"queue_full":5}},{"category":"metric"}]}}`
	var r result
	if err := parseAPIStats([]byte(stats), &r); err != nil {
		t.Fatal(err)
	}
	if r.Collector["PSpan"] != 7 || r.Rejected["consumer_error"] != 2 || r.Dropped["tracing/queue_full"] != 5 {
		t.Errorf("collector %v rejected %v dropped %v", r.Collector, r.Rejected, r.Dropped)
	}
}

func TestParseLastJSON(t *testing.T) {
	var s pploadSummary
	out := []byte("noise\n{\"spans\":3,\"events\":36,\"spans_per_s\":1.5}\n\n")
	if err := parseLastJSON(out, &s); err != nil {
		t.Fatal(err)
	}
	if s.Spans != 3 || s.Events != 36 || s.SpansPerS != 1.5 {
		t.Errorf("%+v", s)
	}
	if err := parseLastJSON([]byte("not json"), &s); err == nil {
		t.Error("no error for a non-JSON last line")
	}
}

// TestReportAgainstTargets renders a report of a floor and a full run and checks the
// figures and the verdicts against issue 7's targets.
func TestReportAgainstTargets(t *testing.T) {
	o := &options{events: 12, duration: time.Minute, drain: time.Minute, settle: 5 * time.Second, ports: 1, seed: 1}
	msgs := map[string]int64{"PSpan": 100, "PSpanChunk": 5, "PSpanMessage": 105}
	floor := &result{scenario: scenario{modeFloor, "batch", 8}, CollectorCPU: 1, PeakRSSMB: 20,
		Load: pploadSummary{Spans: 100, Events: 1_000_000, SpansPerS: 40000, Messages: msgs}, Collector: msgs}
	full := &result{scenario: scenario{modeFull, "batch", 8}, CollectorCPU: 5, PeakRSSMB: 120,
		Load:      pploadSummary{Spans: 100, Events: 1_000_000, SpansPerS: 20000, Messages: msgs},
		Collector: map[string]int64{"PSpan": 99, "PSpanChunk": 5, "PSpanMessage": 104},
		Sink:      &sinkCounts{Entries: 100}}
	rp := newReport(o, []string{"go build"}, "")
	rp.add(floor)
	rp.add(full)
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	if err := rp.write(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| batch | 8 | 40000 | 20000 | 0.50 | 1.00 | 5.00 |", // full / floor
		"0.50 (met)", "5.00 (**missed**)", "120 MB (met)", "1.0000 (met)",
		"no: PSpan 99 vs 100", "**Path measured: the full path**",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q:\n%s", want, b)
		}
	}
}

func TestFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-agents", "8,500", "-input-options", "del_message = true; sampler.sampling_rate = 1"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if o.duration != 10*time.Second || len(o.agents) != 2 || len(o.inputOptions) != 2 {
		t.Errorf("%+v", o)
	}
	for _, bad := range [][]string{{"-agents", "0"}, {"-modes", "fast"}, {"-transports", "udp"}, {"-ports", "2"}, {"-profile", "-1s"}} {
		if _, err := parseFlags(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}
