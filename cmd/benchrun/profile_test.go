package main

import (
	"bytes"
	"compress/gzip"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// testProfile encodes a gzipped CPU profile.proto with the given stacks (leaf first) and
// CPU nanoseconds, the way runtime/pprof lays it out (packed sample fields, one function
// per location but the first, which holds an inlined frame).
func testProfile(t *testing.T, stacks [][]string, ns []int64) []byte {
	t.Helper()
	strs := []string{"", "samples", "count", "cpu", "nanoseconds"}
	idx := func(s string) uint64 {
		for i, x := range strs {
			if x == s {
				return uint64(i)
			}
		}
		strs = append(strs, s)
		return uint64(len(strs) - 1)
	}
	msg := func(fields ...func([]byte) []byte) []byte {
		var b []byte
		for _, f := range fields {
			b = f(b)
		}
		return b
	}
	varint := func(n protowire.Number, v uint64) func([]byte) []byte {
		return func(b []byte) []byte {
			return protowire.AppendVarint(protowire.AppendTag(b, n, protowire.VarintType), v)
		}
	}
	bytesF := func(n protowire.Number, v []byte) func([]byte) []byte {
		return func(b []byte) []byte { return protowire.AppendBytes(protowire.AppendTag(b, n, protowire.BytesType), v) }
	}
	var out []byte
	out = bytesF(1, msg(varint(1, idx("samples")), varint(2, idx("count"))))(out)
	out = bytesF(1, msg(varint(1, idx("cpu")), varint(2, idx("nanoseconds"))))(out)
	funcs := map[string]uint64{}
	nextLoc := uint64(1)
	var locs, fns []byte
	for i, st := range stacks {
		var ids []uint64
		for j := 0; j < len(st); j++ {
			var lines []func([]byte) []byte
			names := []string{st[j]}
			if i == 0 && j == 0 && len(st) > 1 { // an inlined leaf: one location, two lines
				names = append(names, st[1])
				j++
			}
			for _, name := range names {
				id, ok := funcs[name]
				if !ok {
					id = uint64(len(funcs) + 1)
					funcs[name] = id
					fns = bytesF(5, msg(varint(1, id), varint(2, idx(name))))(fns)
				}
				lines = append(lines, bytesF(4, msg(varint(1, id), varint(2, 7))))
			}
			locs = bytesF(4, msg(append([]func([]byte) []byte{varint(1, nextLoc)}, lines...)...))(locs)
			ids = append(ids, nextLoc)
			nextLoc++
		}
		var packed []byte
		for _, id := range ids {
			packed = protowire.AppendVarint(packed, id)
		}
		vals := protowire.AppendVarint(protowire.AppendVarint(nil, 1), uint64(ns[i]))
		out = bytesF(2, msg(bytesF(1, packed), bytesF(2, vals)))(out)
	}
	out = append(append(out, locs...), fns...)
	out = varint(10, uint64(2*time.Second))(out)
	for _, s := range strs {
		out = bytesF(6, []byte(s))(out)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(out)
	zw.Close()
	return gz.Bytes()
}

func TestStageShares(t *testing.T) {
	const (
		conv   = "github.com/apmkit/apmkit/inputs/pinpoint/trace.(*Assembler).Add"
		handle = "github.com/apmkit/apmkit/inputs/pinpoint.(*spanService).SendSpan"
		grpcS  = "google.golang.org/grpc.(*Server).handleStream"
	)
	stacks := [][]string{
		{"runtime.memmove", "github.com/apmkit/apmkit/span.AppendEvent", conv, handle, grpcS},        // span encoding, inlined leaf
		{"runtime.mallocgc", "github.com/apmkit/apmkit/inputs/pinpoint/trace.convert", conv, handle}, // conversion, in malloc
		{"google.golang.org/protobuf/internal/impl.(*MessageInfo).unmarshal", "google.golang.org/protobuf/proto.Unmarshal", grpcS},
		{"compress/flate.(*compressor).deflate", "compress/gzip.(*Writer).Write", "github.com/apmkit/apmkit/io.(*batch).flush"},
		{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"},
		{"runtime.futex", "runtime.schedule", "runtime.mcall"},
		{"github.com/klauspost/compress/zstd.encode[go.shape.struct { github.com/x/y.z }]", "github.com/dgraph-io/badger/v4.(*DB).write"},
	}
	ns := []int64{10e6, 20e6, 30e6, 10e6, 20e6, 5e6, 5e6}
	p, err := parseProfile(testProfile(t, stacks, ns))
	if err != nil {
		t.Fatal(err)
	}
	if p.total != 100e6 || p.duration != 2e9 || len(p.stacks) != 7 || len(p.stacks[0]) != 5 || p.stacks[0][1] != "github.com/apmkit/apmkit/span.AppendEvent" {
		t.Fatalf("parsed total %v duration %v stacks %q", p.total, p.duration, p.stacks)
	}
	got := map[string]stageShare{}
	sum := 0.0
	for _, s := range stageShares(p) {
		got[s.Stage] = s
		sum += s.Pct
	}
	if math.Abs(sum-100) > 1e-9 {
		t.Errorf("shares add up to %v", sum)
	}
	for stage, want := range map[string][3]float64{
		stageSpan:    {10, 10, 0},
		stageTrace:   {20, 30, 20},
		stageInput:   {0, 30, 0},
		stageGRPC:    {30, 40, 0},
		stageIO:      {10, 10, 0},
		stageGC:      {20, 20, 0},
		stageRuntime: {5, 5, 0},
		stageCache:   {5, 5, 0}, // klauspost counts for its caller
	} {
		g := got[stage]
		if math.Abs(g.Pct-want[0]) > 1e-9 || math.Abs(g.CumPct-want[1]) > 1e-9 || math.Abs(g.Malloc-want[2]) > 1e-9 {
			t.Errorf("%s: %+v, want share %v cum %v malloc %v", stage, g, want[0], want[1], want[2])
		}
	}
}

func TestFuncPackage(t *testing.T) {
	for name, want := range map[string]string{
		"github.com/apmkit/apmkit/io.(*uploader).run.func1": "github.com/apmkit/apmkit/io",
		"runtime.mallocgc":                                       "runtime",
		"compress/flate.(*compressor).deflate":                   "compress/flate",
		"google.golang.org/grpc.(*Server).serveStreams.func1":    "google.golang.org/grpc",
		"slices.Sort[go.shape.[]string,go.shape.string]":         "slices",
		"github.com/a/b.F[go.shape.struct { github.com/c/d.T }]": "github.com/a/b",
	} {
		if got := funcPackage(name); got != want {
			t.Errorf("funcPackage(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestParseRealProfile reads a profile runtime/pprof wrote.
func TestParseRealProfile(t *testing.T) {
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		t.Skip("CPU profiling unavailable:", err)
	}
	x := 0
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
		for i := range 100000 {
			x += i * i
		}
	}
	pprof.StopCPUProfile()
	_ = x
	p, err := parseProfile(buf.Bytes())
	if err != nil {
		if strings.Contains(err.Error(), "no samples") {
			t.Skip("no samples on a busy machine")
		}
		t.Fatal(err)
	}
	found := false
	for _, st := range p.stacks {
		for _, f := range st {
			found = found || strings.HasSuffix(f, "TestParseRealProfile")
		}
	}
	if !found || p.total <= 0 {
		t.Errorf("no sample in the test (total %v ns, %d stacks)", p.total, len(p.stacks))
	}
}

func TestProfileSeconds(t *testing.T) {
	for _, c := range []struct {
		limit, d time.Duration
		want     int
	}{{20 * time.Second, time.Minute, 20}, {20 * time.Second, 10 * time.Second, 6}, {20 * time.Second, 4 * time.Second, 0}, {20 * time.Second, 5500 * time.Millisecond, 1}} {
		if got := profileSeconds(c.limit, c.d); got != c.want {
			t.Errorf("profileSeconds(%s, %s) = %d, want %d", c.limit, c.d, got, c.want)
		}
	}
}

// TestBeforeAfter saves a run, reads it back as -before, and checks the table and the
// CPU section of a report.
func TestBeforeAfter(t *testing.T) {
	dir := t.TempDir()
	o := &options{events: 12, duration: time.Minute, drain: time.Minute, settle: 5 * time.Second, ports: 1, seed: 1, profile: 20 * time.Second}
	mk := func(mode string, spansPS, cpu, rss float64) *result {
		return &result{scenario: scenario{mode, "batch", 8}, CollectorCPU: cpu, PeakRSSMB: rss,
			Load: pploadSummary{Spans: 100, Events: 1_000_000, SpansPerS: spansPS}, Sink: &sinkCounts{Entries: 100}}
	}
	old := newReport(o, nil, "")
	old.version = "v0.1-old"
	old.add(mk(modeFloor, 40000, 1, 20))
	old.add(mk(modeFull, 10000, 8, 300))
	old.add(&result{scenario: scenario{modeFull, "stream", 8}, Err: "boom"})
	beforePath := filepath.Join(dir, "results.json")
	if err := old.save(beforePath); err != nil {
		t.Fatal(err)
	}

	o.before = beforePath
	rp := newReport(o, nil, "")
	if err := rp.loadBefore(); err != nil {
		t.Fatal(err)
	}
	rp.add(mk(modeFloor, 40000, 1, 20))
	full := mk(modeFull, 20000, 4, 150)
	full.Profile = &cpuProfile{Seconds: 20, SampledS: 30, WallS: 20, Top: "Duration: 20s\n      flat  flat%\n", TopCum: "Duration: 20s\ncum\n",
		Stages: []stageShare{{Stage: stageGRPC, Pct: 25, CumPct: 40, Malloc: 3}, {Stage: stageGC, Pct: 15, CumPct: 15}}}
	rp.add(full)
	failed := mk(modeFull, 0, 0, 0)
	failed.Transport, failed.Profile = "stream", &cpuProfile{Err: "profile fetch failed: connection refused"}
	rp.add(failed)
	path := filepath.Join(dir, "RESULTS.md")
	if err := rp.write(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	for _, want := range []string{
		"## Before / after", "apmkit v0.1-old",
		"| floor | batch | 8 | 40000 | 40000 | 0% | 1.00 | 1.00 | 0% | 20 | 20 | – | – |",
		"| full | batch | 8 | 10000 | 20000 | +100% | 8.00 | 4.00 | -50% | 300 | 150 | 0.25 | 0.50 |",
		"## Where the CPU goes (full path)",
		"| CPU in the profile | 30.0 CPU-s in 20 s (1.50 cores) |",
		"| " + stageGRPC + " | **25.0** / 40.0 / 3.0 |",
		"profile fetch failed: connection refused", "Duration: 20s\n      flat  flat%\n```",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q:\n%s", want, b)
		}
	}
	ba := string(b)[strings.Index(string(b), "## Before / after"):strings.Index(string(b), "## Targets (full path)")]
	if strings.Contains(ba, "| full | stream |") {
		t.Errorf("a run that failed before was compared:\n%s", ba)
	}

	// -render keeps the profile and writes the before/after table again.
	saved := filepath.Join(dir, "after.json")
	if err := rp.save(saved); err != nil {
		t.Fatal(err)
	}
	ro := *o
	ro.render, ro.out = saved, filepath.Join(dir, "RENDERED.md")
	if err := renderSaved(t.Context(), &ro, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	r2, _ := os.ReadFile(ro.out)
	for _, want := range []string{"| full | batch | 8 | 10000 | 20000 |", "**25.0** / 40.0 / 3.0"} {
		if !strings.Contains(string(r2), want) {
			t.Errorf("rendered report lacks %q", want)
		}
	}
}

func TestResultsPath(t *testing.T) {
	for _, c := range []struct{ out, results, want string }{
		{"bench/RESULTS.md", "", "bench/results.json"},
		{"/tmp/x.md", "-", ""},
		{"bench/RESULTS.md", "/tmp/r.json", "/tmp/r.json"},
	} {
		o := &options{out: c.out, results: c.results}
		if got := o.resultsPath(); got != c.want {
			t.Errorf("%+v: %q, want %q", c, got, c.want)
		}
	}
}

func TestFetchProfileFails(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler()) // apmkit without pprof = true
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	err := fetchProfile(t.Context(), strings.TrimPrefix(srv.URL, "http://"), 1, path)
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("error %v, want a 404", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("a failed fetch wrote the profile file")
	}
}
