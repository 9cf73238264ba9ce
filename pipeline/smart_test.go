package pipeline

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/apmkit/apmkit/span"
)

func smartConfig() Config {
	// A short wait: every send decides, and the quotas are per minute of the fake clock.
	return Config{SmartSampler: SmartSamplerConfig{Enabled: true, SlowThreshold: 800 * time.Millisecond}, DecisionWait: 10 * time.Millisecond}
}

// smartRun sends traces and decides them; it returns how many were kept, and fails unless
// each was kept whole.
type smartRun struct {
	h  *harness
	id int
}

// send sends n traces of a frontend URL (url(i) is the raw URL of the i-th) calling the
// backend; failing puts the error in the callee's span, which arrives first.
func (r *smartRun) send(n int, url func(i int) string, failing bool, durationMs int64) int {
	r.h.t.Helper()
	var traces []trace
	for i := range n {
		id := traceID(r.id)
		r.id++
		status := "ok"
		if failing {
			status = "error"
		}
		tr := trace{id: id, spans: []*span.Span{callee(id, "backend", fmt.Sprintf("/stock/%d", i), status, 1), root(id, "frontend", url(i), "ok", durationMs)}}
		traces = append(traces, tr)
		r.h.feed(tr.spans...)
	}
	r.h.p.decideDue(context.Background()) // nothing is due yet: the wait has not run out
	if r.h.rec.of(traces[0].id) != 0 {
		r.h.t.Fatal("decided before the wait")
	}
	r.h.decide()
	return checkWhole(r.h.t, r.h.rec, traces)
}

func uuidURL(prefix string) func(int) string {
	return func(i int) string { return fmt.Sprintf("%s/%08x-5c4e-4a8b-9d3e-%012x", prefix, i*7919, i) }
}

func numURL(prefix string) func(int) string {
	return func(i int) string { return fmt.Sprintf("%s/%d", prefix, i) }
}

// TestSmartSamplerQuotas: per URL template and minute, by class and CPU band, with a
// distinct raw URL for every trace.
func TestSmartSamplerQuotas(t *testing.T) {
	for _, tc := range []struct {
		cpu                  float64
		errorQ, slowQ, normQ int
	}{
		{10, 100, 100, 20},
		{45, 50, 50, 10},
		{80, 10, 10, 5},
	} {
		t.Run(fmt.Sprintf("cpu %v%%", tc.cpu), func(t *testing.T) {
			h := newHarness(t, smartConfig())
			h.cpu.set(tc.cpu)
			r := &smartRun{h: h}
			// Minute 1: every URL is normal; errors and slow traces use their own buckets.
			if got := r.send(500, uuidURL("/orders"), false, 5); got != tc.normQ {
				t.Errorf("minute 1, normal URL: kept %d, want %d", got, tc.normQ)
			}
			if got := r.send(500, numURL("/pay"), true, 5); got != tc.errorQ {
				t.Errorf("minute 1, error traces: kept %d, want %d", got, tc.errorQ)
			}
			if got := r.send(500, numURL("/report"), false, 900); got != tc.slowQ {
				t.Errorf("minute 1, slow traces: kept %d, want %d", got, tc.slowQ)
			}
			if st := h.p.Stats(); st.SmartURLs != 3 {
				t.Fatalf("%d URLs counted, want 3 templates", st.SmartURLs)
			}
			// Minute 2: /pay/{id} is an error URL, /report/{id} a slow one: their ok
			// traces get the bigger quota.
			h.clock.Add(time.Minute)
			if got := r.send(500, numURL("/pay"), false, 5); got != tc.errorQ {
				t.Errorf("minute 2, ok traces of an error URL: kept %d, want %d", got, tc.errorQ)
			}
			if got := r.send(500, numURL("/report"), false, 5); got != tc.slowQ {
				t.Errorf("minute 2, ok traces of a slow URL: kept %d, want %d", got, tc.slowQ)
			}
			if got := r.send(500, uuidURL("/orders"), false, 5); got != tc.normQ {
				t.Errorf("minute 2, normal URL: kept %d, want %d", got, tc.normQ)
			}
			if got := r.send(50, numURL("/other"), false, 5); got != tc.normQ {
				t.Errorf("minute 2, another URL: kept %d, want its own %d", got, tc.normQ)
			}
			// Minute 4 (a minute without traffic between): every URL is normal again.
			h.clock.Add(2 * time.Minute)
			if got := r.send(500, numURL("/pay"), false, 5); got != tc.normQ {
				t.Errorf("minute 4, after a quiet minute: kept %d, want %d", got, tc.normQ)
			}
		})
	}
}

// TestSmartSamplerErrorsHaveTheirOwnQuota: errors are counted in their own bucket with the
// error quota, so the ok traffic of the same URL never crowds them out (at 90% CPU a URL
// keeps 5 ok and 10 error traces a minute, not 5 of both).
func TestSmartSamplerErrorsHaveTheirOwnQuota(t *testing.T) {
	h := newHarness(t, smartConfig())
	h.cpu.set(90)
	r := &smartRun{h: h}
	ok, failed := 0, 0
	for range 50 {
		ok += r.send(10, numURL("/checkout"), false, 5)
		failed += r.send(1, numURL("/checkout"), true, 5)
	}
	if ok != 5 || failed != 10 {
		t.Fatalf("kept %d ok and %d error traces, want 5 and 10", ok, failed)
	}
	if got := testutil.ToFloat64(h.p.metrics.smartCPU); got != 90 {
		t.Fatalf("cpu gauge %v", got)
	}
}

// TestSmartSamplerTableIsBounded: beyond the cap, URLs share one bucket with one quota.
func TestSmartSamplerTableIsBounded(t *testing.T) {
	h := newHarness(t, smartConfig())
	h.p.smart.maxURLs = 3
	h.cpu.set(80)
	r := &smartRun{h: h}
	kept := 0
	for u := range 10 {
		kept += r.send(30, func(int) string { return fmt.Sprintf("/route-%c", 'a'+u) }, false, 5)
	}
	if kept != 3*5+5 {
		t.Fatalf("kept %d traces of 10 URLs with 3 tracked, want 3*5 + 5 in the shared bucket", kept)
	}
	if st := h.p.Stats(); st.SmartURLs != 3 {
		t.Fatalf("%d URLs tracked", st.SmartURLs)
	}
	if got := testutil.ToFloat64(h.p.metrics.smartOverflow); got != 7*30 {
		t.Fatalf("overflow traces %v", got)
	}
	// The next minute, URLs that had no trace are forgotten.
	h.clock.Add(time.Minute)
	r.send(1, func(int) string { return "/route-z" }, false, 5)
	h.clock.Add(time.Minute)
	r.send(1, func(int) string { return "/route-z" }, false, 5)
	if st := h.p.Stats(); st.SmartURLs != 1 {
		t.Fatalf("%d URLs tracked after a minute, want 1", st.SmartURLs)
	}
}

// TestSmartSamplerKeepsRareResources: keep_rare_resource keeps a trace beyond the quota.
func TestSmartSamplerKeepsRareResources(t *testing.T) {
	cfg := smartConfig()
	cfg.KeepRareResource = true
	h := newHarness(t, cfg)
	h.cpu.set(80)
	r := &smartRun{h: h}
	// The first trace of /a/{id} is rare and uses no quota; 5 more fill it.
	if got := r.send(10, numURL("/a"), false, 5); got != 6 {
		t.Fatalf("kept %d of /a/{id}, want 1 rare + 5", got)
	}
	// /a/{id} is no longer rare and its quota is used up; /b is rare.
	if got := r.send(3, numURL("/a"), false, 5); got != 0 {
		t.Fatalf("kept %d beyond the quota", got)
	}
	if got := r.send(1, func(int) string { return "/b" }, false, 5); got != 1 {
		t.Fatal("rare resource not kept")
	}
}
