package io

import (
	"bytes"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/apmkit/apmkit/point"
)

// spillSeedFiles spills the golden spans of the trace converter (real line protocol) in
// groups of batches, as the uploader does, and returns the files written with their names.
func spillSeedFiles(tb testing.TB) map[string][]byte {
	tb.Helper()
	lps, err := filepath.Glob("../inputs/pinpoint/trace/testdata/*.lp")
	if err != nil || len(lps) == 0 {
		tb.Fatalf("no line protocol seeds: %v", err)
	}
	codec := &gzipCodec{}
	dir := filepath.Join(tb.TempDir(), "spill")
	q, err := openSpillQueue(dir, 1<<30, codec, func(point.Category, int, dropReason, error) {})
	if err != nil {
		tb.Fatal(err)
	}
	seq := uint64(1)
	for i, lp := range lps {
		raw, err := os.ReadFile(lp)
		if err != nil {
			tb.Fatal(err)
		}
		var items []spillItem
		for _, line := range bytes.SplitAfter(raw, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			gz, err := newBatch(point.Tracing, 1, line, codec).gzipBytes(1)
			if err != nil {
				tb.Fatal(err)
			}
			items = append(items, spillItem{seq: seq, cat: point.Tracing, points: 1, gz: gz})
			seq++
			if len(items) == 1+i%4 {
				break
			}
		}
		if _, err := q.pushGroup(items); err != nil {
			tb.Fatal(err)
		}
	}
	// A segment cut by a stop: its name records the batches delivered.
	if e, ok := q.peek(); ok {
		q.complete(e)
	}
	if err := q.close(); err != nil {
		tb.Fatal(err)
	}
	files := map[string][]byte{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		files[e.Name()] = data
	}
	// A file of an older version: one plain gzip batch, no CRC.
	gz, err := newBatch(point.Metric, 1, []byte("m f=1i 1\n"), codec).gzipBytes(1)
	if err != nil {
		tb.Fatal(err)
	}
	files[spillName{seq: 1, cat: point.Metric, points: 1, legacy: true}.String()] = gz
	return files
}

// FuzzSpillFile: whatever a spill folder holds, a name that parses prints back to itself,
// and the queue reading the file (its name made to carry the file's right CRC, so the
// fuzzer gets past it) delivers valid batches or drops the file as corrupt, without
// panicking, and a restart after a partial delivery resumes it the same way.
func FuzzSpillFile(f *testing.F) {
	for name, data := range spillSeedFiles(f) {
		f.Add(name, data)
		f.Add(name, data[:len(data)/2])
	}
	f.Add("00000000000000000001-metric-1.lp.gz", []byte("not gzip"))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		n, ok := parseSpillName(name)
		if !ok {
			return
		}
		if again, ok := parseSpillName(n.String()); !ok || again != n {
			t.Fatalf("name %q parses as %+v, prints as %q, parses back as %+v", name, n, n.String(), again)
		}
		if !n.legacy {
			n.crc = crc32.ChecksumIEEE(data)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, n.String()), data, 0o644); err != nil {
			t.Fatal(err)
		}
		for run := range 2 {
			q, err := openSpillQueue(dir, 1<<30, &gzipCodec{}, func(point.Category, int, dropReason, error) {})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 1000; i++ {
				e, ok := q.peek()
				if !ok {
					break
				}
				b, err := q.load(e)
				if err == nil {
					_, err = b.rawBytes()
				}
				if err != nil {
					q.dropCorrupt(e, err)
					continue
				}
				if b.cat != n.cat {
					t.Fatalf("batch of %s in a %s file", b.cat, n.cat)
				}
				if run == 0 && i == 0 {
					q.complete(e)
					break // stop after one batch: the next run resumes
				}
				q.complete(e)
			}
			if err := q.close(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
