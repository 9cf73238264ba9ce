package io

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
	"github.com/prometheus/client_golang/prometheus"
)

// streamFiles lists a category's files in name order.
func streamFiles(t *testing.T, dir string, cat point.Category) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, cat.String()+"-*.lp"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(matches)
	return matches
}

func readPoints(t *testing.T, files ...string) []*point.Point {
	t.Helper()
	var pts []*point.Point
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := point.Parse(data) // also proves files hold whole lines
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		pts = append(pts, p...)
	}
	return pts
}

func TestFileOutputRotatesAndCapsFiles(t *testing.T) {
	dir := t.TempDir()
	out := OutputConfig{Type: TypeFile, Dir: dir, MaxFileMB: 1, MaxFiles: 3}
	cfg := testConfig(out)
	cfg.BatchMaxPoints = 100
	// Only size cuts (and Stop's): a flush_interval cut between two chunks of a Feed call
	// would make a batch of another size, and the test counts whole batches.
	cfg.FlushInterval = time.Hour
	u := startUploader(t, cfg, t.TempDir())
	const total = 4000 // ~1 KiB each: about four 1 MiB files
	pts := seqPoints("jvm", 0, total)
	for _, p := range pts {
		p.AddField(point.String("pad", strings.Repeat("x", 1000)))
	}
	for i := 0; i < total; i += 500 {
		feed(t, u, point.Metric, pts[i:i+500])
	}
	traces := richPoints("span", 0)
	feed(t, u, point.Tracing, traces)
	stopUploader(t, u)

	files := streamFiles(t, dir, point.Metric)
	if len(files) != 3 {
		t.Fatalf("metric files %v, want 3 (max_files)", files)
	}
	if filepath.Base(files[0]) == "metric-0000000001.lp" {
		t.Fatalf("the oldest file should have been deleted: %v", files)
	}
	for _, f := range files {
		info, _ := os.Stat(f)
		if info.Size() > 1<<20 {
			t.Fatalf("%s is %d bytes, over max_file_mb", f, info.Size())
		}
	}
	got := seqOf(t, readPoints(t, files...))
	wantSeq(t, got, total-len(got), total) // the newest, in order, whole batches
	if len(got)%100 != 0 {
		t.Fatalf("%d points kept: files must hold whole batches of 100", len(got))
	}

	tracing := streamFiles(t, dir, point.Tracing)
	if len(tracing) != 1 || filepath.Base(tracing[0]) != "tracing-0000000001.lp" {
		t.Fatalf("tracing files %v", tracing)
	}
	if d := diffPoints(readPoints(t, tracing...), traces); d != "" {
		t.Fatal(d)
	}
	if st := outputStats(u, "file"); st.PointsSent != total+2 || st.URL != dir {
		t.Fatalf("stats %+v", st)
	}
}

func TestFileOutputIsTheDefaultAndAppendsAfterRestart(t *testing.T) {
	dataDir := t.TempDir()
	u := startUploader(t, testConfig(), dataDir)
	outDir := filepath.Join(dataDir, "out")
	if got := u.Outputs(); len(got) != 1 || got[0] != "file: "+outDir {
		t.Fatalf("Outputs() = %v", got)
	}
	feed(t, u, point.Logging, seqPoints("log", 0, 5))
	stopUploader(t, u)

	again := startUploader(t, testConfig(), dataDir)
	feed(t, again, point.Logging, seqPoints("log", 5, 5))
	stopUploader(t, again)

	files := streamFiles(t, outDir, point.Logging)
	if len(files) != 1 {
		t.Fatalf("files %v: a restart should continue the current file", files)
	}
	wantSeq(t, seqOf(t, readPoints(t, files...)), 0, 10)
}

func TestNewFailsOnUnusableFileDir(t *testing.T) {
	dataDir := t.TempDir()
	blocker := filepath.Join(dataDir, "blocker")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(OutputConfig{Type: TypeFile, Dir: filepath.Join(blocker, "sub")})
	u, err := New(cfg, dataDir, nil, prometheus.NewRegistry())
	if err == nil {
		_ = u.Stop(context.Background())
		t.Fatal("New accepted a dir under a regular file")
	}
	if !strings.Contains(err.Error(), "io: output file:") {
		t.Fatalf("error %q should name the output", err)
	}
}
